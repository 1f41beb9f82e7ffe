"""The one way an alert leaves the pipeline: `route` notifies new alerts, resolves what passes again and
delivers the outbox; the run status sensors, the freshness sensor, the outbox sensor, scripts and the demo
all call it (`route_finished_run` for a finished run)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from billing_pipeline.observability.alerts.incidents import send_locked
from billing_pipeline.observability.alerts.model import Alert, Clear, Poster, SendReport
from billing_pipeline.observability.alerts.outbox import flush_outbox, is_routed, post_json, state_locked
from billing_pipeline.observability.alerts.runs import events_of_run, outcomes_for_run
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store

log = logging.getLogger(__name__)


def send_alerts(
    config: BillingConfig,
    store: Store,
    alerts: list[Alert],
    group: str,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
    clears: Sequence[Clear] = (),
    run_id: str | None = None,
) -> SendReport:
    """Notify new alerts, resolve what passes again, and deliver through the outbox (see `send_locked`)."""
    if not (config.alerts.ticket or config.alerts.page):
        report = SendReport(errors=["no alert route configured (alerts.ticket / alerts.page in billing.yaml)"])
        log.warning("%s", report.errors[-1])
        return report
    with state_locked(config.lake_url):
        return send_locked(
            config,
            store,
            alerts,
            group,
            now or dt.datetime.now(dt.UTC),
            os.environ if env is None else env,
            poster or post_json,
            clears,
            run_id,
        )


def route(
    config: BillingConfig,
    store: Store,
    alerts: Sequence[Alert] = (),
    group: str = "",
    clears: Sequence[Clear] = (),
    run_id: str | None = None,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
) -> SendReport:
    """Every alert leaves through here: new alerts, clears or a run to record are notified, resolved and
    delivered (`send_alerts`); with none of them, the outbox's due messages are retried (`flush_outbox`)."""
    if alerts or clears or run_id:
        return send_alerts(config, store, list(alerts), group, now, env, poster, clears, run_id)
    return flush_outbox(config, store, now=now, env=env, poster=poster)


def route_finished_run(
    run: Any,
    config: BillingConfig,
    instance: Any = None,
    store: Store | None = None,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
) -> SendReport:
    """Route the alerts of a finished `billing_daily` run: what the run status sensors do for the daemon's runs.

    `run` is an `ExecuteInProcessResult` (the demo, scripts: `job.execute_in_process(...)`) or a
    `DagsterRun` with the `instance` that holds its events. Failed checks and anomalies are notified, a
    failed run pages with its steps' errors, passing checks resolve what they had opened; a run already
    routed (by a sensor or an earlier call) is not routed again. Undelivered messages stay in the outbox:
    see `report.pending` / `report.undelivered`.
    """
    if not (config.alerts.ticket or config.alerts.page):  # nothing to route to (the demo's billing.yaml)
        return SendReport(errors=["no alert route configured (alerts.ticket / alerts.page in billing.yaml)"])
    store = store or config.store()
    if hasattr(run, "all_events") and hasattr(run, "dagster_run"):
        events, dagster_run, succeeded = list(run.all_events), run.dagster_run, bool(run.success)
    else:
        from dagster import DagsterRunStatus

        if instance is None:
            raise ValueError("route_finished_run: a DagsterRun needs the instance that holds its events")
        events, dagster_run = events_of_run(instance, run.run_id), run
        succeeded = run.status == DagsterRunStatus.SUCCESS
    if is_routed(store, config, dagster_run.run_id):
        report = route(config, store, now=now, env=env, poster=poster)  # nothing new: the outbox only
        report.already_routed = True
        return report
    alerts, clears = outcomes_for_run(events, dagster_run, succeeded, config, store)
    group = f"run {dagster_run.run_id[:8]} ({dagster_run.tags.get('dagster/partition') or 'no partition'})"
    return route(config, store, alerts, group, clears, dagster_run.run_id, now=now, env=env, poster=poster)
