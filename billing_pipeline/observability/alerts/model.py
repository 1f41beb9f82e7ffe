"""The alert model: what a human should know about (`Alert`), what ends it (`Clear`), where the problem is
(`Evidence`), what one routing call did (`SendReport`), and the links every alert carries."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from billing_pipeline.platform.config import BillingConfig

Poster = Callable[[str, dict[str, Any], float], int]

RUN_FAILURE = "run_failure"  # the runbook name of a failed run


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


def runbook_anchor(name: str) -> str:
    """The README anchor of an SLI's runbook (`slo:` name, or `run_failure`)."""
    return f"runbook-{name}" if name else "runbooks"


def runbook_link(config: BillingConfig, name: str) -> str:
    return f"{config.alerts.runbook_url}#{runbook_anchor(name)}"


def run_link(dagster_url: str, run_id: str | None) -> str | None:
    return f"{dagster_url.rstrip('/')}/runs/{run_id}" if run_id else None


def asset_checks_link(dagster_url: str, asset: str) -> str:
    return f"{dagster_url.rstrip('/')}/assets/{asset}?view=checks"


def is_url(text: str | None) -> bool:
    return bool(text) and re.match(r"^https?://", str(text)) is not None
