"""The messages: a Slack-compatible incoming-webhook message per send, and PagerDuty Events API v2 triggers
(one per incident) and resolves. Delivered text is escaped for Slack; PagerDuty gets JSON cut to its size
limit. Routing keys are added when a message is posted, never stored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from billing_pipeline.observability.alerts.model import (
    Alert,
    Evidence,
    alert_key,
    asset_checks_link,
    is_url,
    run_link,
    runbook_anchor,
)
from billing_pipeline.platform.escaping import PAGERDUTY_MAX_BYTES, clip, json_size, slack_text


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


def days_text(partitions: Iterable[str | None], limit: int = 14) -> str:
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
        days = days_text(e.get("partition") for e in entries)
        return f"{headlines[0]} for {len({e.get('partition') for e in entries})} partition(s): {days}" + (
            f" (source {', '.join(sources)})" if sources else ""
        )
    return f"{len(entries)} billing-pipeline alerts: {entries[0]['title']}"


def pagerduty_trigger(
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
    links = [{"href": url, "text": f"Runbook: {url.rsplit('#', 1)[-1]}"} for url in runbooks[:3] if is_url(url)]
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
    return {"routing_key": routing_key, **pagerduty_trigger(entries, group, key, dagster_url)}


def pagerduty_resolve(routing_key: str, dedup_key: str) -> dict[str, Any]:
    """Events API v2: resolve the incident opened with `dedup_key`."""
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}


def _slack_link(url: str, label: str) -> str:
    return f"<{slack_text(url)}|{slack_text(label)}>" if is_url(url) else slack_text(f"{label}: {url}")


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
            more = slack_text(f"… and {len(groups) - 20} more alert group(s)")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": more}})
            break
        blocks += _slack_cause_blocks(members, earlier.get(cause) or [], dagster_url, runbook_url)
        text_lines += [f"- [{a.route}/{a.severity}] {a.title}: {a.summary}" for a in members]
    for incident in list(resolved)[:5]:
        line = (
            f"resolved: {incident['headline']} for {days_text(incident['partitions'])}"
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


def _slack_cause_blocks(
    members: list[Alert], before: Sequence[str], dagster_url: str, runbook_url: str
) -> list[dict[str, Any]]:
    """The section of one cause (route, severity, partitions, where) and its context line of links."""
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
            f"{days_text(a.partition for a in members)}\n"
            + "\n".join(f"{a.partition}: {a.summary}" for a in members[:8])
        )
    if before:
        body += f"\n(joins the open incident: already failing for {days_text(before, limit=8)})"
    where = _where_lines(entries)
    if where:
        body += "\n" + "\n".join(f"• {line}" for line in where)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": prefix + slack_text(body, limit=2900 - len(prefix))}}
    ]
    links = []
    if first.runbook:
        anchor = runbook_anchor(first.runbook)
        links.append(_slack_link(f"{runbook_url}#{anchor}", f"Runbook: {anchor}"))
    for run_id in list(dict.fromkeys(a.run_id for a in members if a.run_id))[:3]:
        links.append(_slack_link(str(run_link(dagster_url, run_id)), f"Dagster run {run_id[:8]}"))
    for url in list(dict.fromkeys(e["checks"] for e in entries if e.get("checks")))[:2]:
        links.append(_slack_link(url, "Dagster checks of " + url.rsplit("/", 1)[-1].split("?")[0]))
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)[:2900]}]})
    return blocks
