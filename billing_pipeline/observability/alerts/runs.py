"""A finished run as alerts and clears: its check evaluations, the cost anomalies of its partition, and the
run itself (failed: a page naming the failed steps' errors; succeeded: clears an open run failure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from billing_pipeline.observability import anomalies
from billing_pipeline.observability.alerts.evidence import evidence_from_text, state_evidence
from billing_pipeline.observability.alerts.model import RUN_FAILURE, Alert, Clear, Evidence, alert_key
from billing_pipeline.observability.alerts.outcomes import anomaly_alerts, check_outcome
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import clip
from billing_pipeline.platform.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str
    message: str  # the first user-code error of the chain, e.g. "ValueError: invoice file ... lacks columns [...]"
    failed_days: tuple[str, ...] = ()  # a backfill run of many days: the days that failed (the others were built)


def _metadata_text(user_failure: Any, key: str) -> str:
    """A text entry of a `Failure`'s metadata ('' when absent)."""
    entry = (getattr(user_failure, "metadata", None) or {}).get(key)
    return str(getattr(entry, "value", entry) or "")


def _step_failure(event: Any) -> StepFailure:
    data = event.step_failure_data
    chain, error = [], getattr(data, "error", None)
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.cause or getattr(error, "context", None)
    user = [e for e in chain if not str(e.cls_name or "").startswith("Dagster")] or chain
    user_failure = getattr(data, "user_failure_data", None)
    layer = _metadata_text(user_failure, "billing/layer")
    failed_days = tuple(day for day in _metadata_text(user_failure, "billing/failed_days").split(", ") if day)
    if layer:  # a spine layer failed inside the spine's one step (defs/spine_layer.py): name the layer
        error_class = _metadata_text(user_failure, "billing/error_class") or "Error"
        return StepFailure(layer, error_class, str(user_failure.description or "").strip(), failed_days)
    if user_failure is not None and getattr(user_failure, "description", None):
        return StepFailure(event.step_key or "?", "Failure", str(user_failure.description).strip(), failed_days)
    if not user:
        return StepFailure(event.step_key or "?", "unknown", "no error recorded")
    first = user[0]
    return StepFailure(event.step_key or "?", str(first.cls_name or "Error"), str(first.message or "").strip())


def run_failure_alert(
    job_name: str,
    run_id: str,
    partition: str | None,
    message: str,
    failures: Sequence[StepFailure] = (),
    config: BillingConfig | None = None,
    store: Store | None = None,
) -> Alert:
    """A failed run is a pipeline outage for that day: always a page, naming the failed steps' errors."""
    if failures:
        cause_text = "; ".join(
            f"step {f.step}: {f.message.splitlines()[0] if f.message else f.error_class}" for f in failures
        )
        summary = "\n".join(f"step {f.step}: {f.message}" for f in failures)
        cause = f"run_failure {job_name}: " + ", ".join(sorted({f"{f.step} {f.error_class}" for f in failures}))
    else:
        cause_text, summary = message.splitlines()[0] if message else "run failed", message or "run failed"
        cause = f"run_failure {job_name}: {message.split(':')[0][:80] if message else 'unknown'}"
    evidence: list[Evidence] = []
    for failure in failures:
        found = evidence_from_text(failure.message, partition)
        if found:
            evidence.append(dataclasses.replace(found, reason=clip(f"step {failure.step}: {found.reason}", 600)))
    if config is not None and store is not None and partition:
        evidence += state_evidence(config, store, RUN_FAILURE, partition)
    headline = f"{job_name} failed" + (
        " at " + ", ".join(sorted({f"{f.step} ({f.error_class})" for f in failures})) if failures else ""
    )
    return Alert(
        key=alert_key(RUN_FAILURE, job_name, partition),
        route="page",
        severity="ERROR",
        title=clip(f"{job_name} failed for {partition or 'a run'}: {cause_text}", 500),
        summary=clip(summary, 3000),
        partition=partition,
        origin=f"run:{run_id}",
        details={"run_id": run_id, "dagster_message": clip(message, 500), "failed_steps": [f.step for f in failures]},
        cause=cause,
        headline=headline,
        stateful=True,
        runbook=RUN_FAILURE,
        run_id=run_id,
        evidence=tuple(dict.fromkeys(evidence))[:20] or (Evidence(day=partition),),
        slo=RUN_FAILURE,
    )


_EVENT_TYPES = ("ASSET_CHECK_EVALUATION", "STEP_FAILURE", "RUN_FAILURE")


def events_of_run(instance: Any, run_id: str) -> list[Any]:
    from dagster import DagsterEventType

    types = {DagsterEventType[t] for t in _EVENT_TYPES}
    records = instance.get_records_for_run(run_id, of_type=types).records
    return [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event is not None]


@dataclass
class _RunEvents:
    """What a run's event log says: the last evaluation of each (asset, check, partition), failed steps,
    and the run's failure message."""

    evaluations: dict[tuple[str, str, str | None], Any]
    step_failures: list[StepFailure]
    message: str | None


def _read_events(events: Sequence[Any], partition: str | None, failure_message: str | None) -> _RunEvents:
    read = _RunEvents({}, [], failure_message)
    for event in events:
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            key = ("/".join(evaluation.asset_key.path), evaluation.check_name, evaluation.partition or partition)
            read.evaluations[key] = evaluation
        elif kind == "STEP_FAILURE":
            read.step_failures.append(_step_failure(event))
        elif kind == "RUN_FAILURE" and read.message is None:
            read.message = event.message
    return read


def outcomes_for_run(
    events: Sequence[Any],
    run: Any,
    succeeded: bool,
    config: BillingConfig,
    store: Store,
    failure_message: str | None = None,
) -> tuple[list[Alert], list[Clear]]:
    """Alerts and clears of one finished run: its check evaluations (the last one of each check), the rows of
    its partition's `cost_anomalies` table, and the run itself (failed: a page with the steps' errors;
    succeeded: clears an open run failure of the partition)."""
    partition = run.tags.get("dagster/partition")
    days = run_days(run.tags)
    read = _read_events(events, partition, failure_message)
    alerts: list[Alert] = []
    clears: list[Clear] = []
    for (asset, check_name, check_partition), evaluation in read.evaluations.items():
        outcome = check_outcome(
            asset,
            check_name,
            check_partition,
            evaluation.passed,
            evaluation.severity.value,
            evaluation.metadata,
            config,
            evaluation.description,
            run.run_id,
        )
        (clears if isinstance(outcome, Clear) else alerts).append(outcome)  # type: ignore[arg-type]
    for day in days:
        alerts += _anomaly_alerts_of(config, store, day)
    failed_days = sorted({day for failure in read.step_failures for day in failure.failed_days} & set(days))
    message = read.message or "run failed"
    if not succeeded and not failed_days:  # the run failed as a whole (or for its one day)
        alerts.append(
            run_failure_alert(run.job_name, run.run_id, partition, message, read.step_failures, config, store)
        )
        return alerts, clears
    for day in failed_days:  # a backfill run of many days: a failure per day that failed
        alerts.append(run_failure_alert(run.job_name, run.run_id, day, message, read.step_failures, config, store))
    for day in [d for d in days if d not in failed_days] or ([partition] if succeeded else []):
        note = f"run {run.run_id[:8]} " + ("succeeded" if succeeded else f"built {day}")
        clears.append(Clear(key=alert_key(RUN_FAILURE, run.job_name, day), partition=day, note=note))
    return alerts, clears


def run_days(tags: Mapping[str, str]) -> list[str]:
    """The days a run materialized: its partition, or every day of a backfill's range run in one run."""
    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if not (first and last):
        return []
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _anomaly_alerts_of(config: BillingConfig, store: Store, partition: str) -> list[Alert]:
    """One alert per row of the day's `cost_anomalies` table (the asset's output)."""
    try:
        return anomaly_alerts(
            anomalies.read_published(store, config.lake_url, dt.date.fromisoformat(partition)), config
        )
    except Exception as error:  # noqa: BLE001 - a missing anomaly table never hides the run's other alerts
        log.warning("anomalies of %s unreadable: %s", partition, error)
        return []


def alerts_for_run(
    instance: Any, run: Any, config: BillingConfig, store: Store, failure_message: str | None = None
) -> list[Alert]:
    """Failed checks of the run, anomalies of its partition, and the failure itself."""
    from dagster import DagsterRunStatus

    succeeded = failure_message is None and run.status != DagsterRunStatus.FAILURE
    alerts, _ = outcomes_for_run(events_of_run(instance, run.run_id), run, succeeded, config, store, failure_message)
    return alerts
