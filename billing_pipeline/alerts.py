"""Alert routing: failed checks, cost anomalies and failed runs become tickets (Slack-compatible
incoming webhook) or pages (PagerDuty Events API v2), deduplicated, grouped per run, with a cooldown.

Routes come from `billing.yaml` (`alerts:`), per SLI from `slo:`: pages for pipeline outages (a failed
run), data later than its SLA (freshness), large unallocated jumps, contract breaks and denied reads;
tickets for reconciliation deltas, backfill backlog, anomalies and the other SLIs. Secrets stay in the
environment: `url_env` / `routing_key_env` name variables, never values. What was sent, and when, is
kept in the lake (`<lake>/_state/alerts/sent.json`) so a restart of the daemon does not re-page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from billing_pipeline import anomalies
from billing_pipeline.config import BillingConfig
from billing_pipeline.escaping import PAGERDUTY_MAX_BYTES, clip, json_size, slack_text
from billing_pipeline.ops_config import WebhookRoute
from billing_pipeline.storage import Store, join

log = logging.getLogger(__name__)

Poster = Callable[[str, dict[str, Any], float], int]


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


@dataclass
class SendReport:
    sent: list[Alert] = field(default_factory=list)
    suppressed: list[Alert] = field(default_factory=list)
    posts: list[tuple[str, int]] = field(default_factory=list)  # (route kind, HTTP status)
    errors: list[str] = field(default_factory=list)


def alert_key(*parts: object) -> str:
    """Stable across processes and restarts (hashlib, not `hash()`)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


# ---- what becomes an alert --------------------------------------------------------------------------------

def check_alert(asset: str, check_name: str, partition: str | None, passed: bool, severity: str,
                metadata: Mapping[str, Any], config: BillingConfig) -> Alert | None:
    """A failed check evaluation as an alert, routed by its SLO (`alert/route` metadata, else config)."""
    if passed:
        return None
    route = str(metadata.get("alert/route") or "")
    slo_name = str(metadata.get("alert/slo") or "")
    if not route:
        try:
            route = config.slo.resolve(slo_name).route
        except KeyError:
            route = "ticket"
    numbers = {k: v for k, v in metadata.items() if isinstance(v, (int, float)) and k.startswith(("sli/", "slo/"))}
    summary = str(metadata.get("summary") or f"check {check_name} failed")
    return Alert(
        key=alert_key("check", asset, check_name, partition), route=route, severity=severity,
        title=f"{check_name} failed on {asset} for {partition or 'the latest run'}", summary=summary,
        partition=partition, origin=f"{asset}:{check_name}", details=numbers,
    )


def anomaly_alerts(table: pl.DataFrame, config: BillingConfig) -> list[Alert]:
    """One alert per anomaly row: what moved, by how much, and the query that lists its rows."""
    route = config.slo.resolve("cost_anomalies")
    out = []
    for row in table.iter_rows(named=True):
        day = str(row["usage_date"])
        out.append(Alert(
            key=alert_key("anomaly", day, row["kind"], row["dimension"], row["key"]),
            route=route.route, severity=route.severity,
            title=f"cost {row['kind'].replace('_', ' ')}: {row['dimension']} {row['key']} on {day}",
            summary=row["message"], partition=day, origin="cost_anomalies",
            details={"spend": row["spend"], "baseline": row["baseline"], "delta": row["delta"], "rows": row["rows"],
                     "top_rows": row["top_rows"], "query": row["query"]},
        ))
    return out


def run_failure_alert(job_name: str, run_id: str, partition: str | None, message: str) -> Alert:
    """A failed run is a pipeline outage for that day: always a page."""
    return Alert(
        key=alert_key("run_failure", job_name, partition), route="page", severity="ERROR",
        title=f"{job_name} failed for {partition or 'a run'}", summary=message[:1000], partition=partition,
        origin=f"run:{run_id}", details={"run_id": run_id},
    )


def alerts_for_run(instance: Any, run: Any, config: BillingConfig, store: Store,
                   failure_message: str | None = None) -> list[Alert]:
    """Failed checks of the run, anomalies of its partition, and the failure itself."""
    from dagster import DagsterEventType

    partition = run.tags.get("dagster/partition")
    found: list[Alert] = []
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == "sli_cost_anomalies":
            continue  # its rows become one alert each below
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        alert = check_alert("/".join(evaluation.asset_key.path), evaluation.check_name,
                            evaluation.partition or partition, evaluation.passed, evaluation.severity.value,
                            metadata, config)
        if alert is not None:
            found.append(alert)
    if partition:
        found += anomaly_alerts(anomalies.read_published(store, config.lake_url, dt.date.fromisoformat(partition)),
                                config)
    if failure_message is not None:
        found.append(run_failure_alert(run.job_name, run.run_id, partition, failure_message))
    return found


# ---- payloads -------------------------------------------------------------------------------------------------

def slack_payload(alerts: list[Alert], group: str, dagster_url: str) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message (text fallback + blocks), one per run.

    Titles and summaries carry delivered text (tag values, account ids): every mrkdwn field goes through
    `slack_text`, so a value cannot mention a channel or hide a link.
    """
    pages = sum(1 for a in alerts if a.route == "page")
    head = f"billing-pipeline: {len(alerts)} alert(s) ({pages} paged) from {group}"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": head[:150]}}]
    for alert in alerts[:45]:
        prefix = f"{':rotating_light: PAGE' if alert.route == 'page' else ':ticket: ticket'} *{alert.severity}* "
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": prefix + slack_text(
            f"{alert.title}\n{alert.summary}", limit=2900 - len(prefix))}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": f"<{slack_text(dagster_url)}|Dagster UI>"}]})
    text = head + "\n" + "\n".join(f"- [{a.route}/{a.severity}] {a.title}: {a.summary}" for a in alerts)
    return {"text": slack_text(text, limit=3900), "blocks": blocks}


def _pagerduty_details(alerts: list[Alert]) -> dict[str, Any]:
    """The alerts as JSON (PagerDuty shows it as text, so JSON encoding is all the escaping it needs), each
    text clipped and the list cut to stay well under the Events API's 512 KB (`alerts_omitted` counts the rest)."""
    budget, used, omitted = PAGERDUTY_MAX_BYTES // 2, 0, 0
    entries: list[dict[str, Any]] = []
    for a in alerts:
        entry = {"key": a.key, "title": clip(a.title, 1024), "summary": clip(a.summary, 4096),
                 "partition": a.partition,
                 "details": {k: clip(v, 4096) if isinstance(v, str) else v for k, v in a.details.items()}}
        size = json_size(entry)
        if used + size > budget:
            omitted += 1
            continue
        entries.append(entry)
        used += size
    return {"alerts": entries, "alerts_omitted": omitted} if omitted else {"alerts": entries}


def pagerduty_payload(alerts: list[Alert], group: str, routing_key: str, dagster_url: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 trigger grouping the run's page alerts under one dedup key."""
    keys = sorted(a.key for a in alerts)
    worst = "critical" if any(a.severity == "ERROR" for a in alerts) else "warning"
    summary = alerts[0].title if len(alerts) == 1 else f"{len(alerts)} billing-pipeline alerts: {alerts[0].title}"
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert_key("page", *keys),
        "payload": {
            "summary": clip(summary, 1024),
            "source": "billing-pipeline",
            "severity": worst,
            "component": "billing_daily",
            "group": group,
            "class": ",".join(sorted({a.origin.split(":")[-1] for a in alerts}))[:256],
            "custom_details": _pagerduty_details(alerts),
        },
        "links": [{"href": dagster_url, "text": "Dagster UI"}],
    }


def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from billing.yaml
        return int(response.status)


# ---- sending, with dedup and cooldown ------------------------------------------------------------------------

def sent_state_url(lake_url: str) -> str:
    return join(lake_url, "_state", "alerts", "sent.json")


def _load_sent(store: Store, lake_url: str) -> dict[str, str]:
    url = sent_state_url(lake_url)
    try:
        return json.loads(store.read_bytes(url)) if store.exists(url) else {}
    except (OSError, ValueError):
        return {}


def _resolve_url(route: WebhookRoute, env: Mapping[str, str]) -> str | None:
    return route.url or (env.get(route.url_env) if route.url_env else None)


def send_alerts(config: BillingConfig, store: Store, alerts: list[Alert], group: str,
                now: dt.datetime | None = None, env: Mapping[str, str] | None = None,
                poster: Poster = post_json) -> SendReport:
    """Deduplicate (a key once per group), skip what each route delivered within the cooldown, and post one
    message per route: every alert to the ticket channel, page alerts also to the pager."""
    now = now or dt.datetime.now(dt.UTC)
    env = os.environ if env is None else env
    settings = config.alerts
    report = SendReport()
    sent = _load_sent(store, config.lake_url)
    cooldown = dt.timedelta(minutes=settings.cooldown_minutes)
    unique = list({a.key: a for a in alerts if a.route != "none"}.values())
    if not (settings.ticket or settings.page):
        report.errors.append("no alert route configured (alerts.ticket / alerts.page in billing.yaml)")
    delivered: dict[str, Alert] = {}
    suppressed: dict[str, Alert] = {}
    for route_name, route in (("ticket", settings.ticket), ("page", settings.page)):
        if route is None:
            continue
        wanted = unique if route_name == "ticket" else [a for a in unique if a.route == "page"]
        chosen = []
        for alert in wanted:
            last = sent.get(f"{route_name}:{alert.key}")
            if last and now - dt.datetime.fromisoformat(last) < cooldown:
                suppressed[alert.key] = alert
            else:
                chosen.append(alert)
        if not chosen:
            continue
        url = _resolve_url(route, env)
        if not url:
            report.errors.append(f"alerts.{route_name}: no URL (set url, or the variable {route.url_env})")
            continue
        if route.kind == "pagerduty":
            key = env.get(route.routing_key_env or "", "")
            if not key:
                report.errors.append(f"alerts.{route_name}: routing key variable {route.routing_key_env!r} is not set")
                continue
            payload = pagerduty_payload(chosen, group, key, settings.dagster_url)
        else:
            payload = slack_payload(chosen, group, settings.dagster_url)
        try:
            status = poster(url, payload, settings.timeout_seconds)
        except Exception as error:  # noqa: BLE001 - an unreachable webhook must not break the sensor
            report.errors.append(f"alerts.{route_name}: {type(error).__name__}: {error}")
            continue
        report.posts.append((route.kind, status))
        for alert in chosen:
            sent[f"{route_name}:{alert.key}"] = now.isoformat()
            delivered[alert.key] = alert
    report.sent = list(delivered.values())
    report.suppressed = [a for k, a in suppressed.items() if k not in delivered]
    if delivered:
        horizon = now - max(cooldown, dt.timedelta(days=1))
        kept = {k: v for k, v in sent.items() if dt.datetime.fromisoformat(v) >= horizon}
        store.write_bytes(sent_state_url(config.lake_url), json.dumps(kept, sort_keys=True).encode())
    for error in report.errors:
        log.warning("%s", error)
    return report
