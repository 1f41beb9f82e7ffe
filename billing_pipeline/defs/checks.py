"""SLIs M1-M10 and per-source freshness as partitioned asset checks of the spine.

Thin: each check calls one function of `slis.py` for the run's partition and turns the result into
an `AssetCheckResult` with one stable numeric key per SLI (`sli/<name>`, plus `sli/<name>/<source>`
and `slo/<name>` for the target), so the UI shows every day's value in the check's history and per
partition. No check is blocking: a blocking check stops every source's downstream layers, and one
source's defect must never stop the others (invariant 6). Contract checks fail at ERROR and their
description names the failing source(s) and why instead. The checks run inside `billing_daily` right
after their asset.

Partitioned checks are a preview feature of Dagster 1.13 (DAGSTER_NOTES.md); they are the way the
evaluation records its partition, which makes freshness and SLIs partition-aware in the UI. The
preview warning is silenced here only, at definition time.
"""

import datetime as dt
import math
import re
import warnings
from collections.abc import Callable

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    asset_check,
)

from billing_pipeline.observability import slis
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.ops_config import BUDGETED_SLIS
from billing_pipeline.platform.storage import Store
from resources import BillingResource

RAW, NORMALIZED, ENRICHED, RECONCILED = (
    AssetKey(n) for n in ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")
)


def dagster_name(text: str) -> str:
    """Dagster names allow letters, digits and `_` only; source names may also hold `-`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


ROUTE_KEY = "alert/route"
SLO_NAME_KEY = "alert/slo"
SCOPE_KEY = "alert/scope"  # `latest`: one alert per check, whatever the partition (an SLO's burn is a state)
SUMMARY_KEY = "summary"


def freshness_check_name(source: SourceConfig | str) -> str:
    return f"freshness_{dagster_name(source if isinstance(source, str) else source.name)}"


def to_check_result(result: slis.SliResult, slo_name: str) -> AssetCheckResult:
    """Stable metadata: `sli/<name>` (float), `sli/<name>/<source>`, `slo/<name>`, route and summary."""
    metadata: dict[str, object] = {
        result.metadata_key: float(result.value),
        f"slo/{result.name}": float(result.target.target),
        ROUTE_KEY: result.target.route,
        SLO_NAME_KEY: slo_name,
        SUMMARY_KEY: result.summary,
    }
    for source, value in sorted(result.per_source.items()):
        metadata[f"{result.metadata_key}/{source}"] = float(value)
    for key, value in result.extra.items():
        if key == "anomalies":
            metadata[key] = MetadataValue.md(str(value))
        elif isinstance(value, (int, float)) and key.startswith("sli/"):
            metadata[key] = float(value)
        else:
            metadata[key] = value if isinstance(value, (int, float)) else str(value)
    severity = AssetCheckSeverity(result.severity or result.target.severity)
    return AssetCheckResult(
        passed=bool(result.passed), severity=severity, metadata=metadata, description=result.summary
    )


SliCall = Callable[[BillingConfig, Store, dt.date, dt.datetime], slis.SliResult]


def _check(
    asset: AssetKey,
    name: str,
    slo_name: str,
    compute: SliCall,
    partitions_def: PartitionsDefinition,
    description: str,
    blocking: bool = False,
) -> AssetChecksDefinition:
    @asset_check(asset=asset, name=name, partitions_def=partitions_def, blocking=blocking, description=description)
    def _sli_check(context: AssetCheckExecutionContext, billing: BillingResource) -> AssetCheckResult:
        day = dt.date.fromisoformat(context.partition_key)
        result = compute(billing.config, billing.store(), day, dt.datetime.now(dt.UTC))
        context.log.info(f"{name} {day}: {result.summary}")
        return to_check_result(result, slo_name)

    return _sli_check


def build_checks(config: BillingConfig, partitions_def: PartitionsDefinition) -> list[AssetChecksDefinition]:
    """Every SLI check, plus one freshness check per source (its own expected latency)."""
    specs: list[tuple[AssetKey, str, str, SliCall, str, bool]] = [
        (
            RAW,
            "publish_guard",
            "publish_guard",
            slis.publish_guard,
            "Invariant 5: sources whose day was held back (an incomplete delivery, an empty or much smaller new "
            "version, a source listing nothing where the lake has data); their published slices are kept.",
            False,
        ),
        (
            RAW,
            "sli_export_success_rate",
            "export_success_rate",
            slis.export_success_rate,
            "M1: complete deliveries ingested / deliveries due from the provider's cadence, per source and day (a "
            "missing, held-back, quarantined or empty delivery counts 0).",
            False,
        ),
        (
            RAW,
            "sli_export_latency",
            "export_latency_hours",
            slis.export_latency,
            "M2: hours from the provider's delivery timestamp to the pipeline first seeing the delivery, per source; a "
            "backfill of an old delivery is recorded under sli/export_latency_backfill_hours and not judged.",
            False,
        ),
        (
            RAW,
            "sli_backfill_backlog",
            "backfill_backlog",
            slis.backfill_backlog,
            "M6: hours of delivered data the day's slices are behind the landing zone (current delivery's timestamp "
            "- that of the delivery the slice was built from, when the day's rows changed), per source.",
            False,
        ),
        (
            RAW,
            "contract_schema",
            "schema_failures",
            slis.schema_failures,
            "M9: files unreadable because their schema drifted, and sources held back by a breaking change; columns "
            "added/removed are reported.",
            False,
        ),
        (
            RAW,
            "sli_access_violations",
            "access_violations",
            slis.access_violations,
            "M10: reads or listings the store denied (PermissionError / 403).",
            False,
        ),
        (
            NORMALIZED,
            "sli_duplicate_rate",
            "duplicate_rate",
            slis.duplicate_rate,
            "M4: duplicate rows dropped / raw rows, per source.",
            False,
        ),
        (
            NORMALIZED,
            "sli_quarantine_rate",
            "quarantine_rate",
            slis.quarantine_rate,
            "Share of each source's delivered rows, and of their billed cost, sent to quarantine; a delivery mostly "
            "quarantined fails at ERROR naming the dominant reason.",
            False,
        ),
        (
            NORMALIZED,
            "contract_duplicates",
            "duplicate_rate_blocking",
            lambda c, s, d, n: slis.duplicate_rate(c, s, d, n, name="duplicate_rate_blocking"),
            "M4 contract, per source: a duplicate share this high means a whole file or delivery was delivered or read "
            "twice (the copies are dropped, never counted).",
            False,
        ),
        (
            ENRICHED,
            "sli_unallocated_percent",
            "unallocated_percent",
            slis.unallocated_percent,
            "M3: percent of billed cost with no owner, month to date, per source.",
            False,
        ),
        (
            ENRICHED,
            "sli_unallocated_jump",
            "unallocated_jump_points",
            slis.unallocated_jump,
            "M3: rise of the unallocated share since the previous day, in points (a tagging outage).",
            False,
        ),
        (
            ENRICHED,
            "sli_cost_anomalies",
            "cost_anomalies",
            slis.cost_anomalies,
            "M8: spend anomalies per service / account / team (same-weekday median + MAD) and burn rate, counted over "
            "the rolling week ending at the day (fewer than the target per week); the day's table is stored at "
            "<lake>/cost_anomalies/date=D/.",
            False,
        ),
        (
            RECONCILED,
            "sli_reconciliation_delta",
            "reconciliation_delta",
            slis.reconciliation_delta,
            "M7: |export total - invoice| / invoice per closed billing period (judged from the month's last day); "
            "month-to-date deltas are information while the month is open; any conservation break fails as ERROR.",
            False,
        ),
        (
            RECONCILED,
            "source_failures",
            "source_failures",
            slis.source_failures,
            "Invariant 6: sources whose normalized, enriched or reconciliation build failed this day; the other "
            "sources were built and checked as usual.",
            False,
        ),
        (
            RECONCILED,
            "sli_ingestion_cost",
            "ingestion_cost",
            slis.ingestion_cost,
            "M5: the pipeline's own storage, requests and compute in money (cost_model: unit prices), month to date; "
            "raw quantities (compute seconds, bytes read and stored, requests) in the metadata.",
            False,
        ),
    ]
    checks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=PreviewWarning)
        for asset, name, slo_name, compute, description, blocking in specs:
            target = config.slo.resolve(slo_name)
            judged = "No target by default (reported)" if math.isinf(target.target) else f"Target {target.target:g}"
            routed = (
                f"alerts through its error budget (check {'slo_budget_' + slo_name})"
                if slo_name in BUDGETED_SLIS and target.route == "none"
                else f"routed to {target.route}"
            )
            checks.append(
                _check(
                    asset,
                    name,
                    slo_name,
                    compute,
                    partitions_def,
                    f"{description} {judged}, {target.severity} on breach, {routed}. "
                    f"Runbook: {config.alerts.runbook_url}#runbook-{slo_name}.",
                    blocking=blocking or target.blocking,
                )
            )
        for source in config.sources:
            checks.append(
                _check(
                    RAW,
                    freshness_check_name(source),
                    "freshness",
                    lambda c, s, d, n, name=source.name: slis.freshness(c, s, d, n, c.source(name)),
                    partitions_def,
                    f"M2b / freshness of source {source.name!r}: the day must be in the lake within "
                    f"{slis.expected_latency_hours(source):g} h of its end (partition-aware). "
                    f"Runbook: {config.alerts.runbook_url}#runbook-freshness.",
                )
            )
    return checks
