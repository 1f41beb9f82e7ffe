"""M10: access-denied events on the landing zones and the lake, read from the object store's audit trail.

Two AWS formats, S3 server access logs and CloudTrail data events, parsed in `audit_log_formats`.

An event counts when it was denied (`AccessDenied`, `AllAccessDisabled`; other 403s such as a bad signature
are counted apart), happened on the day (UTC), and targets a path inside a scope: the landing prefix of a
source (`sources[].url`) or the lake (`lake_url`). A listing targets the prefix it asked for. A path is
attributed to the longest scope prefix that holds it, and a request logged by both trails is counted once
(same request ID).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from billing_pipeline.observability.audit_log_formats import (
    CLOUDTRAIL,
    DENIED_CODES,
    S3_ACCESS_LOG,
    AccessEvent,
    decode,
    parse_cloudtrail,
    parse_s3_access_log,
)
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store, is_remote

log = logging.getLogger(__name__)

LAKE = "lake"
MAX_EXAMPLES = 5

# Dates in audit file names: S3 `...YYYY-MM-DD-hh-mm-ss-UNIQUE`, CloudTrail `..._YYYYMMDDThhmmZ_...`, and
# the `.../YYYY/MM/DD/...` folders of CloudTrail and of S3's date-partitioned log layout.
_NAME_DATES = (
    re.compile(r"(\d{4})-(\d{2})-(\d{2})-\d{2}-\d{2}-\d{2}-[0-9A-Za-z]+(?:\.gz)?$"),
    re.compile(r"_(\d{4})(\d{2})(\d{2})T\d{4}Z_"),
    re.compile(r"/(\d{4})/(\d{2})/(\d{2})/[^/]*$"),
)


# ---- scopes: the landing prefix of each source, and the lake ----------------------------------------------


@dataclass(frozen=True)
class Scope:
    name: str  # a source name, or LAKE
    bucket: str
    prefix: str  # without a trailing "/"; "" for the whole bucket

    def holds(self, bucket: str, path: str) -> bool:
        if bucket != self.bucket:
            return False
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def scope_of(name: str, url: str) -> Scope | None:
    """An `s3://bucket/prefix` location as a scope; other stores are not in an S3 audit trail."""
    if not url.startswith(("s3://", "s3a://")):
        return None
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    return Scope(name, bucket, prefix.strip("/"))


def scopes_of(config: BillingConfig) -> dict[str, Scope | None]:
    scopes: dict[str, Scope | None] = {s.name: scope_of(s.name, s.url) for s in config.sources}
    scopes[LAKE] = scope_of(LAKE, config.lake_url)
    return scopes


def attribute(event: AccessEvent, scopes: Iterable[Scope]) -> str | None:
    """The scope an event falls in (the longest prefix that holds its path), or None."""
    holding = [s for s in scopes if s.holds(event.bucket, event.path)]
    return max(holding, key=lambda s: len(s.prefix)).name if holding else None


# ---- reading a day of the trail -----------------------------------------------------------------------------


def _name_date(url: str) -> dt.date | None:
    for pattern in _NAME_DATES:
        match = pattern.search(url)
        if match:
            try:
                return dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                return None
    return None


def _expand(url: str, days: list[dt.date]) -> list[str]:
    if not any(token in url for token in ("{yyyy}", "{mm}", "{dd}")):
        return [url]
    expanded = [
        url.replace("{yyyy}", f"{d.year:04d}").replace("{mm}", f"{d.month:02d}").replace("{dd}", f"{d.day:02d}")
        for d in days
    ]
    return list(dict.fromkeys(expanded))


def resolve_url(url: str, config: BillingConfig) -> str:
    """A relative local path is relative to billing.yaml, like every other path in it."""
    if is_remote(url) or url.startswith("file://"):
        return url
    path = Path(url).expanduser()
    if path.is_absolute():
        return str(path)
    base = Path(config.config_path).parent if config.config_path else Path.cwd()
    return str((base / path).resolve())


@dataclass
class TrailDay:
    """What the audit trail says about one day."""

    day: dt.date
    configured: bool
    trails: list[str] = field(default_factory=list)
    files_read: dict[str, int] = field(default_factory=dict)
    unparsed: int = 0
    errors: list[str] = field(default_factory=list)
    per_scope: dict[str, int] = field(default_factory=dict)
    forbidden_other: int = 0
    denied_out_of_scope: int = 0
    duplicates: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def denied(self) -> int:
        return sum(self.per_scope.values())


def _files_for_day(store: Store, url: str, day: dt.date, lag_days: int) -> list[str]:
    days = [day + dt.timedelta(days=i) for i in range(lag_days + 1)]
    files = []
    for folder in _expand(url, days):
        for info in store.find(folder):
            if "CloudTrail-Digest" in info.url:
                continue
            named = _name_date(info.url)
            if named is None or day <= named <= days[-1]:
                files.append(info.url)
    return files


def read_trail_day(
    config: BillingConfig, store: Store, day: dt.date, scopes: Iterable[Scope] | None = None
) -> TrailDay:
    """Denied events of `day` (UTC) per scope, from every configured audit trail."""
    audit = config.audit_logs
    result = TrailDay(day, audit.configured)
    if not audit.configured:
        return result
    chosen = [s for s in (scopes if scopes is not None else scopes_of(config).values()) if s is not None]
    seen: set[tuple[str, ...]] = set()
    for trail, urls, parse in (
        (S3_ACCESS_LOG, audit.s3_access_logs_urls, parse_s3_access_log),
        (CLOUDTRAIL, audit.cloudtrail_urls, parse_cloudtrail),
    ):
        if not urls:
            continue
        result.trails.append(trail)
        result.files_read[trail] = 0
        for url in urls:
            resolved = resolve_url(url, config)
            try:
                files = _files_for_day(store, resolved, day, audit.delivery_lag_days)
            except Exception as error:  # a denied or broken listing of the trail itself: reported, never fatal
                result.errors.append(f"{trail} at {resolved}: {type(error).__name__}: {error}"[:300])
                continue
            for file_url in files:
                try:
                    events, unparsed = parse(decode(store.read_bytes(file_url)), file_url)
                except Exception as error:
                    result.errors.append(f"{file_url}: {type(error).__name__}: {error}"[:300])
                    continue
                result.files_read[trail] += 1
                result.unparsed += unparsed
                for event in _on_day(events, day):
                    _count(result, event, chosen, seen)
    return result


def _on_day(events: Iterable[AccessEvent], day: dt.date) -> Iterator[AccessEvent]:
    return (e for e in events if e.time.date() == day)


def _count(result: TrailDay, event: AccessEvent, scopes: list[Scope], seen: set[tuple[str, ...]]) -> None:
    if not (event.denied or event.forbidden_other):
        return
    scope = attribute(event, scopes)
    if scope is None:
        result.denied_out_of_scope += int(event.denied)
        return
    if event.identity in seen:
        result.duplicates += 1
        return
    seen.add(event.identity)
    if event.forbidden_other:
        result.forbidden_other += 1
        return
    result.per_scope[scope] = result.per_scope.get(scope, 0) + 1
    if len(result.examples) < MAX_EXAMPLES:
        result.examples.append(f"{scope}: {event.describe()}")


# ---- M10 for one day: the trail where it covers a scope, the pipeline's own denied reads elsewhere ------------


@dataclass
class Violations:
    value: float
    per_source: dict[str, float]
    extra: dict[str, float | int | str]
    summary: str
    trail_unreadable: bool


def _counts(counts: dict[str, float]) -> str:
    return ", ".join(f"{name} {int(n)}" for name, n in sorted(counts.items()) if n) or "none"


def violations(config: BillingConfig, store: Store, day: dt.date, pipeline_denied: dict[str, float]) -> Violations:
    """M10 of a day. `pipeline_denied`: per source, the denied reads and listings the pipeline itself met.

    A scope the trail covers (a trail is configured and the scope is on S3) counts the trail's denied events;
    a source it does not cover counts `pipeline_denied` instead (never both: the pipeline's own denied
    requests are in the trail too). The lake is counted only from the trail.
    """
    scopes = scopes_of(config)
    configured = config.audit_logs.configured
    covered = {name for name, scope in scopes.items() if configured and scope is not None}
    trail = read_trail_day(config, store, day, [scope for scope in scopes.values() if scope is not None])
    per_source = {
        source.name: float(trail.per_scope.get(source.name, 0))
        if source.name in covered
        else float(pipeline_denied.get(source.name, 0.0))
        for source in config.sources
    }
    lake = float(trail.per_scope.get(LAKE, 0))
    value = sum(per_source.values()) + lake
    uncovered = [name for name in [*per_source, LAKE] if name not in covered]
    extra: dict[str, float | int | str] = {
        "sli/access_violations_lake": lake,
        "sli/access_violations_pipeline_seen": float(sum(pipeline_denied.values())),
        "audit_trail": ", ".join(f"{t} ({trail.files_read.get(t, 0)} file(s) read)" for t in trail.trails)
        or "not configured (audit_logs: in billing.yaml)",
        "audit_not_covered": ", ".join(uncovered) or "none",
    }
    if not configured:
        summary = (
            f"{int(value)} denied read(s) or listing(s) the pipeline itself met ({_counts(per_source)}). "
            "No audit trail is configured (`audit_logs:` in billing.yaml), so denials met by anyone "
            "else, and on the lake, are not seen"
        )
        return Violations(value, per_source, extra, summary, trail_unreadable=False)
    extra.update(
        {
            "sli/access_forbidden_other": float(trail.forbidden_other),
            "sli/access_denied_out_of_scope": float(trail.denied_out_of_scope),
            "sli/audit_unparsed_records": float(trail.unparsed),
            "audit_examples": "\n".join(trail.examples) or "none",
        }
    )
    parts = [
        f"{int(value)} access-denied event(s) on {day.isoformat()} (UTC) on the landing zones and the lake "
        f"({_counts({**per_source, LAKE: lake})}), from {extra['audit_trail']}"
    ]
    if trail.examples:
        parts.append(f"first: {trail.examples[0]}")
    if uncovered:
        parts.append(
            f"not in the audit trail (not on S3): {', '.join(uncovered)}; for those sources, the denied "
            "reads the pipeline itself met are counted"
        )
    if trail.errors:
        extra["audit_errors"] = "\n".join(trail.errors[:10])
        parts.append(f"audit trail unreadable: {trail.errors[0]}")
    elif not sum(trail.files_read.values()):
        parts.append("no audit log file covers this day")
    return Violations(value, per_source, extra, "; ".join(parts), trail_unreadable=bool(trail.errors))


__all__ = [
    "CLOUDTRAIL",
    "DENIED_CODES",
    "LAKE",
    "S3_ACCESS_LOG",
    "AccessEvent",
    "Scope",
    "TrailDay",
    "Violations",
    "attribute",
    "parse_cloudtrail",
    "parse_s3_access_log",
    "read_trail_day",
    "resolve_url",
    "scope_of",
    "scopes_of",
    "violations",
]
