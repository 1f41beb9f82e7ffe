"""The views as Dagster assets: `monthly_chargeback`, `unit_costs` and `budget_forecast`, their monthly job
and schedule.

Thin: the logic is in `billing_pipeline/views/`. The assets are partitioned by month (`YYYY-MM-01`)
and read every daily partition of `tag_enriched_costs` in their month. A job cannot mix daily and
monthly partitions, so they have their own job, `billing_monthly`, which a daily schedule runs for the
current and the previous month (exports restate the month to date, and the previous one for days
after it closes).
"""

import datetime as dt
import hashlib

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    DefaultScheduleStatus,
    JobDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    TimeWindowPartitionMapping,
    asset,
    define_asset_job,
    in_process_executor,
    schedule,
)

from billing_pipeline.defs.asset_metadata import amount_text, currency_key, money_value
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import markdown_table
from billing_pipeline.platform.names import ENRICHED
from billing_pipeline.platform.storage import scratch_dir
from billing_pipeline.views.chargeback import UNSPLIT, PublishedChargeback, publish_chargeback
from billing_pipeline.views.forecast import BUDGET_FORECAST, OVER, TEAM, WARN, PublishedForecast, publish_forecast
from billing_pipeline.views.month import DIRECT, daily_totals
from billing_pipeline.views.names import CHARGEBACK, MONTHLY_JOB, MONTHLY_SCHEDULE, UNIT_COSTS, VIEWS_GROUP
from billing_pipeline.views.unit_costs import publish_unit_costs
from resources import BillingResource

OWNERS = ["team:finops-platform"]
PREVIEW_ROWS = 15


def _month(context: AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _money_metadata(published: PublishedChargeback, reporting: str | None) -> dict[str, float]:
    """Plottable month totals: billed and effective per billing currency, shared and unsplit amounts, and
    the reporting-currency totals."""
    table = published.statements
    by_currency = table.group_by("billing_currency").agg(
        pl.col("billed_cost").sum(),
        pl.col("effective_cost").sum(),
        pl.col("billed_cost").filter(pl.col("cost_kind") != DIRECT).sum().alias("shared_cost"),
        pl.col("billed_cost").filter(pl.col("split") == UNSPLIT).sum().alias("unsplit_cost"),
    )
    out = {
        currency_key(name, row["billing_currency"]): money_value(row[name])
        for row in by_currency.iter_rows(named=True)
        for name in ("billed_cost", "effective_cost", "shared_cost", "unsplit_cost")
    }
    if reporting:
        for name in ("billed_cost_reporting", "effective_cost_reporting"):
            out[currency_key(name.removesuffix("_reporting"), reporting) + "_reporting"] = money_value(
                table[name].sum()
            )
    return out


def _preview(table: pl.DataFrame, owner: str, reporting: str | None) -> str:
    """The largest owners of the month (reporting currency when configured, else per billing currency)."""
    amount, currency = (
        ("billed_cost_reporting", "reporting_currency") if reporting else ("billed_cost", "billing_currency")
    )
    top = (
        table.group_by(owner, currency)
        .agg(pl.col(amount).sum(), pl.col(amount).filter(pl.col("cost_kind") != DIRECT).sum().alias("shared"))
        .sort(amount, descending=True)
        .head(PREVIEW_ROWS)
    )
    return markdown_table(
        [
            {
                owner: row[owner] or "(unsplit)",
                "billed": amount_text(row[amount], row[currency]),
                "of which shared": amount_text(row["shared"], row[currency]),
            }
            for row in top.iter_rows(named=True)
        ],
        empty="_no allocated costs in this month_",
    )


def _forecast_metadata(published: PublishedForecast) -> dict[str, object]:
    """The total forecast per currency (plottable), how many teams warn or are over, and a preview."""
    table = published.table
    teams = table.filter(pl.col("scope") == TEAM)
    out: dict[str, object] = {
        "dagster/row_count": table.height,
        "path": MetadataValue.path(published.url),
        "as_of": str(table["as_of"].first() or "(no usage day yet)"),
        "teams_warn": teams.filter(pl.col("status") == WARN).height,
        "teams_over": teams.filter(pl.col("status") == OVER).height,
        "alerts_sent": len(published.report.sent) if published.report else 0,
    }
    for row in table.filter(pl.col("scope") != TEAM).iter_rows(named=True):  # one total per currency
        for name in ("forecast", "forecast_low", "forecast_high", "month_to_date", "budget"):
            out[currency_key(f"total_{name}", row["currency"])] = money_value(row[name])
        out[currency_key("total_status", row["currency"])] = row["status"]
    rows = teams.sort("forecast", descending=True).head(PREVIEW_ROWS).iter_rows(named=True)
    out["preview"] = MetadataValue.md(
        markdown_table(
            [
                {
                    "team": row[TEAM],
                    "forecast": amount_text(row["forecast"], row["currency"]),
                    "interval": f"{amount_text(row['forecast_low'], row['currency'])} to "
                    f"{amount_text(row['forecast_high'], row['currency'])}",
                    "budget": amount_text(row["budget"], row["currency"]) or "-",
                    "status": row["status"],
                }
                for row in rows
            ],
            empty="_no team spend in this month_",
        )
    )
    return out


def _budget_forecast_asset(monthly: PartitionsDefinition, enriched: AssetDep) -> AssetsDefinition:
    """`budget_forecast`: the month-end forecast against budgets (logic in `views/forecast.py`)."""

    @asset(
        name=BUDGET_FORECAST,
        partitions_def=monthly,
        group_name=VIEWS_GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[enriched],
        description=(
            "Month-end spend forecast per team and in total from the month to date (each remaining day at its "
            "weekday's mean, else the daily mean; interval from the 10th-90th percentile of day residuals), "
            "against billing.yaml `budgets`: ok, warn (>= 80 %), over (>= 100 %) or no_budget. A team that "
            "reaches warn or over is alerted once per month and status."
        ),
    )
    def budget_forecast(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        published = publish_forecast(billing.config, billing.store(), _month(context))
        if published.report and published.report.errors:
            context.log.warning("budget alerts: %s", "; ".join(published.report.errors))
        return MaterializeResult(metadata=_forecast_metadata(published))

    return budget_forecast


def build_views_assets(monthly: PartitionsDefinition) -> list[AssetsDefinition]:
    """`monthly_chargeback`, `unit_costs` and `budget_forecast` over the given monthly partitions."""
    enriched = AssetDep(ENRICHED, partition_mapping=TimeWindowPartitionMapping())

    @asset(
        name=CHARGEBACK,
        partitions_def=monthly,
        group_name=VIEWS_GROUP,
        kinds={"polars", "parquet", "csv"},
        owners=OWNERS,
        deps=[enriched],
        description=(
            "Monthly statements per owner (team, cost center, product, environment), provider, service and "
            "billing currency: billed and effective cost in the billing currency and in the reporting currency. "
            "Unallocated costs, support, taxes and unused commitments are split among teams by the rules of "
            "billing.yaml `chargeback`; the statements add up to the month's total exactly. Also written as "
            "<lake>/reports/YYYY-MM/chargeback.csv for finance."
        ),
    )
    def monthly_chargeback(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config = billing.config
        published = publish_chargeback(config, billing.store(), _month(context))
        reporting = config.reporting.currency if config.reporting else None
        return MaterializeResult(
            metadata={
                "dagster/row_count": published.statements.height,
                "path": MetadataValue.path(published.parquet_url),
                "csv_path": MetadataValue.path(published.csv_url),
                "line_items": int(published.totals["rows"].sum()),
                "reporting_currency": reporting or "(none: billing.yaml has no `reporting`)",
                **_money_metadata(published, reporting),
                "preview": MetadataValue.md(
                    _preview(published.statements, config.tag_policy.owner_dimension, reporting)
                ),
            }
        )

    @asset(
        name=UNIT_COSTS,
        partitions_def=monthly,
        group_name=VIEWS_GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[enriched],
        description=(
            "Cost per unit of a business metric (billing.yaml `unit_costs.metrics_url`: date,<team or product>,"
            "metric,value) per team or product and day: direct effective cost in the reporting currency x per / "
            "value. Nothing is written when no metrics file is configured."
        ),
    )
    def unit_costs(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config, store, month = billing.config, billing.store(), _month(context)
        if config.unit_costs is None:
            return MaterializeResult(metadata={"dagster/row_count": 0, "note": "no unit_costs in billing.yaml"})
        with scratch_dir("billing-unit-costs-") as workdir:
            totals = daily_totals(config, store, month, workdir)
        published = publish_unit_costs(config, store, totals, month)
        assert published is not None
        url, table = published
        return MaterializeResult(
            metadata={
                "dagster/row_count": table.height,
                "path": MetadataValue.path(url),
                "metrics": MetadataValue.json(sorted(table["metric"].unique().to_list())),
            }
        )

    return [monthly_chargeback, unit_costs, _budget_forecast_asset(monthly, enriched)]


def build_monthly_job(assets: list[AssetsDefinition]) -> JobDefinition:
    return define_asset_job(
        MONTHLY_JOB,
        selection=assets,
        description=(
            "Builds a month's chargeback statements, unit costs and budget forecast from the allocated daily costs."
        ),
        executor_def=in_process_executor,
    )


def months_to_refresh(scheduled_at: dt.datetime) -> list[str]:
    """The keys of the month of the usage day before the tick (UTC) and of the month before it."""
    day = (scheduled_at.astimezone(dt.UTC) - dt.timedelta(days=1)).date().replace(day=1)
    previous = (day - dt.timedelta(days=1)).replace(day=1)
    return [previous.isoformat(), day.isoformat()]


def build_monthly_schedule(
    config: BillingConfig, job: JobDefinition, monthly: PartitionsDefinition
) -> ScheduleDefinition:
    @schedule(
        name=MONTHLY_SCHEDULE,
        job=job,
        cron_schedule=config.chargeback.refresh_cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            "Refreshes the chargeback, unit costs and budget forecast of the current and the previous month, daily."
        ),
    )
    def _refresh(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        keys = [key for key in months_to_refresh(tick) if monthly.has_partition_key(key)]
        if not keys:
            return SkipReason("neither this month nor the previous one is a partition")
        stamp = tick.astimezone(dt.UTC).date().isoformat()
        return [
            RunRequest(
                partition_key=key,
                run_key=hashlib.sha256(f"monthly|{key}|{stamp}".encode()).hexdigest()[:40],
                tags={"billing/trigger": "schedule"},
            )
            for key in keys
        ]

    return _refresh
