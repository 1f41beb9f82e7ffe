"""Unit costs: a team's (or product's) cost per unit of a business metric, per day.

The business-metrics CSV (`unit_costs.metrics_url`) has the header `date,<dimension>,metric,value`,
`<dimension>` being one of the tag policy's dimensions (`team`, `product`, ...), e.g.
`2026-10-01,web,requests,1250000`. The cost of a (day, key) is the direct effective cost (amortized)
that the tag policy allocated to that key that day, in the reporting currency when one is configured
(else one row per billing currency); shared costs are split per month, so they are not in it.
`cost_per_unit = cost x per / value` (`per`: the metric's scale in `unit_costs.per`, 1 by default),
rounded half to even to 18 decimals; null where the value is 0.
"""

from __future__ import annotations

import datetime as dt
import io

import polars as pl

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store, join, scratch_dir
from billing_pipeline.views.month import DIRECT, month_bounds, month_label
from billing_pipeline.views.names import UNIT_COSTS

UNIT_COST_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "dimension": pl.String(),
    "key": pl.String(),
    "metric": pl.String(),
    "value": MONEY,
    "per": MONEY,
    "currency": pl.String(),
    "cost": MONEY,
    "cost_per_unit": MONEY,
}


class MetricsFileError(ValueError):
    """The business-metrics CSV has the wrong header or a value that is not a number (named)."""


def unit_costs_url(lake_url: str, month: dt.date) -> str:
    return join(lake_url, UNIT_COSTS, f"month={month_label(month)}", "part-0.parquet")


def parse_metrics(data: bytes, dimensions: list[str], origin: str) -> tuple[str, pl.DataFrame]:
    """(dimension, `(date, key, metric, value)`) from the CSV's bytes; a bad header or cell raises naming it."""
    frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
    header = [c.strip() for c in frame.columns]
    if len(header) != 4 or header[0] != "date" or header[2:] != ["metric", "value"] or header[1] not in dimensions:
        raise MetricsFileError(
            f"{origin}: the header must be `date,<dimension>,metric,value` with <dimension> one of {dimensions}, "
            f"not {','.join(header)}"
        )
    frame = frame.rename(dict(zip(frame.columns, ["date", "key", "metric", "value"], strict=True)))
    typed = frame.select(
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False),
        pl.col("key").str.strip_chars(),
        pl.col("metric").str.strip_chars(),
        pl.col("value").str.strip_chars().cast(MONEY, strict=False),
    )
    bad = typed.with_row_index("line", offset=2).filter(
        pl.any_horizontal(pl.col("date", "key", "metric", "value").is_null())
    )
    if bad.height:
        lines = ", ".join(str(n) for n in bad["line"].head(10))
        raise MetricsFileError(f"{origin}: empty or unreadable date, key, metric or value on line(s) {lines}")
    return header[1], typed


def unit_costs(config: BillingConfig, store: Store, totals: pl.DataFrame, month: dt.date) -> pl.DataFrame:
    """The month's unit costs from `daily_totals` (empty without `unit_costs` in billing.yaml)."""
    settings = config.unit_costs
    if settings is None:
        return pl.DataFrame(schema=UNIT_COST_SCHEMA)
    dimension, metrics = parse_metrics(
        store.read_bytes(settings.metrics_url), list(config.tag_policy.dimensions), settings.metrics_url
    )
    first, last = month_bounds(month)
    metrics = metrics.filter(pl.col("date").is_between(first, last))
    reporting = config.reporting
    currency = pl.lit(reporting.currency) if reporting else pl.col("BillingCurrency")
    amount = "effective_cost_reporting" if reporting else "effective_cost"
    cost = (
        totals.filter((pl.col("cost_kind") == DIRECT) & pl.col(dimension).is_not_null())
        .group_by("date", pl.col(dimension).alias("key"), currency.alias("currency"))
        .agg(pl.col(amount).sum().cast(MONEY).alias("cost"))
    )
    scales = pl.DataFrame(
        {"metric": list(settings.per), "per": list(settings.per.values())}, schema={"metric": pl.String, "per": MONEY}
    )
    if reporting:
        keyed = metrics.with_columns(pl.lit(reporting.currency).alias("currency"))
    else:  # one row per billing currency the key spent in this month (a key that spent nothing: currency null)
        keyed = metrics.join(cost.select("key", "currency").unique(), on="key", how="left")
    return (
        keyed.join(cost, on=["date", "key", "currency"], how="left", nulls_equal=True)
        .join(scales, on="metric", how="left")
        .select(
            "date",
            pl.lit(dimension).alias("dimension"),
            "key",
            "metric",
            "value",
            pl.col("per").fill_null(pl.lit(1, dtype=MONEY)),
            "currency",
            pl.col("cost").fill_null(pl.lit(0, dtype=MONEY)),
        )
        .with_columns(
            pl.when(pl.col("value") != 0)
            .then(pl.col("cost") * pl.col("per") / pl.col("value"))
            .cast(MONEY)
            .alias("cost_per_unit")
        )
        .sort("date", "key", "metric", "currency", nulls_last=True)
    )


def publish_unit_costs(
    config: BillingConfig, store: Store, totals: pl.DataFrame, month: dt.date
) -> tuple[str, pl.DataFrame] | None:
    """Write the month's unit costs to `<lake>/unit_costs/month=YYYY-MM/` and return (URL, table); None
    (nothing written) without `unit_costs` in billing.yaml."""
    if config.unit_costs is None:
        return None
    table = unit_costs(config, store, totals, month)
    url = unit_costs_url(config.lake_url, month)
    with scratch_dir("billing-unit-costs-") as workdir:
        store.write_parquet(table, url, workdir)
    return url, table
