"""Monthly chargeback statements: what each owner is charged for a month, and why.

One row per owner (the tag policy's dimensions: team, cost center, product, environment), provider,
service, billing currency and cost kind. Direct rows stay with the owner the tag policy found. The
shared kinds (`unallocated`, `support`, `tax`, `unused_commitment`, see `month.py`) are pooled per
provider, service and billing currency and split among owners (the owner dimension only; the other
dimensions stay empty on a share) by the kind's rule in `billing.yaml` (`splits.py`: even, proportional
to direct spend in the same billing currency, or fixed weights), exactly.

The sum of all statements equals the month's total in every billing currency, and in the reporting
currency, exactly: `statements` checks it before anything is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import csv_safe_frame
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store, join, scratch_dir
from billing_pipeline.platform.views_config import SHARED_KINDS
from billing_pipeline.views.month import AMOUNTS, DIRECT, REPORTING_AMOUNTS, daily_totals, month_label
from billing_pipeline.views.names import CHARGEBACK, REPORTS
from billing_pipeline.views.splits import RECIPIENT, rule_weights, split

MONEY_COLUMNS = [*AMOUNTS.values(), *REPORTING_AMOUNTS.values()]
UNSPLIT = "unsplit"  # the `split` of a pool no owner could take
PLACE = {"ProviderName": "provider", "ServiceName": "service", "BillingCurrency": "billing_currency"}


class ChargebackMismatchError(RuntimeError):
    """The statements do not add up to the month's total (a bug: nothing is published)."""


def chargeback_url(lake_url: str, month: dt.date) -> str:
    return join(lake_url, CHARGEBACK, f"month={month_label(month)}", "part-0.parquet")


def report_csv_url(lake_url: str, month: dt.date) -> str:
    return join(lake_url, REPORTS, month_label(month), "chargeback.csv")


def _sums() -> list[pl.Expr]:
    return [pl.col(c).sum() for c in MONEY_COLUMNS]


def _shares(config: BillingConfig, totals: pl.DataFrame) -> list[pl.DataFrame]:
    """Each shared kind's pools split among owners by the kind's rule."""
    owner = config.tag_policy.owner_dimension
    direct_spend = (
        totals.filter(pl.col("cost_kind") == DIRECT)
        .group_by("BillingCurrency", pl.col(owner).alias(RECIPIENT))
        .agg(pl.col("effective_cost").sum().alias("spend"))
    )
    pools = totals.filter(pl.col("cost_kind") != DIRECT).group_by("cost_kind", *PLACE).agg(_sums())
    out = []
    for kind in SHARED_KINDS:
        kind_pools = pools.filter(pl.col("cost_kind") == kind)
        if kind_pools.is_empty():
            continue
        rule = config.chargeback.rule(kind)
        weights = rule_weights(rule, direct_spend, kind_pools.select("BillingCurrency").unique())
        shared = split(kind_pools, weights, ["BillingCurrency"], MONEY_COLUMNS)
        out.append(
            shared.select(
                pl.col(RECIPIENT).alias(owner),
                *PLACE,
                "cost_kind",
                pl.when(pl.col(RECIPIENT).is_null())
                .then(pl.lit(UNSPLIT))
                .otherwise(pl.lit(rule.method))
                .alias("split"),
                *MONEY_COLUMNS,
            )
        )
    return out


def _check_totals(totals: pl.DataFrame, statements: pl.DataFrame) -> None:
    """Raise unless the statements add up, per billing currency and in the reporting currency, exactly."""
    billing = list(AMOUNTS.values())
    expected = totals.group_by(pl.col("BillingCurrency").alias("billing_currency")).agg(pl.col(billing).sum())
    got = statements.group_by("billing_currency").agg(pl.col(billing).sum())
    reporting = list(REPORTING_AMOUNTS.values())
    expected_reporting = totals.select(pl.col(reporting).sum())
    got_reporting = statements.select(pl.col(reporting).sum())
    if not (
        expected.sort("billing_currency").equals(got.sort("billing_currency"))
        and expected_reporting.equals(got_reporting)
    ):
        raise ChargebackMismatchError(
            f"statements do not add up: month {expected}, {expected_reporting}; statements {got}, {got_reporting}"
        )


def statements(config: BillingConfig, totals: pl.DataFrame, month: dt.date) -> pl.DataFrame:
    """The month's statements from `daily_totals` (checked to add up to it exactly)."""
    dimensions = list(config.tag_policy.dimensions)
    direct = (
        totals.filter(pl.col("cost_kind") == DIRECT)
        .group_by(*dimensions, *PLACE, "cost_kind")
        .agg(_sums())
        .with_columns(pl.lit(None, dtype=pl.String).alias("split"))
    )
    parts = [direct, *_shares(config, totals)]
    reporting = config.reporting.currency if config.reporting else None
    out = (
        pl.concat(parts, how="diagonal_relaxed")
        .rename(PLACE)
        .select(
            pl.lit(month_label(month)).alias("month"),  # YYYY-MM, the same text as the hive folder `month=`
            *dimensions,
            *PLACE.values(),
            "cost_kind",
            pl.col("split").cast(pl.String),
            *[pl.col(c).cast(MONEY) for c in AMOUNTS.values()],
            pl.lit(reporting, dtype=pl.String).alias("reporting_currency"),
            *[
                (pl.col(c) if reporting else pl.lit(None)).cast(MONEY).alias(c)  # a sum of nulls would be 0
                for c in REPORTING_AMOUNTS.values()
            ],
        )
        .sort(dimensions[0], *PLACE.values(), "cost_kind", *dimensions[1:], nulls_last=True)
    )
    _check_totals(totals, out)
    return out


@dataclass(frozen=True)
class PublishedChargeback:
    """What `publish_chargeback` wrote: the statements, the Parquet table and the finance CSV."""

    statements: pl.DataFrame
    totals: pl.DataFrame
    parquet_url: str
    csv_url: str


def publish_chargeback(config: BillingConfig, store: Store, month: dt.date) -> PublishedChargeback:
    """Build the month's statements and write them to `<lake>/monthly_chargeback/month=YYYY-MM/` and, for
    finance, `<lake>/reports/YYYY-MM/chargeback.csv` (text cells neutralised against formula injection)."""
    with scratch_dir("billing-chargeback-") as workdir:
        totals = daily_totals(config, store, month, workdir)
        table = statements(config, totals, month)
        parquet_url = chargeback_url(config.lake_url, month)
        store.write_parquet(table, parquet_url, workdir)
    csv_url = report_csv_url(config.lake_url, month)
    store.write_bytes(csv_url, csv_safe_frame(table).write_csv().encode())
    return PublishedChargeback(table, totals, parquet_url, csv_url)
