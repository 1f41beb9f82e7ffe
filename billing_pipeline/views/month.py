"""A month of allocated rows: every source's `tag_enriched_costs` slices of the month's usage days, the
columns the views need, each row's cost kind and (when configured) its amounts in the reporting currency.

Cost kinds, from FOCUS columns, first match wins:
- `tax`: ChargeCategory `Tax`;
- `support`: ServiceSubcategory `Support`, or a ServiceName matching `chargeback.support_services`;
- `unused_commitment`: CommitmentDiscountStatus `Unused` (the part of a reservation or savings plan
  nothing used);
- `unallocated`: any other row the tag policy found no owner for;
- `direct`: the rest, which stays with its owner.
The first three are shared costs whatever the tag policy decided (a tax or a support plan is billed to
an account, and the account fallback would hand it all to that account's owner). A correction
(ChargeClass `Correction`) or a credit keeps the kind of the row it is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.names import ENRICHED
from billing_pipeline.platform.storage import Store, join
from billing_pipeline.views import fx

DIRECT = "direct"
FOCUS_COLUMNS = (
    "BillingCurrency",
    "ProviderName",
    "ServiceName",
    "ServiceSubcategory",
    "ChargeCategory",
    "CommitmentDiscountStatus",
)
AMOUNTS = {"BilledCost": "billed_cost", "EffectiveCost": "effective_cost"}
REPORTING_AMOUNTS = {"billed_cost": "billed_cost_reporting", "effective_cost": "effective_cost_reporting"}


def month_bounds(month: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the month containing `month`."""
    first = month.replace(day=1)
    return first, (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def month_label(month: dt.date) -> str:
    return month.strftime("%Y-%m")


def enriched_files(store: Store, lake_url: str, month: dt.date) -> list[tuple[dt.date, str]]:
    """(usage day, file URL) of every published enriched slice of the month, by day then path."""
    first, last = month_bounds(month)
    out: list[tuple[dt.date, str]] = []
    for folder in store.list_dirs(join(lake_url, ENRICHED)):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("date="):
            continue
        day = dt.date.fromisoformat(name.removeprefix("date="))
        if first <= day <= last:
            out += [(day, f.url) for f in store.find(folder) if f.url.endswith(".parquet")]
    return sorted(out)


def _slice(path: Path | str, day: dt.date, columns: list[str]) -> pl.LazyFrame:
    """One slice with exactly `columns` (a column a provider never fills is null), money as MONEY."""
    frame = pl.scan_parquet(path)
    present = set(frame.collect_schema())
    return frame.select(
        pl.lit(day, dtype=pl.Date).alias("date"),
        *[pl.col(c).cast(pl.String) if c in present else pl.lit(None, dtype=pl.String).alias(c) for c in columns],
        *[pl.col(source).cast(MONEY).alias(target) for source, target in AMOUNTS.items()],
    )


def read_month(config: BillingConfig, store: Store, month: dt.date, workdir: Path) -> pl.LazyFrame:
    """The month's allocated rows (date, FOCUS columns, dimensions, billed_cost, effective_cost), lazily;
    remote slices are staged to `workdir` first."""
    columns = [*FOCUS_COLUMNS, *config.tag_policy.dimensions]
    frames = [
        _slice(store.stage(url, workdir), day, columns) for day, url in enriched_files(store, config.lake_url, month)
    ]
    if not frames:
        return pl.LazyFrame(
            schema={"date": pl.Date, **dict.fromkeys(columns, pl.String), **dict.fromkeys(AMOUNTS.values(), MONEY)}
        )
    return pl.concat(frames, how="vertical")


def cost_kind(config: BillingConfig) -> pl.Expr:
    """Each row's kind (see the module docstring)."""
    owner = config.tag_policy.owner_dimension
    support = (pl.col("ServiceSubcategory") == "Support").fill_null(False) | pl.col("ServiceName").str.contains(
        f"(?i){config.chargeback.support_services}"
    ).fill_null(False)
    return (
        pl.when(pl.col("ChargeCategory") == "Tax")
        .then(pl.lit("tax"))
        .when(support)
        .then(pl.lit("support"))
        .when(pl.col("CommitmentDiscountStatus") == "Unused")
        .then(pl.lit("unused_commitment"))
        .when(pl.col(owner).is_null())
        .then(pl.lit("unallocated"))
        .otherwise(pl.lit(DIRECT))
        .alias("cost_kind")
    )


def with_reporting(config: BillingConfig, store: Store, rows: pl.LazyFrame) -> pl.LazyFrame:
    """`rows` plus `billed_cost_reporting` / `effective_cost_reporting` at each usage day's rate (null
    columns without `reporting`). Raises `fx.MissingRateError` naming a currency and day without a rate."""
    reporting = config.reporting
    if reporting is None:
        return rows.with_columns(pl.lit(None, dtype=MONEY).alias(c) for c in REPORTING_AMOUNTS.values())
    needed = rows.select("date", pl.col("BillingCurrency").alias("currency")).unique().collect()
    rates = fx.read_rates(store, reporting.fx_rates_url)
    factors = fx.cross_rates(needed, rates, reporting.currency, reporting.max_rate_age_days)
    return fx.to_reporting(rows, factors, REPORTING_AMOUNTS)


def daily_totals(config: BillingConfig, store: Store, month: dt.date, workdir: Path) -> pl.DataFrame:
    """Per usage day, cost kind, dimensions, provider, service and billing currency: the summed amounts
    (reporting ones converted row by row first) and the rows behind them. Streams over the month's
    rows; what it collects is small (days x owners x services)."""
    rows = read_month(config, store, month, workdir).with_columns(cost_kind(config))
    keys = ["date", "cost_kind", *config.tag_policy.dimensions, *FOCUS_COLUMNS[:3]]
    amounts = [*AMOUNTS.values(), *REPORTING_AMOUNTS.values()]
    totals = (
        with_reporting(config, store, rows)
        .group_by(keys)
        .agg(*[pl.col(c).sum() for c in amounts], pl.len().alias("rows"))
        .collect(engine="streaming")
        .sort(keys, nulls_last=True)
    )
    if config.reporting is None:  # a sum of nulls is 0: no reporting currency means no reporting amounts
        totals = totals.with_columns(pl.lit(None, dtype=MONEY).alias(c) for c in REPORTING_AMOUNTS.values())
    return totals
