"""The observability assets of `billing_daily`, in a straight line after the spine and in its step
(`spine_layer.DayPart`):

- `cost_anomalies` (after `tag_enriched_costs`): detects the day's spend anomalies and burn-rate breaches
  and stores them at `<lake>/cost_anomalies/date=D/part-0.parquet` (`anomalies.py`); the M8 check on it
  and the alert routing only read that table.
- `slo_error_budgets` (after `reconciliation_deltas` and `cost_anomalies`) and one budget check per SLI,
  evaluated right after it: the only checks of M1-M10 that alert.

Thin: the logic is in `anomalies.py` and `error_budgets.py`. The budget asset comes last in the day's step
and evaluates the day's SLIs itself, so its verdicts never depend on the order the SLI checks run in.
Each budget check fails at ERROR and pages on a fast burn, at WARN with a ticket on a slow burn, and
links its SLI's runbook. Its alert is keyed by the check alone (`alert/scope: latest`), not the partition:
a burn is a state of the service, resolved when a later day's evaluation no longer burns.
"""

import datetime as dt
import json
import math
import warnings
from collections.abc import Sequence, Set

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSpec,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
)

from billing_pipeline.defs.checks import DayCheck
from billing_pipeline.defs.spine_layer import DayPart, LayerDay
from billing_pipeline.observability import anomalies, error_budgets
from billing_pipeline.observability.check_metadata import (
    ROUTE_KEY,
    SCOPE_KEY,
    SLO_NAME_KEY,
    SUMMARY_KEY,
    THREATENED_BUDGETS_KEY,
)
from billing_pipeline.observability.error_budgets import rate_text as _rate
from billing_pipeline.observability.slis import anomalous_spends
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import markdown_table
from billing_pipeline.platform.names import COST_ANOMALIES, ENRICHED, RECONCILED, SLO_BUDGETS, SLO_GROUP
from billing_pipeline.platform.ops_config import BUDGETED_SLIS
from billing_pipeline.views import forecast

OWNERS = ["team:finops-platform"]


def _number(value: float) -> float | str:
    """Metadata floats must be finite; an infinite burn (a zero-budget SLO that failed) is shown as text."""
    return float(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _preview(table: pl.DataFrame) -> str:
    return markdown_table(
        [
            {
                "sli": r["sli"],
                "source": r["source"],
                "today": "" if r["good"] is None else ("good" if r["good"] else "bad"),
                "attainment": f"{r['attainment']:.1%}",
                "events": r["events"],
                "objective": f"{r['objective']:.1%}",
                "budget left": "exhausted" if math.isinf(r["budget_left"]) else f"{r['budget_left']:.0%}",
                "burn fast (long/short)": f"{_rate(r['burn_rate_fast_long'])}/{_rate(r['burn_rate_fast_short'])}",
                "burn slow (long/short)": f"{_rate(r['burn_rate_slow_long'])}/{_rate(r['burn_rate_slow_short'])}",
                "alert": r["alert"],
            }
            for r in table.iter_rows(named=True)
        ],
        empty="_no SLI judged in the window_",
    )


def cost_anomalies_part(partitions_def: PartitionsDefinition, checks: Sequence[DayCheck]) -> DayPart:
    """`cost_anomalies`, daily, after `tag_enriched_costs` (the allocated rows it compares), with its checks
    (`checks.anomaly_day_checks`) evaluated in the day's step right after it is written."""
    spec = AssetSpec(
        COST_ANOMALIES,
        group_name=SLO_GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[AssetKey(ENRICHED)],
        partitions_def=partitions_def,
        skippable=True,  # not built below a failed blocking check
        description=(
            "M8: the day's spend anomalies per service / account / team (same weekday of the previous weeks: "
            "median + MAD) and burn-rate breaches (against the trailing daily mean), each naming what moved, by "
            "how much, its largest rows and a DuckDB query listing them all. Stored at "
            "<lake>/cost_anomalies/date=D/part-0.parquet (DuckDB view cost_anomalies); no file when nothing moved."
        ),
    )

    def evaluate(run: LayerDay, selected: Set[AssetCheckKey]) -> list[AssetCheckResult]:
        return [
            check.evaluate(run.billing, run.day, run.context.log, run.evaluated_slis)
            for check in checks
            if check.spec_key in selected
        ]

    return DayPart(spec, tuple(check.spec(partitions_def) for check in checks), _publish_anomalies, evaluate)


def _publish_anomalies(run: LayerDay) -> dict[str, object]:
    """Detect and store the day's anomalies; refresh the DuckDB views only if the table just appeared."""
    table = anomalies.publish(run.config, run.store, run.day)
    run.refresh_views()  # a new table only
    return {
        "dagster/row_count": table.height,
        "anomalous_spends": anomalous_spends(table),
        "burn_rate_breaches": table.filter(pl.col("kind") == "burn_rate").height,
        "table": anomalies.anomalies_url(run.config.lake_url, run.day),
        "preview": MetadataValue.md(anomalies.preview(table)),
    }


def budget_check_name(sli: str) -> str:
    return f"slo_budget_{sli}"


def burning_sources(sli: str, table: pl.DataFrame | None) -> list[str]:
    """The sources whose error budget of `sli` burns (a page or a ticket) on the day."""
    if table is None or not table.height:
        return []
    burning = table.filter((pl.col("sli") == sli) & pl.col("alert").is_in(["page", "ticket"]))
    return sorted(set(burning["source"].to_list()))


def budget_result(
    config: BillingConfig, sli: str, table: pl.DataFrame | None, threatened: list[dict[str, str]] | None = None
) -> AssetCheckResult:
    """The check result of one SLI's budgets for the day: fails on any source burning, routed by the worst;
    a burn names the cost budgets at warn / over its sources feed (`threatened`, `forecast.threatened_budgets`)."""
    rows = table.filter(pl.col("sli") == sli) if table is not None else pl.DataFrame()
    if not rows.height:
        return AssetCheckResult(
            passed=True,
            metadata={
                SLO_NAME_KEY: sli,
                ROUTE_KEY: "none",
                SCOPE_KEY: "latest",
                SUMMARY_KEY: "no evaluation of this SLI in the window",
            },
            description="no evaluation of this SLI in the window",
        )
    worst = max(rows["alert"].to_list(), key=error_budgets.ALERTS.index)
    burning = [error_budgets.describe(r) for r in rows.filter(pl.col("alert") == worst).iter_rows(named=True)]
    settings = config.error_budget
    if worst == "page":
        summary = (
            f"fast burn (> {settings.fast_burn.burn_rate:g}x over {settings.fast_burn.long_window_days} and "
            f"{settings.fast_burn.short_window_days} day(s)): " + "; ".join(burning)
        )
    elif worst == "ticket":
        summary = (
            f"slow burn (> {settings.slow_burn.burn_rate:g}x over {settings.slow_burn.long_window_days} and "
            f"{settings.slow_burn.short_window_days} day(s)): " + "; ".join(burning)
        )
    else:
        low = rows.sort("budget_left").row(0, named=True)
        summary = f"within budget; least left: {error_budgets.describe(low)}"
    if worst != "none" and threatened:
        summary += "; threatens the budget(s) of " + "; ".join(forecast.threat_text(b) for b in threatened)
    metadata: dict[str, object] = {
        SLO_NAME_KEY: sli,
        ROUTE_KEY: worst,
        SCOPE_KEY: "latest",
        SUMMARY_KEY: summary,
        "slo/attainment": float(rows["attainment"].min()),
        "slo/budget_left": _number(float(rows["budget_left"].min())),
        "slo/burn_rate_fast_long": _number(float(rows["burn_rate_fast_long"].max())),
        "slo/burn_rate_slow_long": _number(float(rows["burn_rate_slow_long"].max())),
    }
    if worst != "none" and threatened:
        metadata[THREATENED_BUDGETS_KEY] = json.dumps(threatened)
    for row in rows.iter_rows(named=True):
        metadata[f"slo/attainment/{row['source']}"] = float(row["attainment"])
        metadata[f"slo/budget_left/{row['source']}"] = _number(float(row["budget_left"]))
    severity = AssetCheckSeverity.ERROR if worst == "page" else AssetCheckSeverity.WARN
    return AssetCheckResult(passed=worst == "none", severity=severity, metadata=metadata, description=summary)


def _budget_description(config: BillingConfig, sli: str) -> str:
    settings = config.error_budget
    return (
        f"Error budget of {sli} per source over {settings.window_days} days (objective "
        f"{settings.objective_of(sli):.1%} of daily evaluations good): pages when the burn rate is above "
        f"{settings.fast_burn.burn_rate:g}x over {settings.fast_burn.long_window_days} and "
        f"{settings.fast_burn.short_window_days} day(s), tickets above {settings.slow_burn.burn_rate:g}x over "
        f"{settings.slow_burn.long_window_days} and {settings.slow_burn.short_window_days} day(s). "
        f"Runbook: {config.alerts.runbook_url}#runbook-{sli}."
    )


def _budget_specs(config: BillingConfig, partitions_def: PartitionsDefinition) -> list[AssetCheckSpec]:
    """One check per budgeted SLI on `slo_error_budgets`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=PreviewWarning)
        return [
            AssetCheckSpec(
                budget_check_name(sli),
                asset=SLO_BUDGETS,
                description=_budget_description(config, sli),
                partitions_def=partitions_def,
            )
            for sli in BUDGETED_SLIS
        ]


def _budget_metadata(table: pl.DataFrame) -> dict[str, object]:
    """The materialization's metadata: pages, tickets, the preview and each SLI's worst attainment and budget."""
    alerts = dict(table.group_by("alert").len().iter_rows()) if table.height else {}
    metadata: dict[str, object] = {
        "dagster/row_count": table.height,
        "slo/pages": int(alerts.get("page", 0)),
        "slo/tickets": int(alerts.get("ticket", 0)),
        "preview": MetadataValue.md(_preview(table)),
    }
    for sli in BUDGETED_SLIS:
        rows = table.filter(pl.col("sli") == sli)
        if rows.height:
            metadata[f"slo/{sli}/attainment"] = float(rows["attainment"].min())
            metadata[f"slo/{sli}/budget_left"] = _number(float(rows["budget_left"].min()))
    return metadata


def slo_part(config: BillingConfig, partitions_def: PartitionsDefinition) -> DayPart:
    """`slo_error_budgets`, daily, after the reconciliation and the cost anomalies (the SLIs it evaluates
    read both), with one budget check per budgeted SLI evaluated in the same step from the table it just
    wrote (read back once)."""
    spec = AssetSpec(
        SLO_BUDGETS,
        group_name=SLO_GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[AssetKey(RECONCILED), AssetKey(COST_ANOMALIES)],
        partitions_def=partitions_def,
        skippable=True,  # not built below a failed blocking check
        description=(
            "Per SLI and source: the day's verdict and, over the rolling window (error_budget.window_days, 28), "
            "attainment, error budget left and burn rates over a short and a long window; a fast burn pages, a "
            "slow burn tickets (Google SRE workbook, multiwindow multi-burn-rate). Stored at "
            "<lake>/slo_error_budgets/date=D/."
        ),
    )

    def build(run: LayerDay) -> dict[str, object]:
        now = dt.datetime.now(dt.UTC)
        return _budget_metadata(error_budgets.evaluate(run.config, run.store, run.day, now, run.evaluated_slis))

    def evaluate(run: LayerDay, selected: Set[AssetCheckKey]) -> list[AssetCheckResult]:
        checked = [sli for sli in BUDGETED_SLIS if AssetCheckKey(spec.key, budget_check_name(sli)) in selected]
        if not checked:
            return []
        stored = error_budgets.read_budgets(run.store, run.config.lake_url, run.day)
        results = []
        for sli in checked:
            threatened = forecast.threatened_budgets(run.config, run.store, run.day, burning_sources(sli, stored))
            result = budget_result(run.config, sli, stored, threatened)
            results.append(result._replace(asset_key=spec.key, check_name=budget_check_name(sli)))
        return results

    return DayPart(spec, tuple(_budget_specs(config, partitions_def)), build, evaluate)
