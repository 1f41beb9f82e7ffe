"""Late-arrival / restatement sensors: one per export source, generic over `adapter.discover`.

Each tick lists only the billing periods still open for restatement (the source's `lookback_months`,
the current month included), asks the adapter for the current (latest complete) delivery of each,
and compares it with the JSON cursor (per period: version + file fingerprint). A new delivery is
fingerprinted per usage day (`billing_pipeline.spine.fingerprint`) and only the days whose content
differs from what the lake was built from are requested, as `billing_daily` runs. A provider added
to `billing_pipeline.adapters.ADAPTERS` (GCP, Azure) gets its sensor without touching this file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    PartitionsDefinition,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from billing_pipeline.adapters import adapter_for, choose_current
from billing_pipeline.defs.checks import dagster_name, freshness_check_name, to_check_result
from billing_pipeline.observability.alerts import (
    AlertDeliveryError,
    check_alert,
    flush_outbox,
    route_finished_run,
    send_alerts,
)
from billing_pipeline.observability.slis import freshness, last_delivered_day
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.storage import Store, is_access_denied
from billing_pipeline.spine.calendar import open_periods
from billing_pipeline.spine.fingerprint import changed_days, delivery_day_fingerprints
from resources import BillingResource

log = logging.getLogger(__name__)

TRIGGER_TAG = "billing/trigger"
SOURCE_TAG = "billing/source"
VERSION_TAG = "billing/version"
PERIOD_TAG = "billing/period"


def sensor_name(source: SourceConfig) -> str:
    return f"{dagster_name(source.name)}_late_arrivals"


@dataclass
class Request:
    day: dt.date
    run_key: str
    tags: dict[str, str]


@dataclass
class SourceScan:
    """What one tick found for one source: runs to request, the next cursor, and what it said."""

    requests: list[Request] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    filtered: list[str] = field(default_factory=list)
    denied: int = 0


def run_key(source: str, day: dt.date, version: str, day_fingerprint: str) -> str:
    """Stable across processes (hashlib, never `hash()`): the same content is requested once."""
    return hashlib.sha256(f"{source}|{day.isoformat()}|{version}|{day_fingerprint}".encode()).hexdigest()[:40]


def scan_source(
    store: Store,
    config: BillingConfig,
    source: SourceConfig,
    cursor: dict[str, Any],
    now: dt.datetime,
    has_partition_key: Callable[[str], bool],
) -> SourceScan:
    """One tick for one source, without Dagster: which days to request and the cursor after it."""
    adapter = adapter_for(source.provider)
    scan = SourceScan()
    store.invalidate(source.url)  # sensors live long; fsspec would serve a stale listing
    previous = dict(cursor.get("periods") or {})
    periods = open_periods(now.date(), source.lookback_months, config.start_date)
    scan.cursor = {"periods": {p: previous[p] for p in periods if p in previous}}
    for period in periods:
        try:
            choice = choose_current(adapter.discover(store, source.name, source.url, period, source.format))
        except Exception as error:  # noqa: BLE001 - one unreadable period never breaks the tick
            message = f"{type(error).__name__}: {error}"
            scan.denied += int(is_access_denied(message))
            scan.notes.append(f"{source.name} {period}: listing failed: {message[:300]}")
            continue
        delivery = choice.current
        if delivery is None:
            if choice.held_back:
                scan.notes.append(f"{source.name} {period}: newest delivery incomplete, waiting for its files")
            continue
        position = {
            "version": delivery.version,
            "fingerprint": hashlib.sha256(delivery.fingerprint.encode()).hexdigest()[:32],
        }
        if previous.get(period) == position:
            continue
        try:
            days = changed_days(store, source, config.lake_url, delivery)
            fingerprints = delivery_day_fingerprints(store, source, delivery, config.lake_url)
        except Exception as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {error}"
            scan.denied += int(is_access_denied(message))
            scan.notes.append(f"{source.name} {period}: fingerprinting failed: {message[:300]}")
            continue
        for day in days:
            if not has_partition_key(day.isoformat()):
                scan.filtered.append(day.isoformat())
                continue
            scan.requests.append(
                Request(
                    day=day,
                    run_key=run_key(source.name, day, delivery.version, fingerprints.fingerprint(day)),
                    tags={
                        TRIGGER_TAG: "late_arrival",
                        SOURCE_TAG: source.name,
                        PERIOD_TAG: period,
                        VERSION_TAG: delivery.version[:200],
                    },
                )
            )
        scan.notes.append(f"{source.name} {period}: delivery {delivery.version}: {len(days)} changed day(s)")
        scan.cursor["periods"][period] = position
    return scan


def build_late_arrival_sensor(
    source: SourceConfig,
    job: JobDefinition | Any,
    partitions_def: PartitionsDefinition,
    minimum_interval_seconds: int,
) -> SensorDefinition:
    """The Dagster shell around `scan_source` for one source."""
    source_name = source.name

    @sensor(
        name=sensor_name(source),
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Watches {source.provider} source {source_name!r} for new or restated deliveries of the open "
            "billing periods and requests billing_daily for the days whose content changed."
        ),
    )
    def _late_arrivals(context: SensorEvaluationContext, billing: BillingResource) -> SensorResult:
        config = billing.config
        cursor = json.loads(context.cursor) if context.cursor else {}
        scan = scan_source(
            billing.store(),
            config,
            config.source(source_name),
            cursor,
            dt.datetime.now(dt.UTC),
            partitions_def.has_partition_key,
        )
        for note in scan.notes:
            context.log.info(note)
        if scan.filtered:
            context.log.info(f"days outside the partition set, not requested: {scan.filtered}")
        return SensorResult(
            run_requests=[
                RunRequest(partition_key=r.day.isoformat(), run_key=r.run_key, tags=r.tags) for r in scan.requests
            ],
            cursor=json.dumps(scan.cursor, sort_keys=True),
        )

    return _late_arrivals


def build_late_arrival_sensors(
    config: BillingConfig, job: JobDefinition | Any, partitions_def: PartitionsDefinition
) -> list[SensorDefinition]:
    return [
        build_late_arrival_sensor(s, job, partitions_def, config.automation.sensor_interval_seconds)
        for s in config.sources
    ]


# ---- freshness: a day that never arrives must still fail its check ----------------------------------------

FRESHNESS_SENSOR = "billing_freshness"
ALERTS_ON_SUCCESS = "billing_alerts_on_success"
ALERTS_ON_FAILURE = "billing_alerts_on_failure"
ALERTS_OUTBOX = "billing_alerts_outbox"


def overdue_days(
    config: BillingConfig, store: Store, now: dt.datetime, has_partition_key: Callable[[str], bool]
) -> list[tuple[SourceConfig, dt.date, Any]]:
    """(source, day, SLI result) of every day in the freshness window that is past its deadline and missing.

    A day after the last day any source delivered, when that day is older than the freshness window, fails at
    WARN (ticket), not ERROR: the configured sources end before it (`slis.freshness`); the lake is listed
    once per tick.
    """

    out = []
    today = now.date()
    last_delivered = last_delivered_day(config, store)
    for source in config.sources:
        for back in range(1, config.automation.freshness_window_days + 1):
            day = today - dt.timedelta(days=back)
            if not has_partition_key(day.isoformat()):
                continue
            result = freshness(config, store, day, now, source, last_delivered=last_delivered)
            if not result.passed:
                out.append((source, day, result))
    return out


def build_freshness_sensor(config: BillingConfig, partitions_def: PartitionsDefinition) -> SensorDefinition:
    """Evaluates each source's freshness check for the recent days the runs never reached.

    The check inside `billing_daily` judges a day when it is materialized; a day that never shows up
    has no run, so this sensor reports the failed evaluation for that partition (once per day and
    source, kept in the cursor) and pages; a day after the last day any source delivered, that day being
    older than the freshness window, is reported at WARN and ticketed instead.
    """

    @sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=max(config.automation.sensor_interval_seconds, 60),
        default_status=DefaultSensorStatus.RUNNING,
        description="Fails the freshness check of every source's recent days that are past their expected "
        "latency and still not in the lake, and pages.",
    )
    def _freshness(context: SensorEvaluationContext, billing: BillingResource) -> SensorResult:
        config = billing.config
        store = billing.store()
        now = dt.datetime.now(dt.UTC)
        reported: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        events, alerts = [], []
        for source, day, result in overdue_days(config, store, now, partitions_def.has_partition_key):
            name = freshness_check_name(source)
            marker = f"{name}|{day.isoformat()}"
            if marker in reported:
                continue
            check = to_check_result(result, "freshness")
            events.append(
                AssetCheckEvaluation(
                    asset_key=AssetKey("raw_line_items"),
                    check_name=name,
                    passed=False,
                    metadata=check.metadata,
                    severity=AssetCheckSeverity(result.target.severity),
                    description=result.summary,
                    partition=day.isoformat(),
                )
            )
            alert = check_alert(
                "raw_line_items",
                name,
                day.isoformat(),
                False,
                result.target.severity,
                {**{k: getattr(v, "value", v) for k, v in check.metadata.items()}},
                config,
            )
            if alert is not None:
                alerts.append(alert)
            reported[marker] = now.isoformat()
        if alerts:
            report = send_alerts(config, store, alerts, group=f"freshness {now:%Y-%m-%d %H:%M}")
            for error in report.errors:
                context.log.warning(error)
        horizon = (now - dt.timedelta(days=config.automation.freshness_window_days + 1)).date().isoformat()
        kept = {k: v for k, v in reported.items() if k.split("|")[1] >= horizon}
        return SensorResult(asset_events=events, cursor=json.dumps(kept, sort_keys=True))

    return _freshness


# ---- alerts: every finished run of billing_daily -----------------------------------------------------------


def build_alert_sensors(job: JobDefinition | Any) -> list[SensorDefinition]:
    """Run-status sensors: failed checks and anomalies of a finished run, and failed runs, become alerts, and
    passing checks resolve them (`alerts.route_finished_run`); the outbox sensor retries what failed."""

    def _route(context: RunStatusSensorContext, billing: BillingResource) -> None:
        run = context.dagster_run
        report = route_finished_run(run, billing.config, instance=context.instance, store=billing.store())
        context.log.info(
            f"run {run.run_id}: {len(report.sent)} alert(s) notified, {len(report.suppressed)} already "
            f"open or in cooldown, {len(report.resolved)} incident(s) resolved"
            + (" (routed before)" if report.already_routed else "")
        )
        for error in report.errors:
            context.log.warning(error)
        if report.failures:  # recorded and queued: the tick fails so that the UI shows it
            raise AlertDeliveryError(
                f"run {run.run_id}: alerts recorded, delivery failed (kept in the outbox, "
                f"retried by {ALERTS_OUTBOX}):\n" + "\n".join(report.failures)
            )

    @run_status_sensor(
        name=ALERTS_ON_SUCCESS,
        run_status=DagsterRunStatus.SUCCESS,
        monitored_jobs=[job],
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="Failed checks and cost anomalies of a finished billing_daily run -> alerts; "
        "passing checks resolve the pages they opened.",
    )
    def _on_success(context: RunStatusSensorContext, billing: BillingResource) -> None:
        _route(context, billing)

    @run_failure_sensor(
        name=ALERTS_ON_FAILURE,
        monitored_jobs=[job],
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="A failed billing_daily run is a pipeline outage for its day -> page naming the "
        "failed steps' errors.",
    )
    def _on_failure(context: RunFailureSensorContext, billing: BillingResource) -> None:
        _route(context, billing)

    @sensor(
        name=ALERTS_OUTBOX,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Retries alert messages whose delivery failed (kept in <lake>/_state/alerts/state.json), "
        "with exponential backoff; the tick fails while any message is undelivered.",
    )
    def _outbox(context: SensorEvaluationContext, billing: BillingResource) -> SkipReason:
        report = flush_outbox(billing.config, billing.store())
        if report.posts:
            context.log.info(f"delivered {len(report.posts)} queued alert message(s)")
        if report.pending:
            raise AlertDeliveryError(report.undelivered)
        return SkipReason(
            f"delivered {len(report.posts)} queued alert message(s)" if report.posts else "no alert message waiting"
        )

    return [_on_success, _on_failure, _outbox]
