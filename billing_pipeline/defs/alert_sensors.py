"""The sensors that end in an alert: freshness (a day that never arrives must still fail its check), the
run-status sensors of `billing_daily`, and the outbox retry. Each hands what it found to one function,
`alerts.route` (for a finished run through `alerts.route_finished_run`), which notifies, resolves and
delivers; none of them posts anything itself.
"""

from __future__ import annotations

import datetime as dt
import json
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
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from billing_pipeline.defs.check_results import to_check_result
from billing_pipeline.observability.alerts import Alert, AlertDeliveryError, check_alert, route, route_finished_run
from billing_pipeline.observability.check_metadata import freshness_check_name
from billing_pipeline.observability.slis import overdue_days
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.names import DAY_ASSETS, RAW
from billing_pipeline.platform.storage import Store
from resources import BillingResource

FRESHNESS_SENSOR = "billing_freshness"
ALERTS_ON_SUCCESS = "billing_alerts_on_success"
ALERTS_ON_FAILURE = "billing_alerts_on_failure"
ALERTS_OUTBOX = "billing_alerts_outbox"


# ---- freshness: a day that never arrives must still fail its check ----------------------------------------


def overdue_evaluations(
    config: BillingConfig,
    store: Store,
    now: dt.datetime,
    partitions_def: PartitionsDefinition,
    reported: dict[str, str],
) -> tuple[list[AssetCheckEvaluation], list[Alert]]:
    """The failed freshness evaluation, and its alert, of every overdue (source, day) not reported yet;
    `reported` (the cursor: `<check>|<day>` -> when) gains each one."""
    events, alerts = [], []
    for source, day, result in overdue_days(config, store, now, partitions_def.has_partition_key):
        name = freshness_check_name(source)
        marker = f"{name}|{day.isoformat()}"
        if marker in reported:
            continue
        check = to_check_result(result, "freshness")
        events.append(
            AssetCheckEvaluation(
                asset_key=AssetKey(RAW),
                check_name=name,
                passed=False,
                metadata=check.metadata,
                severity=AssetCheckSeverity(result.target.severity),
                description=result.summary,
                partition=day.isoformat(),
            )
        )
        metadata = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
        alert = check_alert(RAW, name, day.isoformat(), False, result.target.severity, metadata, config)
        if alert is not None:
            alerts.append(alert)
        reported[marker] = now.isoformat()
    return events, alerts


def build_freshness_sensor(config: BillingConfig, partitions_def: PartitionsDefinition) -> SensorDefinition:
    """Evaluates each source's freshness check for the recent days the runs never reached.

    The check inside `billing_daily` judges a day when it is materialized; a day that never shows up
    has no run, so this sensor reports the failed evaluation for that partition (once per day and
    source, kept in the cursor) and routes its alert (a page); a day after the last day any source
    delivered, that day being older than the freshness window, is reported at WARN and ticketed instead.
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
        events, alerts = overdue_evaluations(config, store, now, partitions_def, reported)
        if alerts:
            report = route(config, store, alerts, group=f"freshness {now:%Y-%m-%d %H:%M}")
            for error in report.errors:
                context.log.warning(error)
        horizon = (now - dt.timedelta(days=config.automation.freshness_window_days + 1)).date().isoformat()
        kept = {k: v for k, v in reported.items() if k.split("|")[1] >= horizon}
        return SensorResult(asset_events=events, cursor=json.dumps(kept, sort_keys=True))

    return _freshness


# ---- alerts: every finished run of billing_daily, and the outbox -------------------------------------------


def materializes_a_day(run: Any, daily_job: str) -> bool:
    """A run of `billing_daily`, or one materializing the day's assets otherwise: the asset graph's Materialize
    and its backfills (one run for a range) and `dagster asset materialize` run Dagster's implicit asset job."""
    if run.job_name == daily_job:
        return True
    return any(key.to_user_string() in DAY_ASSETS for key in run.asset_selection or ())


def build_alert_sensors(job: JobDefinition | Any) -> list[SensorDefinition]:
    """Run-status sensors: failed checks and anomalies of a finished run, and failed runs, become alerts, and
    passing checks resolve them (`alerts.route_finished_run`); the outbox sensor retries what failed."""

    def _route(context: RunStatusSensorContext, billing: BillingResource) -> None:
        run = context.dagster_run
        if not materializes_a_day(run, job.name):
            return  # another job's run (the monthly views, retention)
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
        run_status=DagsterRunStatus.SUCCESS,  # every job of the location: `_route` keeps the day's runs
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="Failed checks and cost anomalies of a finished run of the day's assets (billing_daily, "
        "or a backfill of them) -> alerts; passing checks resolve the pages they opened.",
    )
    def _on_success(context: RunStatusSensorContext, billing: BillingResource) -> None:
        _route(context, billing)

    @run_failure_sensor(
        name=ALERTS_ON_FAILURE,  # every job of the location: `_route` keeps the day's runs
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="A failed run of the day's assets is a pipeline outage for its day(s) -> page naming the "
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
        report = route(billing.config, billing.store())  # nothing new: delivers what is due in the outbox
        if report.posts:
            context.log.info(f"delivered {len(report.posts)} queued alert message(s)")
        if report.pending:
            raise AlertDeliveryError(report.undelivered)
        return SkipReason(
            f"delivered {len(report.posts)} queued alert message(s)" if report.posts else "no alert message waiting"
        )

    return [_on_success, _on_failure, _outbox]
