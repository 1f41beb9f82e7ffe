"""Alert routing: failed checks, cost anomalies and failed runs become tickets (Slack-compatible
incoming webhook) or pages (PagerDuty Events API v2), grouped into incidents, resolved when they pass
again, and delivered through a persistent outbox.

Routes come from `billing.yaml` (`alerts:`), per SLI from `slo:`: pages for pipeline outages (a failed
run), data later than its SLA (freshness), large unallocated jumps, contract breaks and denied reads;
tickets for reconciliation deltas, backfill backlog, anomalies and the other SLIs. Secrets stay in the
environment: `url_env` / `routing_key_env` name variables, never values, and are read when a delivery
is attempted (the outbox in the lake never holds them).

- **Incidents.** A failed check (or a failed run) is open until the same check passes again for the same
  partition (or the partition's run succeeds). Open alerts of one cause (one check, or one step failing
  with one error class) form one incident: twelve overdue days of a source are one page listing them,
  a thirteenth joins it (PagerDuty deduplicates the trigger by `dedup_key`) and the ticket channel hears
  of the new day only. When every partition of an incident passes, the page is resolved (Events v2
  `resolve`, same `dedup_key`) and the ticket channel gets a note.
- **Outbox.** Every message is queued in the state before it is posted; a delivery that fails (HTTP
  error, connection refused, no routing key in the environment) stays queued and is retried with
  exponential backoff (`retry_initial_seconds` doubling up to `retry_max_seconds`) by the
  `billing_alerts_outbox` sensor and every later send. Nothing is dropped; messages of one PagerDuty
  incident keep their order (a resolve never overtakes its trigger).
- **What a human needs.** Each alert names source, day, file and column when the lake's state or the
  check's text knows them (held-back reasons, file problems, layer failures, a failed step's error),
  and links the runbook section of its SLI (`<runbook_url>#runbook-<sli>`) and the Dagster run.
- **Any run.** `route_finished_run` routes a finished run or an `execute_in_process` result; the run
  status sensors call it for the daemon's runs, scripts and the demo call it for theirs. A run is
  routed once, whoever asks first.

State: `<lake>/_state/alerts/state.json` (open incidents, what was notified and when, routed runs, the
outbox), so a restart of the daemon neither re-pages nor loses a queued message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline.observability import anomalies
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import PAGERDUTY_MAX_BYTES, clip, json_size, slack_text
from billing_pipeline.platform.lake import exclusive_lock
from billing_pipeline.platform.ops_config import WebhookRoute
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, is_access_denied, is_remote, join

log = logging.getLogger(__name__)

Poster = Callable[[str, dict[str, Any], float], int]

RUN_FAILURE = "run_failure"  # the runbook name of a failed run
STATE_VERSION = 1


@dataclass(frozen=True)
class Evidence:
    """Where a problem is: the source, the usage day, the file and the column, and the words that said so."""

    source: str | None = None
    day: str | None = None
    file: str | None = None
    column: str | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    def line(self, said: str = "", reason: bool = True) -> str:
        """`source S, day D, file F, column C: reason`; the reason is left out when `said` (the alert's summary)
        already holds it, or when `reason` is False."""
        parts = [
            f"source {self.source}" if self.source else "",
            f"day {self.day}" if self.day else "",
            f"file {self.file}" if self.file else "",
            f"column {self.column}" if self.column else "",
        ]
        where = ", ".join(p for p in parts if p)
        core = re.sub(r"^held back \([^)]*\): ", "", self.reason)
        if not reason or (said and core[:120] in said):
            return where or self.reason
        return f"{where}: {self.reason}" if self.reason and where else (where or self.reason)


@dataclass(frozen=True)
class Alert:
    """One thing a human should know about, with the key that makes it the same alert next time."""

    key: str
    route: str  # page | ticket | none
    severity: str  # ERROR | WARN
    title: str
    summary: str
    partition: str | None = None
    origin: str = ""  # check key, anomaly, run
    details: Mapping[str, Any] = field(default_factory=dict)
    cause: str = ""  # alerts of one cause form one incident (default: `origin`)
    headline: str = ""  # the title without its partition (default: `title`)
    stateful: bool = False  # open until the same key passes again (checks, runs); else a one-off (anomalies)
    runbook: str = ""  # SLI name whose runbook section is linked (`#runbook-<name>`)
    run_id: str | None = None
    evidence: tuple[Evidence, ...] = ()
    slo: str = ""
    check: str = ""

    @property
    def group(self) -> str:
        return self.cause or self.origin or self.key


@dataclass(frozen=True)
class Clear:
    """A check (or run) that passes again: closes the open alert with the same key, if there is one."""

    key: str
    partition: str | None = None
    note: str = ""


@dataclass
class SendReport:
    sent: list[Alert] = field(default_factory=list)  # notified now (queued, and posted unless a failure says so)
    suppressed: list[Alert] = field(default_factory=list)  # already open, or in the cooldown
    posts: list[tuple[str, int]] = field(default_factory=list)  # (route kind, HTTP status) delivered
    errors: list[str] = field(default_factory=list)  # configuration problems and failed deliveries
    failures: list[str] = field(default_factory=list)  # deliveries attempted in this call that failed
    resolved: list[str] = field(default_factory=list)  # incidents closed (their headline and partitions)
    opened: list[str] = field(default_factory=list)  # incident ids opened or joined
    pending: list[dict[str, Any]] = field(default_factory=list)  # outbox entries still undelivered
    already_routed: bool = False

    @property
    def undelivered(self) -> str:
        """One line per undelivered message with its last error, for a sensor tick or a log."""
        lines = [f"{len(self.pending)} alert message(s) undelivered:"]
        for entry in self.pending[:10]:
            lines.append(
                f"  alerts.{entry['route']} {entry['what']}: queued {entry['created_at']}, "
                f"{entry['attempts']} attempt(s), last error: {entry.get('last_error') or 'none yet'}; "
                f"next attempt at {entry['next_attempt_at']}"
            )
        return "\n".join(lines) if self.pending else ""


class AlertDeliveryError(RuntimeError):
    """Raised by the alert sensors after everything is recorded, so that the tick shows the failure."""


def alert_key(*parts: object) -> str:
    """Stable across processes and restarts (hashlib, not `hash()`)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


# ---- links -----------------------------------------------------------------------------------------------------


def runbook_anchor(name: str) -> str:
    """The README anchor of an SLI's runbook (`slo:` name, or `run_failure`)."""
    return f"runbook-{name}" if name else "runbooks"


def runbook_link(config: BillingConfig, name: str) -> str:
    return f"{config.alerts.runbook_url}#{runbook_anchor(name)}"


def run_link(dagster_url: str, run_id: str | None) -> str | None:
    return f"{dagster_url.rstrip('/')}/runs/{run_id}" if run_id else None


def asset_checks_link(dagster_url: str, asset: str) -> str:
    return f"{dagster_url.rstrip('/')}/assets/{asset}?view=checks"


def _is_url(text: str | None) -> bool:
    return bool(text) and re.match(r"^https?://", str(text)) is not None


# ---- where a problem is: source, day, file, column ------------------------------------------------------------

_SOURCE_RE = re.compile(r"source ['\"]([^'\"]+)['\"]")
_URL_RE = re.compile(r"(?:s3|gs|gcs|abfss?|az|file|https?)://[^\s'\",;()\[\]]+")
_PATH_RE = re.compile(r"(?<![\w:/])/[^\s'\",;()\[\]]+\.(?:csv|gz|parquet|json|jsonl|zip|avro|orc|txt)\b")
_COLUMN_RE = re.compile(r"\bcolumns?\s+['\"]([^'\"]+)['\"]")
_COLUMN_LIST_RE = re.compile(r"\bcolumns?\s*:?\s*\[([^\]]*)\]")
_SCHEMA_RE = re.compile(r"ColumnNotFound|SchemaError|SchemaFieldNotFound|schema|column", re.IGNORECASE)


def files_in(text: str) -> list[str]:
    found = _URL_RE.findall(text) + _PATH_RE.findall(text)
    return list(dict.fromkeys(f.rstrip(".") for f in found))


def columns_in(text: str) -> list[str]:
    found = _COLUMN_RE.findall(text)
    for listed in _COLUMN_LIST_RE.findall(text):
        found += re.findall(r"['\"]([^'\"]+)['\"]", listed)
    return list(dict.fromkeys(found))


def evidence_from_text(text: str, day: str | None, source: str | None = None) -> Evidence | None:
    """Source, file and column named in an error or a check's words (None if it names none of them)."""
    sources = _SOURCE_RE.findall(text)
    files, columns = files_in(text), columns_in(text)
    if not (sources or files or columns or source):
        return None
    return Evidence(
        source=source or (sources[0] if sources else None),
        day=day,
        file=", ".join(files[:3]) or None,
        column=", ".join(columns[:5]) or None,
        reason=clip(text.strip().splitlines()[0] if text.strip() else "", 600),
    )


def _problem_evidence(source: str, day: str, problem: Mapping[str, Any]) -> Evidence:
    reason = str(problem.get("reason") or "")
    columns = columns_in(reason)
    return Evidence(
        source=source,
        day=day,
        file=str(problem.get("file_uri") or "") or None,
        column=", ".join(columns[:5]) or None,
        reason=clip(reason, 600),
    )


def _relevant(slo: str, problem: Mapping[str, Any]) -> bool:
    kind, reason = str(problem.get("kind") or ""), str(problem.get("reason") or "")
    if slo == "access_violations":
        return is_access_denied(reason)
    if slo == "schema_failures":
        return kind == "unreadable" and bool(_SCHEMA_RE.search(reason)) and not is_access_denied(reason)
    if slo == "publish_guard":
        return kind in ("unreadable", "empty", "held_back", "missing")
    if slo in ("export_success_rate", "freshness", RUN_FAILURE):
        return kind in ("unreadable", "empty", "missing", "outside_prefix", "held_back")
    return False


def state_evidence(
    config: BillingConfig, store: Store, slo: str, day: str, sources: Iterable[str] | None = None
) -> list[Evidence]:
    """What the lake's state of (day, source) says about an SLI's failure: held-back reasons, file problems,
    failed layers, columns that disappeared."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return []
    wanted = set(sources) if sources is not None else None
    out: list[Evidence] = []
    for source in config.sources:
        if wanted is not None and source.name not in wanted:
            continue
        try:
            state = read_state(store, config.lake_url, source.name, date)
        except Exception as error:  # noqa: BLE001 - an unreadable state never stops an alert
            log.warning("state of %s %s unreadable for an alert: %s", source.name, day, error)
            continue
        held = state.get("held_back") or {}
        problems = list((state.get("raw") or {}).get("problems") or []) + list(held.get("problems") or [])
        if (
            held
            and slo in ("publish_guard", "freshness", RUN_FAILURE)
            or (held.get("kind") == "drift" and slo == "schema_failures")
        ):
            reason = str(held.get("reason") or "")
            files = files_in(reason) or [p.get("file_uri") for p in held.get("problems") or [] if p.get("file_uri")]
            out.append(
                Evidence(
                    source=source.name,
                    day=day,
                    file=", ".join(str(f) for f in files[:3]) or None,
                    column=", ".join(columns_in(reason)[:5]) or None,
                    reason=clip(f"held back ({held.get('kind', '?')}): {reason}", 600),
                )
            )
        out += [_problem_evidence(source.name, day, p) for p in problems if _relevant(slo, p)]
        if slo in ("source_failures", RUN_FAILURE):
            for layer, failure in sorted((state.get("failures") or {}).items()):
                reason = str((failure or {}).get("reason") or "")
                out.append(
                    Evidence(
                        source=source.name,
                        day=day,
                        file=", ".join(files_in(reason)[:3]) or None,
                        column=", ".join(columns_in(reason)[:5]) or None,
                        reason=clip(f"{layer} failed: {reason}", 600),
                    )
                )
        if slo == "schema_failures":
            raw = state.get("raw") or {}
            removed = sorted(set(raw.get("previous_columns") or []) - set(raw.get("columns") or []))
            if removed:
                out.append(
                    Evidence(
                        source=source.name,
                        day=day,
                        column=", ".join(removed[:10]),
                        reason="columns no longer delivered",
                    )
                )
        if slo == "access_violations" and (state.get("access") or {}).get("last_denied"):
            denied = str(state["access"]["last_denied"])
            out.append(
                Evidence(
                    source=source.name,
                    day=day,
                    file=", ".join(files_in(denied)[:3]) or None,
                    reason=clip(f"listing denied: {denied}", 600),
                )
            )
    unique = list(dict.fromkeys(out))
    return unique[:20]


def _failing_sources(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Per-source values of the SLI that miss its target (`sli/<name>/<source>` against `slo/<name>`)."""
    out: dict[str, str] = {}
    for key, target in metadata.items():
        if not (key.startswith("slo/") and isinstance(target, (int, float))):
            continue
        name = key[len("slo/") :]
        floor = "success" in name
        for metric, value in metadata.items():
            if not (metric.startswith(f"sli/{name}/") and isinstance(value, (int, float))):
                continue
            source = metric[len(f"sli/{name}/") :]
            own = metadata.get(f"slo/{name}/{source}")  # a per-source target (M2's daily-window providers)
            goal = own if isinstance(own, (int, float)) else target
            if (value < goal) if floor else (value > goal):
                out[source] = f"{name} = {value:g} ({'below' if floor else 'above'} the target {goal:g})"
    return out


def with_evidence(alert: Alert, config: BillingConfig, store: Store) -> Alert:
    """The alert with the lake state's evidence for its partition, else what its own words name."""
    if alert.evidence or not alert.partition:
        return alert
    found: list[Evidence] = []
    freshness_source = alert.details.get("source") if alert.slo == "freshness" else None
    if alert.slo:
        found = state_evidence(
            config, store, alert.slo, alert.partition, [str(freshness_source)] if freshness_source else None
        )
    named = {e.source for e in found}
    failing = alert.details.get("failing_sources") or {}
    for source, reason in failing.items() if isinstance(failing, Mapping) else []:
        if source not in named:
            found.append(Evidence(source=source, day=alert.partition, reason=str(reason)))
    if not found:
        text_evidence = evidence_from_text(
            alert.summary, alert.partition, str(freshness_source) if freshness_source else None
        )
        found = [text_evidence] if text_evidence else [Evidence(day=alert.partition)]
    return dataclasses.replace(alert, evidence=tuple(found))


# ---- what becomes an alert --------------------------------------------------------------------------------


def _freshness_source(config: BillingConfig, check_name: str) -> str | None:
    from billing_pipeline.defs.checks import freshness_check_name

    return next((s.name for s in config.sources if freshness_check_name(s) == check_name), None)


def check_outcome(
    asset: str,
    check_name: str,
    partition: str | None,
    passed: bool,
    severity: str,
    metadata: Mapping[str, Any],
    config: BillingConfig,
    description: str | None = None,
    run_id: str | None = None,
) -> Alert | Clear:
    """A check evaluation as an alert (failed) or a clear (passed) under the same key.

    A freshness failure whose day has arrived since (`available_at` is a time) is over: it clears the
    open page, and is a one-off ticket ("arrived late") if nothing was open.
    """
    metadata = {k: getattr(v, "value", v) for k, v in metadata.items()}
    latest = metadata.get("alert/scope") == "latest"  # an SLO's burn: one alert per check, not per partition
    key = alert_key("check", asset, check_name, None if latest else partition)
    slo_name = str(metadata.get("alert/slo") or "")
    if passed:
        return Clear(key=key, partition=partition, note=str(metadata.get("summary") or description or ""))
    route = str(metadata.get("alert/route") or "")
    if not route:
        try:
            route = config.slo.resolve(slo_name).route
        except KeyError:
            route = "ticket"
    numbers = {k: v for k, v in metadata.items() if isinstance(v, (int, float)) and k.startswith(("sli/", "slo/"))}
    summary = str(metadata.get("summary") or description or f"check {check_name} failed")
    details: dict[str, Any] = dict(numbers)
    failing = _failing_sources(metadata)
    if failing:
        details["failing_sources"] = failing
    stateful = True
    if slo_name == "freshness":
        source = _freshness_source(config, check_name)
        if source:
            details["source"] = source
        available = str(metadata.get("available_at") or "not yet")
        if available not in ("not yet", "", "None"):  # the day is in the lake now: late, not missing
            stateful, route = False, "ticket" if route != "none" else route
    headline = f"{check_name} failed on {asset}"
    return Alert(
        key=key,
        route=route,
        severity=severity,
        title=f"{headline} for {partition or 'the latest run'}",
        summary=summary,
        partition=partition,
        origin=f"{asset}:{check_name}",
        details=details,
        cause=f"check {asset}:{check_name}",
        headline=headline,
        stateful=stateful,
        runbook=str(metadata.get("runbook") or slo_name),
        run_id=run_id,
        slo=slo_name,
        check=check_name,
    )


def check_alert(
    asset: str,
    check_name: str,
    partition: str | None,
    passed: bool,
    severity: str,
    metadata: Mapping[str, Any],
    config: BillingConfig,
    description: str | None = None,
    run_id: str | None = None,
) -> Alert | None:
    """A failed check evaluation as an alert, routed by its SLO (`alert/route` metadata, else config)."""
    outcome = check_outcome(asset, check_name, partition, passed, severity, metadata, config, description, run_id)
    return outcome if isinstance(outcome, Alert) else None


def anomaly_alerts(table: pl.DataFrame, config: BillingConfig) -> list[Alert]:
    """One alert per anomaly row: what moved, by how much, and the query that lists its rows."""
    route, severity = config.anomalies.route, config.slo.resolve("cost_anomalies").severity
    out = []
    for row in table.iter_rows(named=True):
        day = str(row["usage_date"])
        headline = f"cost {row['kind'].replace('_', ' ')}: {row['dimension']} {row['key']}"
        out.append(
            Alert(
                key=alert_key("anomaly", day, row["kind"], row["dimension"], row["key"]),
                route=route,
                severity=severity,
                title=f"{headline} on {day}",
                summary=row["message"],
                partition=day,
                origin="cost_anomalies",
                details={
                    "spend": row["spend"],
                    "baseline": row["baseline"],
                    "delta": row["delta"],
                    "rows": row["rows"],
                    "top_rows": row["top_rows"],
                    "query": row["query"],
                },
                cause=f"anomaly {row['kind']} {row['dimension']} {row['key']}",
                headline=headline,
                runbook="cost_anomalies",
                slo="cost_anomalies",
                evidence=(Evidence(day=day, reason=f"{row['dimension']} {row['key']}"),),
            )
        )
    return out


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str
    message: str  # the first user-code error of the chain, e.g. "ValueError: invoice file ... lacks columns [...]"


def _step_failure(event: Any) -> StepFailure:
    data = event.step_failure_data
    chain, error = [], getattr(data, "error", None)
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.cause or getattr(error, "context", None)
    user = [e for e in chain if not str(e.cls_name or "").startswith("Dagster")] or chain
    user_failure = getattr(data, "user_failure_data", None)
    if user_failure is not None and getattr(user_failure, "description", None):
        return StepFailure(event.step_key or "?", "Failure", str(user_failure.description).strip())
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


def _events_of_run(instance: Any, run_id: str) -> list[Any]:
    from dagster import DagsterEventType

    types = {DagsterEventType[t] for t in _EVENT_TYPES}
    records = instance.get_records_for_run(run_id, of_type=types).records
    return [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event is not None]


def outcomes_for_run(
    events: Sequence[Any],
    run: Any,
    succeeded: bool,
    config: BillingConfig,
    store: Store,
    failure_message: str | None = None,
) -> tuple[list[Alert], list[Clear]]:
    """Alerts and clears of one finished run: its check evaluations (the last one of each check), the
    anomalies of its partition, and the run itself (failed: a page with the steps' errors; succeeded:
    clears an open run failure of the partition)."""
    partition = run.tags.get("dagster/partition")
    alerts: list[Alert] = []
    clears: list[Clear] = []
    evaluations: dict[tuple[str, str, str | None], Any] = {}
    step_failures: list[StepFailure] = []
    run_message = failure_message
    for event in events:
        kind = event.event_type_value
        if kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            evaluations[
                ("/".join(evaluation.asset_key.path), evaluation.check_name, evaluation.partition or partition)
            ] = evaluation
        elif kind == "STEP_FAILURE":
            step_failures.append(_step_failure(event))
        elif kind == "RUN_FAILURE" and run_message is None:
            run_message = event.message
    for (asset, check_name, check_partition), evaluation in evaluations.items():
        if check_name == "sli_cost_anomalies" and not evaluation.passed:
            continue  # its rows become one alert each below
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
    if partition:
        try:
            alerts += anomaly_alerts(
                anomalies.read_published(store, config.lake_url, dt.date.fromisoformat(partition)), config
            )
        except Exception as error:  # noqa: BLE001 - a missing anomaly table never hides the run's other alerts
            log.warning("anomalies of %s unreadable: %s", partition, error)
    run_key = alert_key(RUN_FAILURE, run.job_name, partition)
    if succeeded:
        clears.append(Clear(key=run_key, partition=partition, note=f"run {run.run_id[:8]} succeeded"))
    else:
        alerts.append(
            run_failure_alert(
                run.job_name, run.run_id, partition, run_message or "run failed", step_failures, config, store
            )
        )
    return alerts, clears


def alerts_for_run(
    instance: Any, run: Any, config: BillingConfig, store: Store, failure_message: str | None = None
) -> list[Alert]:
    """Failed checks of the run, anomalies of its partition, and the failure itself."""
    from dagster import DagsterRunStatus

    succeeded = failure_message is None and run.status != DagsterRunStatus.FAILURE
    alerts, _ = outcomes_for_run(_events_of_run(instance, run.run_id), run, succeeded, config, store, failure_message)
    return alerts


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
    store = store or Store(config.storage_options)
    if hasattr(run, "all_events") and hasattr(run, "dagster_run"):
        events, dagster_run, succeeded = list(run.all_events), run.dagster_run, bool(run.success)
    else:
        from dagster import DagsterRunStatus

        if instance is None:
            raise ValueError("route_finished_run: a DagsterRun needs the instance that holds its events")
        events, dagster_run = _events_of_run(instance, run.run_id), run
        succeeded = run.status == DagsterRunStatus.SUCCESS
    if _routed(store, config, dagster_run.run_id):
        report = flush_outbox(config, store, now=now, env=env, poster=poster)
        report.already_routed = True
        return report
    alerts, clears = outcomes_for_run(events, dagster_run, succeeded, config, store)
    group = f"run {dagster_run.run_id[:8]} ({dagster_run.tags.get('dagster/partition') or 'no partition'})"
    return send_alerts(
        config, store, alerts, group=group, now=now, env=env, poster=poster, clears=clears, run_id=dagster_run.run_id
    )


# ---- payloads -------------------------------------------------------------------------------------------------


def alert_entry(alert: Alert, dagster_url: str = "", runbook_url: str = "README.md") -> dict[str, Any]:
    """An alert as JSON: what PagerDuty's custom details list and what an open incident keeps."""
    entry: dict[str, Any] = {
        "key": alert.key,
        "title": clip(alert.title, 1024),
        "summary": clip(alert.summary, 4096),
        "partition": alert.partition,
        "severity": alert.severity,
        "route": alert.route,
        "headline": clip(alert.headline or alert.title, 512),
        "details": {k: clip(v, 4096) if isinstance(v, str) else v for k, v in alert.details.items()},
    }
    if alert.evidence:
        entry["where"] = [e.as_dict() for e in alert.evidence]
    if alert.runbook:
        entry["runbook"] = f"{runbook_url}#{runbook_anchor(alert.runbook)}"
    if alert.run_id and dagster_url:
        entry["run"] = run_link(dagster_url, alert.run_id)
    elif alert.check and dagster_url:  # no run (the freshness sensor): the asset's checks, with their history
        entry["checks"] = asset_checks_link(dagster_url, alert.origin.split(":")[0])
    return entry


def _days(partitions: Iterable[str | None], limit: int = 14) -> str:
    days = sorted({p for p in partitions if p})
    shown = ", ".join(days[:limit])
    return shown + (f" … (+{len(days) - limit})" if len(days) > limit else "")


def _where_lines(entries: Sequence[Mapping[str, Any]], limit: int = 6, reasons: bool = True) -> list[str]:
    lines = []
    for entry in entries:
        for where in entry.get("where") or []:
            lines.append(Evidence(**where).line(said=str(entry.get("summary") or ""), reason=reasons))
    unique = list(dict.fromkeys(line for line in lines if line))
    return unique[:limit] + ([f"… and {len(unique) - limit} more"] if len(unique) > limit else [])


def _pagerduty_details(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The alerts as JSON (PagerDuty shows it as text, so JSON encoding is all the escaping it needs), the
    list cut to stay well under the Events API's 512 KB (`alerts_omitted` counts the rest)."""
    budget, used, omitted = PAGERDUTY_MAX_BYTES // 2, 0, 0
    kept: list[dict[str, Any]] = []
    for entry in entries:
        size = json_size(entry)
        if used + size > budget:
            omitted += 1
            continue
        kept.append(entry)
        used += size
    return {"alerts": kept, "alerts_omitted": omitted} if omitted else {"alerts": kept}


def _incident_summary(entries: Sequence[Mapping[str, Any]]) -> str:
    if len(entries) == 1:
        where = _where_lines(entries, limit=1, reasons=False)
        return f"{entries[0]['title']} ({where[0]})" if where else str(entries[0]["title"])
    headlines = list(dict.fromkeys(str(e["headline"]) for e in entries))
    if len(headlines) == 1:
        sources = sorted({w.get("source") for e in entries for w in e.get("where") or [] if w.get("source")})
        days = _days(e.get("partition") for e in entries)
        return f"{headlines[0]} for {len({e.get('partition') for e in entries})} partition(s): {days}" + (
            f" (source {', '.join(sources)})" if sources else ""
        )
    return f"{len(entries)} billing-pipeline alerts: {entries[0]['title']}"


def _trigger(
    entries: list[dict[str, Any]], group: str, dedup_key: str, dagster_url: str, opened_at: str | None = None
) -> dict[str, Any]:
    """A PagerDuty Events API v2 trigger for one incident, without its routing key (added when posted)."""
    worst = "critical" if any(e.get("severity") == "ERROR" for e in entries) else "warning"
    details = _pagerduty_details(entries)
    details["incident"] = {
        "partitions": sorted({e["partition"] for e in entries if e.get("partition")}),
        "sources": sorted({w["source"] for e in entries for w in e.get("where") or [] if w.get("source")}),
        "files": sorted({w["file"] for e in entries for w in e.get("where") or [] if w.get("file")})[:20],
        "columns": sorted({w["column"] for e in entries for w in e.get("where") or [] if w.get("column")})[:20],
        **({"opened_at": opened_at} if opened_at else {}),
    }
    runbooks = list(dict.fromkeys(e["runbook"] for e in entries if e.get("runbook")))
    runs = list(dict.fromkeys(e["run"] for e in entries if e.get("run")))
    if runbooks:
        details["runbook"] = runbooks[0] if len(runbooks) == 1 else runbooks
    if runs:
        details["dagster_runs"] = runs[:20]
    links = [{"href": url, "text": f"Runbook: {url.rsplit('#', 1)[-1]}"} for url in runbooks[:3] if _is_url(url)]
    links += [{"href": url, "text": f"Dagster run {url.rsplit('/', 1)[-1][:8]}"} for url in runs[:5]]
    checks = list(dict.fromkeys(e["checks"] for e in entries if e.get("checks")))
    links += [{"href": url, "text": "Dagster checks of " + url.rsplit("/", 1)[-1].split("?")[0]} for url in checks[:3]]
    links.append({"href": dagster_url, "text": "Dagster UI"})
    return {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": clip(_incident_summary(entries), 1024),
            "source": "billing-pipeline",
            "severity": worst,
            "component": "billing_daily",
            "group": group,
            "class": ",".join(sorted({str(e["headline"]) for e in entries}))[:256],
            "custom_details": details,
        },
        "links": links,
    }


def pagerduty_payload(
    alerts: list[Alert],
    group: str,
    routing_key: str,
    dagster_url: str,
    dedup_key: str | None = None,
    runbook_url: str = "README.md",
) -> dict[str, Any]:
    """A PagerDuty Events API v2 trigger grouping alerts under one dedup key."""
    entries = [alert_entry(a, dagster_url, runbook_url) for a in alerts]
    key = dedup_key or alert_key("page", *sorted(a.key for a in alerts))
    return {"routing_key": routing_key, **_trigger(entries, group, key, dagster_url)}


def pagerduty_resolve(routing_key: str, dedup_key: str) -> dict[str, Any]:
    """Events API v2: resolve the incident opened with `dedup_key`."""
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}


def _slack_link(url: str, label: str) -> str:
    return f"<{slack_text(url)}|{slack_text(label)}>" if _is_url(url) else slack_text(f"{label}: {url}")


def slack_payload(
    alerts: list[Alert],
    group: str,
    dagster_url: str,
    resolved: Sequence[Mapping[str, Any]] = (),
    earlier: Mapping[str, Sequence[str]] | None = None,
    runbook_url: str = "README.md",
) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message (text fallback + blocks) for one send: one section per
    cause (its partitions, where, and a context line linking runbook and runs), then resolved incidents.

    Titles and summaries carry delivered text (tag values, account ids): every mrkdwn field goes through
    `slack_text`, so a value cannot mention a channel or hide a link. Links live in context blocks.
    """
    earlier = earlier or {}
    groups: dict[str, list[Alert]] = {}
    for alert in alerts:
        groups.setdefault(alert.group, []).append(alert)
    pages = sum(1 for a in alerts if a.route == "page")
    head = f"billing-pipeline: {len(alerts)} alert(s) ({pages} paged)"
    head += f", {len(resolved)} resolved" if resolved else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{head} from {group}"[:150]}}
    ]
    text_lines = [f"{head} from {group}"]
    for index, (cause, members) in enumerate(groups.items()):
        if index >= 20:
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": slack_text(f"… and {len(groups) - 20} more alert group(s)")},
                }
            )
            break
        first = members[0]
        is_page = any(a.route == "page" for a in members)
        severity = "ERROR" if any(a.severity == "ERROR" for a in members) else first.severity
        prefix = f"{':rotating_light: PAGE' if is_page else ':ticket: ticket'} *{severity}* "
        entries = [alert_entry(a, dagster_url, runbook_url) for a in members]
        if len(members) == 1:
            body = f"{first.title}\n{first.summary}"
        else:
            body = (
                f"{first.headline or first.title} for {len(members)} partitions: "
                f"{_days(a.partition for a in members)}\n"
                + "\n".join(f"{a.partition}: {a.summary}" for a in members[:8])
            )
        before = earlier.get(cause) or []
        if before:
            body += f"\n(joins the open incident: already failing for {_days(before, limit=8)})"
        where = _where_lines(entries)
        if where:
            body += "\n" + "\n".join(f"• {line}" for line in where)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": prefix + slack_text(body, limit=2900 - len(prefix))}}
        )
        links = []
        if first.runbook:
            links.append(
                _slack_link(
                    f"{runbook_url}#{runbook_anchor(first.runbook)}", f"Runbook: {runbook_anchor(first.runbook)}"
                )
            )
        for run_id in list(dict.fromkeys(a.run_id for a in members if a.run_id))[:3]:
            links.append(_slack_link(str(run_link(dagster_url, run_id)), f"Dagster run {run_id[:8]}"))
        for url in list(dict.fromkeys(e["checks"] for e in entries if e.get("checks")))[:2]:
            links.append(_slack_link(url, "Dagster checks of " + url.rsplit("/", 1)[-1].split("?")[0]))
        if links:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)[:2900]}]})
        for alert in members:
            text_lines.append(f"- [{alert.route}/{alert.severity}] {alert.title}: {alert.summary}")
    for incident in list(resolved)[:5]:
        line = (
            f"resolved: {incident['headline']} for {_days(incident['partitions'])}"
            f" (open since {incident['opened_at'][:16]})"
        )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": ":white_check_mark: " + slack_text(line, limit=2800)},
            }
        )
        text_lines.append(f"- {line}")
    if len(resolved) > 5:
        text_lines.append(f"- and {len(resolved) - 5} more resolved")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{slack_text(dagster_url)}|Dagster UI>"}]}
    )
    return {"text": slack_text("\n".join(text_lines), limit=3900), "blocks": blocks}


def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from billing.yaml
        return int(response.status)


# ---- persistent state: incidents, notifications, routed runs, outbox ------------------------------------------


def state_url(lake_url: str) -> str:
    return join(lake_url, "_state", "alerts", "state.json")


def sent_state_url(lake_url: str) -> str:
    """Where earlier versions kept only what was sent (read once, for its cooldowns)."""
    return join(lake_url, "_state", "alerts", "sent.json")


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "incidents": {}, "delivered": {}, "runs": {}, "outbox": []}


def load_state(store: Store, lake_url: str) -> dict[str, Any]:
    url = state_url(lake_url)
    try:
        if store.exists(url):
            state = json.loads(store.read_bytes(url))
            return {**_empty_state(), **state}
    except (OSError, ValueError) as error:
        # Never silently: an unreadable state means open incidents and queued messages are unknown.
        log.error("alert state %s unreadable (%s): starting from an empty one", url, error)
        return _empty_state()
    state = _empty_state()
    legacy = sent_state_url(lake_url)
    try:
        if store.exists(legacy):
            for key, at in json.loads(store.read_bytes(legacy)).items():
                state["delivered"][key.split(":", 1)[-1]] = at
    except (OSError, ValueError):
        pass
    return state


def save_state(store: Store, lake_url: str, state: dict[str, Any]) -> None:
    store.write_bytes(state_url(lake_url), json.dumps(state, sort_keys=True, default=str, indent=1).encode())


_STATE_LOCK = threading.RLock()


@contextlib.contextmanager
def _state_locked(lake_url: str) -> Iterator[None]:
    """One writer of the alert state at a time: sensors evaluated in threads of one process, and (for a lake on
    local disk) the daemon and a script routing its own runs. A lake in an object store has no lock: there,
    route in-process runs only where no daemon runs the alert sensors on the same lake."""
    with _STATE_LOCK:
        url = state_url(lake_url)
        if is_remote(url):
            yield
            return
        with exclusive_lock(Path(f"{url.removeprefix('file://')}.lock")):
            yield


def _routed(store: Store, config: BillingConfig, run_id: str) -> bool:
    return run_id in load_state(store, config.lake_url)["runs"]


def _resolve_url(route: WebhookRoute, env: Mapping[str, str]) -> str | None:
    return route.url or (env.get(route.url_env) if route.url_env else None)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _enqueue(
    state: dict[str, Any], route: str, kind: str, payload: dict[str, Any], what: str, lane: str, now: dt.datetime
) -> None:
    body = {k: v for k, v in payload.items() if k != "routing_key"}  # the secret is added when posted
    state["outbox"].append(
        {
            "id": alert_key("outbox", route, now.isoformat(), len(state["outbox"]), json.dumps(body, default=str)),
            "route": route,
            "kind": kind,
            "lane": lane,
            "what": what,
            "payload": body,
            "created_at": now.isoformat(),
            "attempts": 0,
            "next_attempt_at": now.isoformat(),
            "last_error": None,
        }
    )


class _DeliveryError(Exception):
    pass


def _permanent(error: Exception) -> bool:
    """A 4xx (other than timeout / rate limit) refuses this message only: other messages may still go."""
    return isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500 and error.code not in (408, 429)


def _flush(
    state: dict[str, Any],
    config: BillingConfig,
    env: Mapping[str, str],
    poster: Poster,
    now: dt.datetime,
    report: SendReport,
) -> None:
    """Post every due outbox entry in order; a failure keeps the entry with its next attempt backed off.

    Order is kept per lane (one PagerDuty incident); a route whose endpoint is down (connection refused,
    5xx, no URL or key) is not tried again in the same flush.
    """
    settings = config.alerts
    blocked_routes: set[str] = set()
    blocked_lanes: set[str] = set()
    kept: list[dict[str, Any]] = []
    for entry in state["outbox"]:
        lane, route_name = entry["lane"], entry["route"]
        if route_name in blocked_routes or lane in blocked_lanes or _parse(entry["next_attempt_at"]) > now:
            blocked_lanes.add(lane)
            kept.append(entry)
            continue
        route: WebhookRoute | None = getattr(settings, route_name, None)
        try:
            if route is None:
                raise _DeliveryError(f"alerts.{route_name} is no longer configured in billing.yaml")
            url = _resolve_url(route, env)
            if not url:
                raise _DeliveryError(f"no URL (set url, or the variable {route.url_env})")
            payload = dict(entry["payload"])
            if route.kind == "pagerduty":
                key = env.get(route.routing_key_env or "", "")
                if not key:
                    raise _DeliveryError(f"routing key variable {route.routing_key_env!r} is not set")
                payload = {"routing_key": key, **payload}
            status = poster(url, payload, settings.timeout_seconds)
        except Exception as error:  # noqa: BLE001 - an unreachable webhook must not lose the message
            entry["attempts"] = int(entry["attempts"]) + 1
            entry["last_error"] = clip(f"{type(error).__name__}: {error}", 500)
            entry["last_attempt_at"] = now.isoformat()
            delay = min(settings.retry_initial_seconds * 2 ** (entry["attempts"] - 1), settings.retry_max_seconds)
            entry["next_attempt_at"] = (now + dt.timedelta(seconds=delay)).isoformat()
            message = (
                f"alerts.{route_name} ({entry['what']}): attempt {entry['attempts']} failed: "
                f"{entry['last_error']}; kept in the outbox, next attempt at {entry['next_attempt_at']}"
            )
            report.failures.append(message)
            report.errors.append(message)
            kept.append(entry)
            blocked_lanes.add(lane)
            if not _permanent(error):
                blocked_routes.add(route_name)
            continue
        report.posts.append((route.kind, status))
    state["outbox"] = kept
    report.pending = [dict(e, payload=None) for e in kept]


def flush_outbox(
    config: BillingConfig,
    store: Store,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
) -> SendReport:
    """Retry every queued message that is due (the `billing_alerts_outbox` sensor, and each send)."""
    now = now or dt.datetime.now(dt.UTC)
    report = SendReport()
    with _state_locked(config.lake_url):
        state = load_state(store, config.lake_url)
        if not state["outbox"]:
            return report
        _flush(state, config, os.environ if env is None else env, poster or post_json, now, report)
        save_state(store, config.lake_url, state)
    return report


# ---- sending: incidents, dedup and cooldown --------------------------------------------------------------------


def _open_index(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: incident for incident in state["incidents"].values() for key in incident["open"]}


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
    """Notify new alerts, resolve what passes again, and deliver through the outbox (see `_send`)."""
    if not (config.alerts.ticket or config.alerts.page):
        report = SendReport(errors=["no alert route configured (alerts.ticket / alerts.page in billing.yaml)"])
        log.warning("%s", report.errors[-1])
        return report
    with _state_locked(config.lake_url):
        return _send(
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


def _send(
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
    """Notify new alerts, resolve what passes again, and deliver through the outbox.

    - An alert already open (notified, not passed since) is not notified again; a page still failing
      after the cooldown re-triggers its incident (PagerDuty deduplicates it while it is open, and
      opens it again if someone resolved it by hand while the check still fails).
    - A check alert that passed and fails again is a new notification; for tickets not within the
      cooldown of the last one (flapping). One-off alerts (anomalies) are notified once.
    - New alerts of one cause join the open incident of that cause, or open one (`dedup_key` from the
      cause and its first partitions); all alerts go to the ticket channel in one message, pages also
      to PagerDuty, one event per incident.
    - A clear closes its key; an incident with no open key left is resolved.
    """
    settings = config.alerts
    report = SendReport()
    state = load_state(store, config.lake_url)
    if run_id and run_id in state["runs"]:
        report.already_routed = True
        _flush(state, config, env, poster, now, report)
        save_state(store, config.lake_url, state)
        return report
    cooldown = dt.timedelta(minutes=settings.cooldown_minutes)
    stamp = now.isoformat()
    index = _open_index(state)
    unique = list({a.key: a for a in alerts if a.route != "none"}.values())
    # a one-off under the key of an open alert (a late day that has arrived since) ends that alert
    clears = list(clears) + [Clear(a.key, a.partition, a.summary) for a in unique if not a.stateful and a.key in index]
    unique = [a for a in unique if a.stateful or a.key not in index]

    # 1. clears: keys that pass again leave their incident; an incident with no key left is resolved
    failing_now = {a.key for a in unique}
    clear_by_key = {c.key: c for c in clears if c.key not in failing_now}
    closed: list[dict[str, Any]] = []
    for incident_id, incident in list(state["incidents"].items()):
        for key in [k for k in incident["open"] if k in clear_by_key]:
            entry = incident["open"].pop(key)
            incident.setdefault("cleared", []).append(
                {"partition": entry.get("partition"), "at": stamp, "note": clip(clear_by_key[key].note, 300)}
            )
        if not incident["open"]:
            closed.append(incident)
            del state["incidents"][incident_id]
            report.resolved.append(f"{incident['headline']} for {_days(incident['partitions'])}")

    # 2. failing alerts: still open, in the cooldown, or to notify
    index = _open_index(state)
    fresh: dict[tuple[str, bool], list[Alert]] = {}
    retrigger: dict[str, dict[str, Any]] = {}
    for alert in unique:
        incident = index.get(alert.key)
        if incident is not None and incident["cause"] != alert.group:
            # the same partition fails for another reason now (a failed run's step or error changed): the old
            # cause is over, the new one is news
            incident["open"].pop(alert.key)
            incident.setdefault("cleared", []).append(
                {"partition": alert.partition, "at": stamp, "note": clip(f"now failing as: {alert.group}", 300)}
            )
            if not incident["open"]:
                closed.append(incident)
                del state["incidents"][incident["id"]]
                report.resolved.append(f"{incident['headline']} for {_days(incident['partitions'])}")
            fresh.setdefault((alert.group, alert.stateful), []).append(with_evidence(alert, config, store))
            continue
        if incident is not None:
            incident["open"][alert.key]["seen"] = stamp
            report.suppressed.append(alert)
            triggered = incident.get("triggered_at")
            if incident["route"] == "page" and triggered and now - _parse(triggered) >= cooldown:
                retrigger[incident["id"]] = incident
            continue
        last = state["delivered"].get(alert.key)
        if last and (not alert.stateful or (alert.route != "page" and now - _parse(last) < cooldown)):
            report.suppressed.append(alert)
            continue
        fresh.setdefault((alert.group, alert.stateful), []).append(with_evidence(alert, config, store))

    # 3. incidents: new alerts of a cause join its open incident, or open one
    earlier: dict[str, list[str]] = {}
    pages: dict[str, tuple[dict[str, Any], bool]] = {}  # incident id -> (incident, kept in the state)
    by_cause = {incident["cause"]: incident for incident in state["incidents"].values()}
    for (cause, stateful), members in fresh.items():
        route = "page" if any(a.route == "page" for a in members) else "ticket"
        entries = {a.key: alert_entry(a, settings.dagster_url, settings.runbook_url) for a in members}
        if stateful:
            incident = by_cause.get(cause)
            if incident is None:
                incident_id = alert_key("incident", cause, *sorted(a.partition or a.key for a in members))
                incident = {
                    "id": incident_id,
                    "cause": cause,
                    "route": route,
                    "opened_at": stamp,
                    "headline": members[0].headline or members[0].title,
                    "open": {},
                    "partitions": [],
                }
                state["incidents"][incident_id] = by_cause[cause] = incident
            else:
                earlier[cause] = sorted({str(e["partition"]) for e in incident["open"].values() if e.get("partition")})
                incident["route"] = "page" if "page" in (route, incident["route"]) else "ticket"
            incident["open"].update({k: {**v, "since": stamp, "seen": stamp} for k, v in entries.items()})
            incident["partitions"] = sorted(set(incident["partitions"]) | {a.partition for a in members if a.partition})
            report.opened.append(incident["id"])
            if incident["route"] == "page":
                pages[incident["id"]] = (incident, True)
        elif route == "page":
            one_off = {"id": alert_key("page", *sorted(entries)), "open": entries, "opened_at": stamp}
            pages[one_off["id"]] = (one_off, False)
        for alert in members:
            state["delivered"][alert.key] = stamp
        report.sent += members
    for incident_id, incident in retrigger.items():
        pages.setdefault(incident_id, (incident, True))

    # 4. messages, all queued before any is posted
    if settings.ticket is not None and (report.sent or closed):
        payload = slack_payload(
            report.sent, group, settings.dagster_url, resolved=closed, earlier=earlier, runbook_url=settings.runbook_url
        )
        what = f"ticket: {len(report.sent)} alert(s), {len(closed)} resolved ({group})"
        _enqueue(state, "ticket", settings.ticket.kind, payload, what, f"ticket:{alert_key(what, stamp)}", now)
    if settings.page is not None:
        for incident_id, (incident, kept) in pages.items():
            entries = [
                {k: v for k, v in e.items() if k not in ("since", "seen")}
                for e in sorted(incident["open"].values(), key=lambda e: (str(e.get("partition")), e["key"]))
            ]
            if kept:
                incident["triggered_at"] = stamp
            payload = _trigger(entries, group, incident_id, settings.dagster_url, incident.get("opened_at"))
            _enqueue(
                state,
                "page",
                settings.page.kind,
                payload,
                f"trigger {incident_id[:8]}: {clip(payload['payload']['summary'], 160)}",
                f"page:{incident_id}",
                now,
            )
        for incident in closed:
            if incident["route"] == "page":
                _enqueue(
                    state,
                    "page",
                    settings.page.kind,
                    pagerduty_resolve("", incident["id"]),
                    f"resolve {incident['id'][:8]}: {clip(incident['headline'], 160)}",
                    f"page:{incident['id']}",
                    now,
                )

    # 5. remember, prune, deliver
    if run_id:
        state["runs"][run_id] = stamp
    horizon = now - max(dt.timedelta(days=settings.retention_days), cooldown)
    state["delivered"] = {k: v for k, v in state["delivered"].items() if _parse(v) >= horizon}
    state["runs"] = {k: v for k, v in state["runs"].items() if _parse(v) >= horizon}
    save_state(store, config.lake_url, state)
    _flush(state, config, env, poster, now, report)
    save_state(store, config.lake_url, state)
    for error in report.errors:
        log.warning("%s", error)
    return report


__all__ = [
    "Alert",
    "AlertDeliveryError",
    "Clear",
    "Evidence",
    "SendReport",
    "alert_key",
    "alerts_for_run",
    "anomaly_alerts",
    "check_alert",
    "check_outcome",
    "flush_outbox",
    "load_state",
    "pagerduty_payload",
    "pagerduty_resolve",
    "route_finished_run",
    "run_failure_alert",
    "runbook_anchor",
    "send_alerts",
    "slack_payload",
    "state_url",
]
