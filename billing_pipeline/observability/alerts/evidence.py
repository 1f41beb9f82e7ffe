"""Where a problem is: the source, day, file and column an alert names, from the lake's state of
(day, source) (held-back reasons, file problems, failed layers, columns that disappeared) or from the
words of an error or a check."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from billing_pipeline.observability.alerts.model import RUN_FAILURE, Alert, Evidence
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import clip
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, is_access_denied

log = logging.getLogger(__name__)


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
        out += _source_evidence(slo, source.name, day, state)
    unique = list(dict.fromkeys(out))
    return unique[:20]


def _from_reason(source: str, day: str, reason: str, said: str) -> Evidence:
    """Evidence naming the files and columns an error's text names; `said` is the reason shown."""
    return Evidence(
        source=source,
        day=day,
        file=", ".join(files_in(reason)[:3]) or None,
        column=", ".join(columns_in(reason)[:5]) or None,
        reason=clip(said, 600),
    )


def _source_evidence(slo: str, source: str, day: str, state: Mapping[str, Any]) -> list[Evidence]:
    """One source's evidence for an SLI's failure, from its state of the day."""
    out: list[Evidence] = []
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
                source=source,
                day=day,
                file=", ".join(str(f) for f in files[:3]) or None,
                column=", ".join(columns_in(reason)[:5]) or None,
                reason=clip(f"held back ({held.get('kind', '?')}): {reason}", 600),
            )
        )
    out += [_problem_evidence(source, day, p) for p in problems if _relevant(slo, p)]
    if slo in ("source_failures", RUN_FAILURE):
        for layer, failure in sorted((state.get("failures") or {}).items()):
            reason = str((failure or {}).get("reason") or "")
            out.append(_from_reason(source, day, reason, f"{layer} failed: {reason}"))
    if slo == "schema_failures":
        raw = state.get("raw") or {}
        removed = sorted(set(raw.get("previous_columns") or []) - set(raw.get("columns") or []))
        if removed:
            out.append(
                Evidence(source=source, day=day, column=", ".join(removed[:10]), reason="columns no longer delivered")
            )
    if slo == "access_violations" and (state.get("access") or {}).get("last_denied"):
        denied = str(state["access"]["last_denied"])
        out.append(
            Evidence(
                source=source,
                day=day,
                file=", ".join(files_in(denied)[:3]) or None,
                reason=clip(f"listing denied: {denied}", 600),
            )
        )
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
