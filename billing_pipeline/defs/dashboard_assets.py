"""The dashboards as a Dagster asset: `dashboards`, monthly, in `billing_monthly`, after the chargeback and
the budget forecast whose tables it shows. Thin: the pages are built in `billing_pipeline/views/dashboards/`.

It writes `<lake>/reports/YYYY-MM/executive.html`, `oncall.html` and `debug.html` beside the chargeback CSV,
and reports each path in its metadata.
"""

import datetime as dt

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from billing_pipeline.platform.names import COST_ANOMALIES, ENRICHED, SLO_BUDGETS
from billing_pipeline.views.forecast import BUDGET_FORECAST
from billing_pipeline.views.names import CHARGEBACK, DASHBOARDS, VIEWS_GROUP
from resources import BillingResource

OWNERS = ["team:finops-platform"]


class DashboardConfig(Config):
    """Run config of `dashboards`."""

    debug_day: str = Field(
        default="",
        description="YYYY-MM-DD: the day whose sample rows the debug page shows (default: the month's last day "
        "with data)",
    )


def build_dashboard_asset(monthly: PartitionsDefinition) -> AssetsDefinition:
    """`dashboards` over the given monthly partitions, downstream of the chargeback and the forecast (same
    month) and of the daily tables it reads (every day of the month)."""
    days = TimeWindowPartitionMapping()

    @asset(
        name=DASHBOARDS,
        partitions_def=monthly,
        group_name=VIEWS_GROUP,
        kinds={"html", "plotly"},
        owners=OWNERS,
        deps=[
            CHARGEBACK,
            BUDGET_FORECAST,
            AssetDep(ENRICHED, partition_mapping=days),
            AssetDep(COST_ANOMALIES, partition_mapping=days),
            AssetDep(SLO_BUDGETS, partition_mapping=days),
        ],
        description=(
            "Self-contained HTML dashboards of the month (plotly.js inline: they open offline, from a laptop or "
            "S3 static hosting) at <lake>/reports/YYYY-MM/: executive.html (month total and 12-month trend per "
            "provider, top 10 teams, unallocated %, forecast vs budget, anomalies), oncall.html (SLIs over 30 "
            "days against targets, delivery latency, backlog, held-back deliveries, open alerts) and debug.html "
            "(deliveries, schema versions, quarantine reasons, duplicate rates, sample rows of a chosen day)."
        ),
    )
    def dashboards(
        context: AssetExecutionContext, config: DashboardConfig, billing: BillingResource
    ) -> MaterializeResult:
        month = dt.date.fromisoformat(context.partition_key)
        debug_day = dt.date.fromisoformat(config.debug_day) if config.debug_day else None
        # plotly only here: every run process (one per day in production) imports the code location
        from billing_pipeline.views.dashboards.publish import publish_dashboards  # noqa: PLC0415

        published = publish_dashboards(billing.config, billing.store(), month, debug_day)
        data = published.data
        return MaterializeResult(
            metadata={
                **{f"{name}_path": MetadataValue.path(url) for name, url in published.urls.items()},
                "chargeback_csv_path": MetadataValue.path(published.csv_url),
                "debug_day": data.debug_day.isoformat() if data.debug_day else "(no day with data)",
                "reporting_currency": data.reporting_currency or "(none: per billing currency)",
                "anomalies": data.anomalies.height,
                "sli_window": f"{data.sli_window[0]} to {data.sli_window[1]}",
            }
        )

    return dashboards
