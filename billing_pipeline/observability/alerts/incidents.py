"""Incidents, dedup and cooldown: which alerts are news, which open incident they join, what a clear
resolves, and the messages that follow, queued in the outbox before any is posted.

- An alert already open (notified, not passed since) is not notified again; a page still failing after
  the cooldown re-triggers its incident (PagerDuty deduplicates it while it is open, and opens it again
  if someone resolved it by hand while the check still fails).
- A check alert that passed and fails again is a new notification; for tickets not within the cooldown
  of the last one (flapping). One-off alerts (anomalies) are notified once.
- New alerts of one cause join the open incident of that cause, or open one (`dedup_key` from the cause
  and its first partitions); all alerts go to the ticket channel in one message, pages also to
  PagerDuty, one event per incident.
- A clear closes its key; an incident with no open key left is resolved.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from billing_pipeline.observability.alerts.evidence import with_evidence
from billing_pipeline.observability.alerts.model import Alert, Clear, Poster, SendReport, alert_key
from billing_pipeline.observability.alerts.outbox import deliver_due, enqueue, load_state, parse_time, save_state
from billing_pipeline.observability.alerts.payloads import (
    alert_entry,
    days_text,
    pagerduty_resolve,
    pagerduty_trigger,
    slack_payload,
)
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import clip
from billing_pipeline.platform.storage import Store

log = logging.getLogger(__name__)

Incident = dict[str, Any]


@dataclass
class _Round:
    """One routing call under the state lock: the state it changes, the incidents it closes, its report."""

    config: BillingConfig
    store: Store
    state: dict[str, Any]
    now: dt.datetime
    report: SendReport = field(default_factory=SendReport)
    closed: list[Incident] = field(default_factory=list)

    @property
    def stamp(self) -> str:
        return self.now.isoformat()

    @property
    def cooldown(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.config.alerts.cooldown_minutes)

    def close(self, incident: Incident) -> None:
        """An incident with no open key left is resolved."""
        self.closed.append(incident)
        del self.state["incidents"][incident["id"]]
        self.report.resolved.append(f"{incident['headline']} for {days_text(incident['partitions'])}")


def _open_index(state: dict[str, Any]) -> dict[str, Incident]:
    return {key: incident for incident in state["incidents"].values() for key in incident["open"]}


def send_locked(
    config: BillingConfig,
    store: Store,
    alerts: list[Alert],
    group: str,
    now: dt.datetime,
    env: Mapping[str, str],
    poster: Poster,
    clears: Sequence[Clear],
    run_id: str | None,
) -> SendReport:
    """Notify new alerts, resolve what passes again, and deliver through the outbox (module docstring)."""
    round_ = _Round(config, store, load_state(store, config.lake_url), now)
    if run_id and run_id in round_.state["runs"]:
        round_.report.already_routed = True
        deliver_due(round_.state, config, env, poster, now, round_.report)
        save_state(store, config.lake_url, round_.state)
        return round_.report
    unique, clears = _one_offs_as_clears(round_.state, alerts, clears)
    _apply_clears(round_, unique, clears)
    fresh, retrigger = _triage(round_, unique)
    earlier, pages = _join_incidents(round_, fresh, retrigger)
    _queue_messages(round_, group, earlier, pages)
    _remember_and_deliver(round_, run_id, env, poster)
    return round_.report


def _one_offs_as_clears(
    state: dict[str, Any], alerts: list[Alert], clears: Sequence[Clear]
) -> tuple[list[Alert], list[Clear]]:
    """The routed alerts (one per key), and the clears with one more per one-off under the key of an open
    alert: a late day that has arrived since ends that alert instead of opening another."""
    index = _open_index(state)
    unique = list({a.key: a for a in alerts if a.route != "none"}.values())
    clears = list(clears) + [Clear(a.key, a.partition, a.summary) for a in unique if not a.stateful and a.key in index]
    return [a for a in unique if a.stateful or a.key not in index], clears


def _apply_clears(round_: _Round, unique: list[Alert], clears: list[Clear]) -> None:
    """Keys that pass again (and fail in no alert of this call) leave their incident."""
    failing_now = {a.key for a in unique}
    clear_by_key = {c.key: c for c in clears if c.key not in failing_now}
    for incident in list(round_.state["incidents"].values()):
        for key in [k for k in incident["open"] if k in clear_by_key]:
            entry = incident["open"].pop(key)
            incident.setdefault("cleared", []).append(
                {"partition": entry.get("partition"), "at": round_.stamp, "note": clip(clear_by_key[key].note, 300)}
            )
        if not incident["open"]:
            round_.close(incident)


def _triage(round_: _Round, unique: list[Alert]) -> tuple[dict[tuple[str, bool], list[Alert]], dict[str, Incident]]:
    """Failing alerts: still open (maybe due a re-trigger), in the cooldown, or news (grouped by cause)."""
    state, now = round_.state, round_.now
    index = _open_index(state)
    fresh: dict[tuple[str, bool], list[Alert]] = {}
    retrigger: dict[str, Incident] = {}
    for alert in unique:
        incident = index.get(alert.key)
        if incident is not None and incident["cause"] != alert.group:
            # the same partition fails for another reason now (a failed run's step or error changed): the old
            # cause is over, the new one is news
            incident["open"].pop(alert.key)
            incident.setdefault("cleared", []).append(
                {"partition": alert.partition, "at": round_.stamp, "note": clip(f"now failing as: {alert.group}", 300)}
            )
            if not incident["open"]:
                round_.close(incident)
            fresh.setdefault((alert.group, alert.stateful), []).append(
                with_evidence(alert, round_.config, round_.store)
            )
            continue
        if incident is not None:
            incident["open"][alert.key]["seen"] = round_.stamp
            round_.report.suppressed.append(alert)
            triggered = incident.get("triggered_at")
            if incident["route"] == "page" and triggered and now - parse_time(triggered) >= round_.cooldown:
                retrigger[incident["id"]] = incident
            continue
        last = state["delivered"].get(alert.key)
        if last and (not alert.stateful or (alert.route != "page" and now - parse_time(last) < round_.cooldown)):
            round_.report.suppressed.append(alert)
            continue
        fresh.setdefault((alert.group, alert.stateful), []).append(with_evidence(alert, round_.config, round_.store))
    return fresh, retrigger


def _join_incidents(
    round_: _Round, fresh: dict[tuple[str, bool], list[Alert]], retrigger: dict[str, Incident]
) -> tuple[dict[str, list[str]], dict[str, tuple[Incident, bool]]]:
    """New alerts of a cause join its open incident, or open one; one-off pages get an incident of their own
    that is not kept. Returns the partitions already open per joined cause, and the pages to trigger
    (incident id -> (incident, kept in the state))."""
    settings, state, stamp = round_.config.alerts, round_.state, round_.stamp
    earlier: dict[str, list[str]] = {}
    pages: dict[str, tuple[Incident, bool]] = {}
    by_cause = {incident["cause"]: incident for incident in state["incidents"].values()}
    for (cause, stateful), members in fresh.items():
        route = "page" if any(a.route == "page" for a in members) else "ticket"
        entries = {a.key: alert_entry(a, settings.dagster_url, settings.runbook_url) for a in members}
        if stateful:
            incident = by_cause.get(cause)
            if incident is None:
                incident = _new_incident(cause, route, members, stamp)
                state["incidents"][incident["id"]] = by_cause[cause] = incident
            else:
                earlier[cause] = sorted({str(e["partition"]) for e in incident["open"].values() if e.get("partition")})
                incident["route"] = "page" if "page" in (route, incident["route"]) else "ticket"
            incident["open"].update({k: {**v, "since": stamp, "seen": stamp} for k, v in entries.items()})
            incident["partitions"] = sorted(set(incident["partitions"]) | {a.partition for a in members if a.partition})
            round_.report.opened.append(incident["id"])
            if incident["route"] == "page":
                pages[incident["id"]] = (incident, True)
        elif route == "page":
            one_off = {"id": alert_key("page", *sorted(entries)), "open": entries, "opened_at": stamp}
            pages[one_off["id"]] = (one_off, False)
        for alert in members:
            state["delivered"][alert.key] = stamp
        round_.report.sent += members
    for incident_id, incident in retrigger.items():
        pages.setdefault(incident_id, (incident, True))
    return earlier, pages


def _new_incident(cause: str, route: str, members: list[Alert], stamp: str) -> Incident:
    """An incident of one cause; its id (PagerDuty's `dedup_key`) from the cause and its first partitions."""
    return {
        "id": alert_key("incident", cause, *sorted(a.partition or a.key for a in members)),
        "cause": cause,
        "route": route,
        "opened_at": stamp,
        "headline": members[0].headline or members[0].title,
        "open": {},
        "partitions": [],
    }


def _queue_messages(
    round_: _Round, group: str, earlier: dict[str, list[str]], pages: dict[str, tuple[Incident, bool]]
) -> None:
    """One ticket for everything notified or resolved; a trigger per paged incident, a resolve per closed one."""
    settings, state, now, report = round_.config.alerts, round_.state, round_.now, round_.report
    closed = round_.closed
    if settings.ticket is not None and (report.sent or closed):
        payload = slack_payload(
            report.sent, group, settings.dagster_url, resolved=closed, earlier=earlier, runbook_url=settings.runbook_url
        )
        what = f"ticket: {len(report.sent)} alert(s), {len(closed)} resolved ({group})"
        enqueue(state, "ticket", settings.ticket.kind, payload, what, f"ticket:{alert_key(what, round_.stamp)}", now)
    if settings.page is None:
        return
    for incident_id, (incident, kept) in pages.items():
        entries = [
            {k: v for k, v in e.items() if k not in ("since", "seen")}
            for e in sorted(incident["open"].values(), key=lambda e: (str(e.get("partition")), e["key"]))
        ]
        if kept:
            incident["triggered_at"] = round_.stamp
        payload = pagerduty_trigger(entries, group, incident_id, settings.dagster_url, incident.get("opened_at"))
        what = f"trigger {incident_id[:8]}: {clip(payload['payload']['summary'], 160)}"
        enqueue(state, "page", settings.page.kind, payload, what, f"page:{incident_id}", now)
    for incident in closed:
        if incident["route"] == "page":
            what = f"resolve {incident['id'][:8]}: {clip(incident['headline'], 160)}"
            resolve = pagerduty_resolve("", incident["id"])
            enqueue(state, "page", settings.page.kind, resolve, what, f"page:{incident['id']}", now)


def _remember_and_deliver(round_: _Round, run_id: str | None, env: Mapping[str, str], poster: Poster) -> None:
    """Record the run as routed, forget what is older than the retention, save, then deliver and save again."""
    config, store, state, now = round_.config, round_.store, round_.state, round_.now
    if run_id:
        state["runs"][run_id] = round_.stamp
    horizon = now - max(dt.timedelta(days=config.alerts.retention_days), round_.cooldown)
    state["delivered"] = {k: v for k, v in state["delivered"].items() if parse_time(v) >= horizon}
    state["runs"] = {k: v for k, v in state["runs"].items() if parse_time(v) >= horizon}
    save_state(store, config.lake_url, state)
    deliver_due(state, config, env, poster, now, round_.report)
    save_state(store, config.lake_url, state)
    for error in round_.report.errors:
        log.warning("%s", error)
