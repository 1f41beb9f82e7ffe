"""What every SLI shares: the result type (`SliResult`), the per-source verdicts the error budgets count, and
small readers of the lake's state of (day, source)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.ops_config import DEFAULT_LATENCY_HOURS, FALLBACK_LATENCY_HOURS, SloTarget
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store

ALL_SOURCES = "*"  # the source of an SLI judged for the day as a whole (M5 cost, M8 anomalies)


@dataclass
class SliResult:
    """One SLI of one day: the value, per-source values, the verdict against its SLO, and details."""

    name: str
    value: float
    target: SloTarget
    passed: bool
    per_source: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float | int | str] = field(default_factory=dict)
    summary: str = ""
    severity: str | None = None  # overrides target.severity (e.g. a conservation break is always ERROR)
    # The sources that missed the SLO this day, where the SLI names them; None: each source of `per_source` is
    # judged against the target (at most). Sources in neither were not judged this day.
    failing: Collection[str] | None = None
    whole_day: bool = False  # judged for the day as a whole (`ALL_SOURCES`), whatever `per_source` shows

    @property
    def metadata_key(self) -> str:
        return f"sli/{self.name}"

    def source_verdicts(self) -> dict[str, bool]:
        """Whether each judged source met the SLO this day: the events the error budgets count."""
        if self.whole_day:
            return {ALL_SOURCES: bool(self.passed)}
        if self.failing is not None:  # the judged sources: those with a value, and those named failing
            return {source: source not in self.failing for source in (*self.per_source, *self.failing)}
        if self.per_source:
            return {source: value <= self.target.target for source, value in self.per_source.items()}
        return {ALL_SOURCES: bool(self.passed)}


def expected_latency_hours(source: SourceConfig) -> float:
    """The source's configured latency, else its provider's documented one."""
    if source.expected_latency_hours is not None:
        return source.expected_latency_hours
    return DEFAULT_LATENCY_HOURS.get(source.provider, FALLBACK_LATENCY_HOURS)


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def states_of(config: BillingConfig, store: Store, day: dt.date) -> dict[str, dict]:
    return {s.name: read_state(store, config.lake_url, s.name, day) for s in config.sources}


def at_most(name: str, value: float, config: BillingConfig, **kwargs) -> SliResult:
    target = config.slo.resolve(name)
    return SliResult(name=name, value=value, target=target, passed=value <= target.target, **kwargs)


def listed(reasons: dict[str, str]) -> str:
    """`source 'a': why; source 'b': why`: every failing source named, with its reason."""
    return "; ".join(f"source {name!r}: {reason}" for name, reason in sorted(reasons.items()))


def problems_of(state: dict) -> list[dict]:
    """File problems of the day's last raw build, and of a build held back since (not yet published)."""
    return list((state.get("raw") or {}).get("problems") or []) + list(
        (state.get("held_back") or {}).get("problems") or []
    )


SliFunction = Callable[[BillingConfig, Store, dt.date, dt.datetime], SliResult]
