"""SLIs M1-M10 and per-source freshness as partitioned asset checks of the spine (and of `cost_anomalies`).

Thin: each check calls one function of `observability.slis` for the run's partition and turns the result
into an `AssetCheckResult` with one stable numeric key per SLI (`sli/<name>`, plus `sli/<name>/<source>`
and `slo/<name>` for the target; `check_results.to_check_result`), so the UI shows every day's value in
the check's history and per partition. No check is blocking: a blocking check stops every source's
downstream layers, and one source's defect must never stop the others (invariant 6). Contract checks
fail at ERROR and their description names the failing source(s) and why instead. The checks run inside
`billing_daily` right after their asset; every check only reads. They are check specs of the day's
multi-asset, evaluated in its one step (`spine_layer.materialize_days`), the lake catalogue's after the
spine (once per run in a backfill run); a step per check cost a day more in Dagster's own events than the
checks themselves.

Partitioned checks are a preview feature of Dagster 1.13 (DAGSTER_NOTES.md); they are the way the
evaluation records its partition, which makes freshness and SLIs partition-aware in the UI. The
preview warning is silenced here only, at definition time.
"""

import datetime as dt
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterLogManager,
    PartitionsDefinition,
    PreviewWarning,
)

from billing_pipeline.defs.check_results import to_check_result
from billing_pipeline.observability import slis
from billing_pipeline.observability.check_metadata import ROUTE_KEY, SUMMARY_KEY, freshness_check_name
from billing_pipeline.platform import names
from billing_pipeline.platform.catalogue import catalogue_health
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.ops_config import BUDGETED_SLIS
from billing_pipeline.platform.storage import Store
from resources import BillingResource

RAW, NORMALIZED, ENRICHED, RECONCILED, ANOMALIES = (AssetKey(name) for name in (*names.SPINE, names.COST_ANOMALIES))
SPINE_KEYS = frozenset({RAW, NORMALIZED, ENRICHED, RECONCILED})

SliCall = Callable[[BillingConfig, Store, dt.date, dt.datetime], slis.SliResult]


class SliCheck(NamedTuple):
    """One SLI check: the asset it is attached to, its name, its SLO, the SLI and what it measures."""

    asset: AssetKey
    name: str
    slo_name: str
    compute: SliCall
    description: str


SLI_CHECKS: tuple[SliCheck, ...] = (
    SliCheck(
        RAW,
        "publish_guard",
        "publish_guard",
        slis.publish_guard,
        "Invariant 5: sources whose day was held back (an incomplete delivery, an empty or much smaller new "
        "version, a source listing nothing where the lake has data); their published slices are kept.",
    ),
    SliCheck(
        RAW,
        "sli_export_success_rate",
        "export_success_rate",
        slis.export_success_rate,
        "M1: complete deliveries ingested / deliveries due from the provider's cadence, per source and day (a "
        "missing, held-back, quarantined or empty delivery counts 0).",
    ),
    SliCheck(
        RAW,
        "sli_export_latency",
        "export_latency_hours",
        slis.export_latency,
        "M2: hours from the provider's delivery timestamp to the pipeline first seeing the delivery, per source; a "
        "backfill of an old delivery is recorded under sli/export_latency_backfill_hours and not judged.",
    ),
    SliCheck(
        RAW,
        "sli_backfill_backlog",
        "backfill_backlog",
        slis.backfill_backlog,
        "M6: hours of delivered data the day's slices are behind the landing zone (current delivery's timestamp "
        "- that of the delivery the slice was built from, when the day's rows changed), per source.",
    ),
    SliCheck(
        RAW,
        "contract_schema",
        "schema_failures",
        slis.schema_failures,
        "M9: files unreadable because their schema drifted, and sources held back by a breaking change; columns "
        "added/removed are reported.",
    ),
    SliCheck(
        RAW,
        "sli_access_violations",
        "access_violations",
        slis.access_violations,
        "M10: reads or listings the store denied (PermissionError / 403).",
    ),
    SliCheck(
        NORMALIZED,
        "sli_duplicate_rate",
        "duplicate_rate",
        slis.duplicate_rate,
        "M4: duplicate rows dropped / raw rows, per source.",
    ),
    SliCheck(
        NORMALIZED,
        "sli_quarantine_rate",
        "quarantine_rate",
        slis.quarantine_rate,
        "Share of each source's delivered rows, and of their billed cost, sent to quarantine; a delivery mostly "
        "quarantined fails at ERROR naming the dominant reason.",
    ),
    SliCheck(
        NORMALIZED,
        "contract_duplicates",
        "duplicate_rate_blocking",
        lambda c, s, d, n: slis.duplicate_rate(c, s, d, n, name="duplicate_rate_blocking"),
        "M4 contract, per source: a duplicate share this high means a whole file or delivery was delivered or read "
        "twice (the copies are dropped, never counted).",
    ),
    SliCheck(
        ENRICHED,
        "sli_unallocated_percent",
        "unallocated_percent",
        slis.unallocated_percent,
        "M3: percent of billed cost with no owner, month to date, per source.",
    ),
    SliCheck(
        ENRICHED,
        "sli_unallocated_jump",
        "unallocated_jump_points",
        slis.unallocated_jump,
        "M3: rise of the unallocated share since the previous day, in points (a tagging outage).",
    ),
    SliCheck(
        ANOMALIES,
        "sli_cost_anomalies",
        "cost_anomalies",
        slis.cost_anomalies,
        "M8: spend anomalies per service / account / team (same-weekday median + MAD) and burn rate, counted over "
        "the rolling week ending at the day (fewer than the target per week), read from the cost_anomalies "
        "tables (<lake>/cost_anomalies/date=D/); each anomaly is alerted from the table, not by this check.",
    ),
    SliCheck(
        RECONCILED,
        "sli_reconciliation_delta",
        "reconciliation_delta",
        slis.reconciliation_delta,
        "M7: |export total - invoice| / invoice per closed billing period (judged from the month's last day); "
        "month-to-date deltas are information while the month is open; any conservation break fails as ERROR.",
    ),
    SliCheck(
        RECONCILED,
        "source_failures",
        "source_failures",
        slis.source_failures,
        "Invariant 6: sources whose normalized, enriched or reconciliation build failed this day; the other "
        "sources were built and checked as usual.",
    ),
    SliCheck(
        RECONCILED,
        "sli_ingestion_cost",
        "ingestion_cost",
        slis.ingestion_cost,
        "M5: the pipeline's own storage, requests and compute in money (cost_model: unit prices), month to date; "
        "raw quantities (compute seconds, bytes read and stored, requests) in the metadata.",
    ),
)


class DayCheck(NamedTuple):
    """One check as configured: where it is attached, what it computes, how it is described and judged."""

    asset: AssetKey
    name: str
    slo_name: str
    compute: SliCall
    description: str
    blocking: bool

    @property
    def spec_key(self) -> AssetCheckKey:
        return AssetCheckKey(self.asset, self.name)

    def spec(self, partitions_def: PartitionsDefinition) -> AssetCheckSpec:
        """Its spec, partitioned like its asset (so each evaluation records its day)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=PreviewWarning)
            return AssetCheckSpec(
                self.name,
                asset=self.asset,
                description=self.description,
                blocking=self.blocking,
                partitions_def=partitions_def,
            )

    def evaluate(
        self,
        billing: BillingResource,
        day: dt.date,
        log: DagsterLogManager,
        evaluated: dict[str, slis.SliResult] | None = None,
    ) -> AssetCheckResult:
        """The check's verdict for `day`, read from the state and the lake (every check only reads). The SLI of a
        budgeted SLO is also kept in `evaluated` by SLO name: the day's error budgets count that verdict
        rather than evaluate the SLI again."""
        result = self.compute(billing.config, billing.store(), day, dt.datetime.now(dt.UTC))
        if evaluated is not None and self.slo_name in BUDGETED_SLIS:
            evaluated[self.slo_name] = result
        if not result.passed:  # a passing verdict's summary is in its evaluation; a log line is one more event
            log.warning(f"{self.name} {day}: {result.summary}")
        return to_check_result(result, self.slo_name, asset_key=self.asset, check_name=self.name)


def _described(config: BillingConfig, spec: SliCheck) -> str:
    """The check's description: what it measures, its target and severity, where it routes, its runbook."""
    target = config.slo.resolve(spec.slo_name)
    judged = "No target by default (reported)" if math.isinf(target.target) else f"Target {target.target:g}"
    routed = (
        f"alerts through its error budget (check {'slo_budget_' + spec.slo_name})"
        if spec.slo_name in BUDGETED_SLIS and target.route == "none"
        else f"routed to {target.route}"
    )
    return (
        f"{spec.description} {judged}, {target.severity} on breach, {routed}. "
        f"Runbook: {config.alerts.runbook_url}#runbook-{spec.slo_name}."
    )


CATALOGUE_CHECK = AssetCheckKey(RECONCILED, "lake_catalogue")


def catalogue_check_spec(partitions_def: PartitionsDefinition) -> AssetCheckSpec:
    """`lake_catalogue`, a check of `reconciliation_deltas` evaluated at the end of the spine's step, once
    the step has refreshed the DuckDB views it reads (its own step cost four more events a day)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=PreviewWarning)
        return AssetCheckSpec(
            CATALOGUE_CHECK.name,
            asset=RECONCILED,
            partitions_def=partitions_def,
            description=(
                "The DuckDB views over the lake (one per table) can be built through the store's own client, as "
                "`billing_pipeline.platform.catalogue.connect` and `python -m billing_pipeline.query` build them, "
                "and the catalogue file (duckdb_path) has every one. ERROR with the reason otherwise (lake "
                "unreadable, a damaged file, a refresh that failed), routed as a ticket; httpfs presence for the "
                "DuckDB CLI is metadata."
            ),
        )


def catalogue_result(billing: BillingResource, log: DagsterLogManager) -> AssetCheckResult:
    """The catalogue's health as a check result; a log line only when it fails (the reason is in the
    evaluation either way)."""
    health = catalogue_health(billing.config, billing.store())
    if not health.passed:
        log.warning(f"lake_catalogue: {health.reason}")
    return AssetCheckResult(
        passed=health.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            **health.metadata(),
            ROUTE_KEY: "ticket",
            SUMMARY_KEY: health.reason,
            "runbook": "lake_catalogue",
        },
        description=health.reason,
        asset_key=CATALOGUE_CHECK.asset_key,
        check_name=CATALOGUE_CHECK.name,
    )


def day_checks(config: BillingConfig) -> list[DayCheck]:
    """Every SLI check, plus one freshness check per source (its own expected latency)."""
    checks = [
        DayCheck(
            spec.asset,
            spec.name,
            spec.slo_name,
            spec.compute,
            _described(config, spec),
            config.slo.resolve(spec.slo_name).blocking,
        )
        for spec in SLI_CHECKS
    ]
    for source in config.sources:
        checks.append(
            DayCheck(
                RAW,
                freshness_check_name(source),
                "freshness",
                lambda c, s, d, n, name=source.name: slis.freshness(c, s, d, n, c.source(name)),
                f"M2b / freshness of source {source.name!r}: the day must be in the lake within "
                f"{slis.expected_latency_hours(source):g} h of its end (partition-aware). "
                f"Runbook: {config.alerts.runbook_url}#runbook-freshness.",
                False,  # freshness is judged per source and never stops the day
            )
        )
    return checks


def spine_day_checks(config: BillingConfig) -> list[DayCheck]:
    """The checks of the four spine assets: evaluated inside the spine's one step, right after their layer."""
    return [check for check in day_checks(config) if check.asset in SPINE_KEYS]


def anomaly_day_checks(config: BillingConfig) -> list[DayCheck]:
    """The checks of `cost_anomalies`: check specs of its asset, evaluated in its step after it is written."""
    return [check for check in day_checks(config) if check.asset == ANOMALIES]
