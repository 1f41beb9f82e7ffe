"""The pipeline's own SLIs (M1-M10) for one usage day, computed from what the lake records.

Plain functions, no Dagster: `checks.py` wraps each in an asset check. Every SLI reads the state the
builders record per (day, source) in `<lake>/_state/fingerprints/...` (see `fingerprints.py`) or the
day's slices, so it is partition-aware by construction: a backfill of an old day never changes
yesterday's numbers. Each result has one numeric value under a stable metadata key `sli/<name>`,
per-source values under `sli/<name>/<source>`, and the SLO it was judged against.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import Delivery, adapter_for, choose_current
from billing_pipeline.adapters.base import modified_at
from billing_pipeline.observability import anomalies
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.escaping import markdown_table
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.ops_config import (
    DAILY_WINDOW_PROVIDERS,
    DEFAULT_LATENCY_HOURS,
    FALLBACK_LATENCY_HOURS,
    SloTarget,
)
from billing_pipeline.platform.state import ABSENT, read_state
from billing_pipeline.platform.storage import Store, is_access_denied, join, scratch_dir
from billing_pipeline.spine.calendar import period_closed, period_of
from billing_pipeline.spine.fingerprint import delivery_cache_url, delivery_day_fingerprints

ALL_SOURCES = "*"  # the source of an SLI judged for the day as a whole (M5 cost, M8 anomalies)
SCHEMA_MARKERS = re.compile(r"ColumnNotFound|SchemaError|SchemaFieldNotFound|schema|column", re.IGNORECASE)


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
    # Per source, whether it met the SLO this day; None: judged from `per_source` against the target (at most),
    # or, with no per-source values, the day as a whole (`ALL_SOURCES`). Sources absent were not judged.
    verdicts: dict[str, bool] | None = None

    @property
    def metadata_key(self) -> str:
        return f"sli/{self.name}"

    def source_verdicts(self) -> dict[str, bool]:
        """Whether each judged source met the SLO this day: the events the error budgets count."""
        if self.verdicts is not None:
            return dict(self.verdicts)
        if self.per_source:
            return {source: value <= self.target.target for source, value in self.per_source.items()}
        return {ALL_SOURCES: bool(self.passed)}


def expected_latency_hours(source: SourceConfig) -> float:
    """The source's configured latency, else its provider's documented one."""
    if source.expected_latency_hours is not None:
        return source.expected_latency_hours
    return DEFAULT_LATENCY_HOURS.get(source.provider, FALLBACK_LATENCY_HOURS)


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def _states(config: BillingConfig, store: Store, day: dt.date) -> dict[str, dict]:
    return {s.name: read_state(store, config.lake_url, s.name, day) for s in config.sources}


def _at_most(name: str, value: float, config: BillingConfig, **kwargs) -> SliResult:
    target = config.slo.resolve(name)
    return SliResult(name=name, value=value, target=target, passed=value <= target.target, **kwargs)


def _listed(reasons: dict[str, str]) -> str:
    """`source 'a': why; source 'b': why`: every failing source named, with its reason."""
    return "; ".join(f"source {name!r}: {reason}" for name, reason in sorted(reasons.items()))


# ---- invariant 5: never publish less than the lake had ---------------------------------------------------


def publish_guard(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose day was held back (incomplete delivery, empty or shrunk version, vanished folder).

    ERROR: the source's published slice is kept and needs a repaired delivery or an operator's
    acceptance. A newer delivery passed over for an unreadable file, with an older complete one
    standing in, is a WARN failure naming the file.
    """
    per_source: dict[str, float] = {}
    held, stood_in = [], []
    for name, state in _states(config, store, day).items():
        held_back = state.get("held_back")
        per_source[name] = 1.0 if held_back else 0.0
        if held_back:
            held.append(held_back["reason"])
        elif any(p["kind"] in ("unreadable", "empty") for p in _problems(state)):
            files = [p["file_uri"] for p in _problems(state) if p["kind"] in ("unreadable", "empty")]
            stood_in.append(
                f"source {name!r}: an older complete delivery stands in for one with unreadable "
                f"file(s) {', '.join(files)}"
            )
    value = sum(per_source.values())
    result = _at_most(
        "publish_guard",
        value,
        config,
        per_source=per_source,
        summary="; ".join(held + stood_in) or "every source published from a complete delivery",
    )
    if not held and stood_in:
        result.passed, result.severity = False, "WARN"
    return result


def source_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose normalized, enriched or reconciliation build failed this day (the others went on)."""
    per_source: dict[str, float] = {}
    failed = []
    for name, state in _states(config, store, day).items():
        failures = state.get("failures") or {}
        per_source[name] = float(len(failures))
        failed += [f"source {name!r}, {layer}: {item['reason']}" for layer, item in sorted(failures.items())]
    value = sum(per_source.values())
    return _at_most(
        "source_failures",
        value,
        config,
        per_source=per_source,
        summary="; ".join(failed) or "every source built every layer",
    )


# ---- M1 export success rate ---------------------------------------------------------------------------

# Problems that make a delivery a failed export for M1: a file quarantined as unreadable, an empty export, a
# file the manifest lists outside its own prefix (refused), a manifest that cannot be read. A newer delivery
# still being written (`missing` files) while an older complete one stands in is waited for, not failed.
FAILED_DELIVERY_KINDS = ("unreadable", "empty", "outside_prefix", "bad_manifest")


def delivery_outcome(state: dict, day: dt.date) -> tuple[bool | None, str]:
    """Whether a complete delivery covering `day` reached the lake for one source: True; False (held back,
    or a delivery failed: quarantined, refused or empty); None (none covering the day has arrived), and why.

    A delivery covers the day when it was made after the day ended (every provider here delivers month to
    date, or appends, so a delivery made earlier holds at most part of the day).
    """
    held = state.get("held_back")
    if held:
        return False, f"held back ({held.get('kind') or 'incomplete'}): {str(held.get('reason') or '')[:300]}"
    raw = state.get("raw") or {}
    if not raw.get("version"):
        denied = (state.get("access") or {}).get("last_denied")
        return None, "no delivery ingested" + (f" (listing denied: {denied[:200]})" if denied else "")
    # the problems of the delivery the day was last built from or confirmed by, and of newer ones passed over
    failed = [p for p in raw.get("problems") or [] if p.get("kind") in FAILED_DELIVERY_KINDS]
    if failed:
        kinds = ", ".join(sorted({p["kind"] for p in failed}))
        files = ", ".join(sorted({p["file_uri"] for p in failed}))
        return False, f"delivery failed ({kinds}): {files}"[:500]
    if int(raw.get("files_read") or 0) < int(raw.get("files_listed") or 0):
        return False, f"read {raw.get('files_read')} of the {raw.get('files_listed')} files its delivery lists"
    times = [t for t in (_parse(raw.get("delivered_at")), _parse(raw.get("confirmed_delivered_at"))) if t]
    delivered = max(times, default=None)
    if delivered is None or delivered < _day_end(day):
        when = f"{delivered:%Y-%m-%d %H:%M} UTC" if delivered else "at an unknown time"
        return None, f"the newest delivery read ({raw['version']!r}, delivered {when}) was made before the day ended"
    return True, ""


def export_success_rate(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M1: complete deliveries ingested / deliveries expected from the provider's cadence, for this day.

    Every provider here refreshes a billing period at least daily, so each (day, source) expects one
    complete delivery made after the day ended, due by the end of the day plus the source's expected
    latency (`sources[].expected_latency_hours`, else the provider's documented delay). A source counts
    once it is due, or earlier when a delivery already arrived: 1 when a complete delivery covering the day
    was ingested, 0 when none came, the day is held back, or a newer delivery was quarantined or refused.
    """
    per_source: dict[str, float] = {}
    failing: dict[str, str] = {}
    waiting = []
    for source in config.sources:
        outcome, reason = delivery_outcome(read_state(store, config.lake_url, source.name, day), day)
        deadline = _day_end(day) + dt.timedelta(hours=expected_latency_hours(source))
        if outcome is None and now < deadline:
            waiting.append(source.name)  # not due yet, nothing arrived: not expected yet
            continue
        per_source[source.name] = 1.0 if outcome else 0.0
        if outcome is None:
            failing[source.name] = f"due by {deadline:%Y-%m-%d %H:%M} UTC, missing: {reason}"
        elif outcome is False:
            failing[source.name] = reason
    expected, complete = len(per_source), sum(per_source.values())
    value = complete / expected if expected else 1.0
    target = config.slo.resolve("export_success_rate")
    summary = (
        f"{int(complete)} of {expected} due deliveries complete ({value:.1%})"
        + (f"; not due yet: {', '.join(waiting)}" if waiting else "")
        + (f"; failing: {_listed(failing)}" if failing else "")
    )
    return SliResult(
        "export_success_rate",
        value,
        target,
        value >= target.target,
        per_source,
        verdicts={name: share == 1.0 for name, share in per_source.items()},
        extra={"sli/export_deliveries_due": expected, "sli/export_deliveries_complete": complete},
        summary=summary,
    )


# ---- M2 export latency ----------------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def latency_target(config: BillingConfig, source: SourceConfig) -> SloTarget:
    """1 h where the delivery timestamp is when the files landed; the daily-window target where it is the
    start of a daily export run (DAILY_WINDOW_PROVIDERS)."""
    name = "export_latency_hours_daily_window" if source.provider in DAILY_WINDOW_PROVIDERS else "export_latency_hours"
    return config.slo.resolve(name)


def delivery_first_seen(store: Store, lake_url: str, source: str, day: dt.date, raw: dict) -> dt.datetime | None:
    """When the pipeline first saw the delivery the day was built from.

    The first sensor tick or run that fingerprints a delivery writes its record under
    `<lake>/_state/deliveries/` (`first_seen_at` when recorded, else the record's write time); a build that
    read the delivery is a sighting too. The earliest of these: a re-run or backfill of the same delivery
    later never changes it.
    """
    times = [t for t in (_parse(raw.get("ingested_at")),) if t]
    if raw.get("version"):
        probe = Delivery(
            source, period_of(day), raw["version"], _EPOCH, (), fingerprint=raw.get("delivery_fingerprint") or ""
        )
        url = delivery_cache_url(lake_url, source, probe)
        try:
            info = store.info(url)
            recorded = _parse(json.loads(store.read_bytes(url)).get("first_seen_at"))
        except (OSError, ValueError):
            info, recorded = None, None
        if recorded is not None:
            times.append(recorded)
        elif info is not None and info.modified:
            times.append(modified_at(info.modified))
    return min(times, default=None)


def export_latency(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M2: hours from the provider's delivery timestamp to the pipeline first seeing that delivery, for the
    delivery each source's day was built from; judged per source against its provider's target.

    A delivery first seen more than `automation.freshness_window_days` after it was made is a backfill of an
    old delivery (a first load, a backfilled month): its lag is recorded under
    `sli/export_latency_backfill_hours` and never judged (freshness pages for days that do not arrive).
    """
    window = dt.timedelta(days=config.automation.freshness_window_days)
    per_source: dict[str, float] = {}
    backfill: dict[str, float] = {}
    targets: dict[str, float] = {}
    failing: dict[str, str] = {}
    for source in config.sources:
        raw = read_state(store, config.lake_url, source.name, day).get("raw") or {}
        delivered = _parse(raw.get("delivered_at"))
        seen = delivery_first_seen(store, config.lake_url, source.name, day, raw)
        if delivered is None or seen is None:
            continue
        hours = max((seen - delivered).total_seconds() / 3600, 0.0)
        if seen - delivered > window:
            backfill[source.name] = hours
            continue
        target = latency_target(config, source)
        per_source[source.name], targets[source.name] = hours, target.target
        if hours > target.target:
            failing[source.name] = (
                f"delivery {raw['version']!r} made {delivered:%Y-%m-%d %H:%M} UTC, first seen "
                f"{hours:.2f} h later (target {target.target:g} h)"
            )
    value = max(per_source.values(), default=0.0)
    extra: dict[str, float | int | str] = {"sli/export_latency_backfill_hours": max(backfill.values(), default=0.0)}
    extra.update({f"sli/export_latency_backfill_hours/{name}": hours for name, hours in sorted(backfill.items())})
    extra.update({f"slo/export_latency_hours/{name}": target for name, target in sorted(targets.items())})
    worst = max(per_source, key=per_source.__getitem__, default=None)
    summary = f"delivery to first seen: worst {value:.2f} h ({worst})" if worst else "no delivery judged"
    if backfill:
        summary += "; backfilled old deliveries (lag recorded, not judged): " + ", ".join(
            f"{name} {hours:.0f} h" for name, hours in sorted(backfill.items())
        )
    if failing:
        summary += f"; failing: {_listed(failing)}"
    target = config.slo.resolve("export_latency_hours")
    return SliResult(
        "export_latency_hours",
        value,
        target,
        not failing,
        per_source,
        extra,
        summary=summary,
        verdicts={name: name not in failing for name in per_source},
    )


def last_delivered_day(config: BillingConfig, store: Store) -> dt.date | None:
    """The newest usage day for which any source published rows in the lake (None: none ever did)."""
    for url in reversed(store.list_dirs(join(config.lake_url, "raw_line_items"))):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        try:
            day = dt.date.fromisoformat(name.removeprefix("date="))
        except ValueError:
            continue
        if any(info.url.endswith(".parquet") for info in store.find(url)):
            return day
    return None


_UNKNOWN = object()


def freshness(
    config: BillingConfig,
    store: Store,
    day: dt.date,
    now: dt.datetime,
    source: SourceConfig,
    last_delivered: dt.date | None | object = _UNKNOWN,
) -> SliResult:
    """End of usage day to first available in the lake, against the source's expected latency.

    Not available yet: passes while the deadline is ahead, fails once it has passed, at ERROR (page);
    at WARN (ticket) for a day after the last day any source delivered when that last day is itself older
    than the freshness window (the configured sources end before this day, as in a demo month, or every
    export stopped long ago and was paged then). A recent stop of every source still pages. Judged on
    this partition's own record only, so materializing another day never makes this one look fresh.
    `last_delivered` saves the lake listing when the caller knows it.
    """
    latency = expected_latency_hours(source)
    base = config.slo.resolve("freshness")
    target = base.model_copy(update={"target": latency})
    raw = read_state(store, config.lake_url, source.name, day).get("raw") or {}
    available = _parse(raw.get("first_available_at"))
    deadline = _day_end(day) + dt.timedelta(hours=latency)
    if available is not None:
        hours = (available - _day_end(day)).total_seconds() / 3600
        historical = available > _day_end(day) + dt.timedelta(days=config.automation.freshness_window_days)
        if historical:  # a first load of an old day (initial backfill): recorded, not judged
            return SliResult(
                "availability_latency_hours",
                hours,
                target,
                True,
                {source.name: hours},
                {"deadline": deadline.isoformat(), "available_at": available.isoformat()},
                summary=f"{source.name} {day}: first loaded {hours:.1f} h after the day ended, "
                "a historical load outside the freshness window (not judged)",
            )
        return SliResult(
            "availability_latency_hours",
            hours,
            target,
            available <= deadline,
            {source.name: hours},
            {"deadline": deadline.isoformat(), "available_at": available.isoformat()},
            summary=f"{source.name} {day}: available {hours:.1f} h after the day ended (expected within {latency:g} h)",
        )
    hours = (now - _day_end(day)).total_seconds() / 3600
    passed = now <= deadline
    result = SliResult(
        "availability_latency_hours",
        hours,
        target,
        passed,
        {source.name: hours},
        {"deadline": deadline.isoformat(), "available_at": "not yet"},
        summary=f"{source.name} {day}: not available {hours:.1f} h after the day ended "
        f"({'within' if passed else 'past'} the {latency:g} h deadline)",
    )
    if not passed:
        last = last_delivered_day(config, store) if last_delivered is _UNKNOWN else last_delivered
        horizon = now.date() - dt.timedelta(days=config.automation.freshness_window_days)
        if last is None or (isinstance(last, dt.date) and last < day and last < horizon):
            result.target = target.model_copy(update={"severity": "WARN", "route": "ticket"})
            result.extra["last_delivered_day"] = last.isoformat() if isinstance(last, dt.date) else "none"
            result.summary += (
                f"; no source has delivered {day} or any later day (last: "
                f"{last.isoformat() if isinstance(last, dt.date) else 'none'}, before the "
                "freshness window): the configured sources end before this day, or every export "
                "stopped long ago (WARN, not paged)"
            )
    return result


# ---- M3 unallocated spend ----------------------------------------------------------------------------------


def _money_by_currency(state: dict) -> dict[str, tuple[Decimal, Decimal]]:
    """(billed, unallocated) per billing currency of one (day, source)'s enriched build. A state recorded
    before currencies were (no `by_currency`) gives its totals under "" (its source's one currency)."""
    result = (state.get("enriched") or {}).get("result") or {}
    by_currency = result.get("by_currency")
    if by_currency:
        return {
            currency: (Decimal(str(m["billed"])), Decimal(str(m["unallocated"]))) for currency, m in by_currency.items()
        }
    if result.get("billed_cost") is None:
        return {}
    return {"": (Decimal(str(result["billed_cost"])), Decimal(str(result.get("unallocated_cost") or 0)))}


def _shares(totals: dict[str, tuple[Decimal, Decimal]]) -> dict[str, float]:
    """Percent of billed cost without an owner, per currency (a currency billing nothing has no share)."""
    return {currency: float(unallocated / billed * 100) for currency, (billed, unallocated) in totals.items() if billed}


def _day_shares(states: dict[str, dict]) -> dict[tuple[str, str], float]:
    """(source, currency) -> the day's unallocated percent."""
    return {
        (name, currency): share
        for name, state in states.items()
        for currency, share in _shares(_money_by_currency(state)).items()
    }


def _named(source: str, currency: str) -> str:
    return f"{source} {currency}".strip()


def unallocated_percent(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M3: percent of billed cost without an owner, month to date (the 1st to this day), per source.

    Shares are taken per billing currency, never across (a source may bill in two); a source's value is its
    worst currency, and the SLI's value the worst source. The day's own worst (source, currency) share stays
    as `sli/unallocated_percent_day`.
    """
    first = day.replace(day=1)
    month = [first + dt.timedelta(days=k) for k in range((day - first).days + 1)]
    per_source: dict[str, float] = {}
    worst_currency: dict[str, str] = {}
    for source in config.sources:
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        for current in month:
            for currency, (billed, unallocated) in _money_by_currency(
                read_state(store, config.lake_url, source.name, current)
            ).items():
                before = totals.get(currency, (Decimal(0), Decimal(0)))
                totals[currency] = (before[0] + billed, before[1] + unallocated)
        shares = _shares(totals)
        if shares:
            worst_currency[source.name] = max(shares, key=shares.__getitem__)
            per_source[source.name] = shares[worst_currency[source.name]]
    target = config.slo.resolve("unallocated_percent")
    failing = {
        name: f"{share:.2f}% of its {(worst_currency[name] + ' ').lstrip()}billed cost {first:%Y-%m-%d} to "
        f"{day} has no owner"
        for name, share in per_source.items()
        if share > target.target
    }
    value = max(per_source.values(), default=0.0)
    today = _day_shares(_states(config, store, day))
    worst_today = max(today, key=today.__getitem__, default=None)
    summary = (
        f"month to date, worst source {value:.2f}% unallocated (target {target.target:g}%)"
        + (f"; failing: {_listed(failing)}" if failing else "")
        + (
            f"; the day: {today[worst_today]:.2f}% of {_named(*worst_today)}'s billed cost has no owner"
            if worst_today
            else "; the day: nothing billed"
        )
    )
    return SliResult(
        "unallocated_percent",
        value,
        target,
        not failing,
        per_source,
        extra={"sli/unallocated_percent_day": today[worst_today] if worst_today else 0.0},
        summary=summary,
        verdicts={name: name not in failing for name in per_source},
    )


def unallocated_jump(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Percentage points the unallocated share rose since the previous day (a tagging outage): the largest
    rise of any (source, currency) billed on both days."""
    today = _day_shares(_states(config, store, day))
    before = _day_shares(_states(config, store, day - dt.timedelta(days=1)))
    rises = {key: today[key] - before[key] for key in today.keys() & before.keys()}
    worst = max(rises, key=rises.__getitem__, default=None)
    jump = rises[worst] if worst else 0.0
    where = f" ({_named(*worst)}: {before[worst]:.2f}% -> {today[worst]:.2f}%)" if worst else ""
    return _at_most(
        "unallocated_jump_points",
        jump,
        config,
        extra={"unallocated_percent_previous_day": before[worst] if worst else -1.0},
        summary=f"unallocated share moved {jump:+.2f} points since the previous day{where}",
    )


# ---- M4 duplicates ----------------------------------------------------------------------------------------


def duplicate_rate(
    config: BillingConfig, store: Store, day: dt.date, now: dt.datetime, name: str = "duplicate_rate"
) -> SliResult:
    """Duplicate rows dropped over raw rows, worst source (not double counted, but a delivery defect)."""
    per_source, raw_total, duplicates = {}, 0, 0
    for source, state in _states(config, store, day).items():
        result = (state.get("normalized") or {}).get("result") or {}
        raw_rows, dup = int(result.get("raw_rows") or 0), int(result.get("duplicate_rows") or 0)
        raw_total += raw_rows
        duplicates += dup
        if raw_rows:
            per_source[source] = dup / raw_rows
    # Judged per source (DESIGN: "per source"): one source read twice is 50 % of its rows however small
    # a share of the day's rows it is.
    worst = max(per_source, key=per_source.__getitem__, default=None)
    value = per_source[worst] if worst else 0.0
    overall = duplicates / raw_total if raw_total else 0.0
    result = _at_most(
        name,
        value,
        config,
        per_source=per_source,
        extra={"duplicate_rows": duplicates, "sli/duplicate_rate_all_sources": overall},
        summary=f"worst source {worst!r}: {value:.2%} duplicate rows; {duplicates} of {raw_total} "
        f"rows over all sources ({overall:.2%})"
        if worst
        else "no rows",
    )
    failing = {
        source: f"{share:.2%} of its rows are duplicates (target {result.target.target:.2%})"
        for source, share in per_source.items()
        if share > result.target.target
    }
    if failing:
        result.summary += f"; failing: {_listed(failing)}"
    result.name = "duplicate_rate"  # one metric key for both the SLI and the contract check
    return result


# ---- quarantine rate (bad input, DESIGN "Bad input") ---------------------------------------------------------


def _abs_cost_by_currency(source: SourceConfig, store: Store, url: str, workdir: Path) -> dict[str, Decimal]:
    """Sum of |billed cost| per billing currency of a slice of delivered rows (the adapter's `raw_totals`)."""
    if not store.exists(url):
        return {}
    totals = adapter_for(source.provider).raw_totals(pl.scan_parquet(store.stage(url, workdir)))
    grouped = totals.group_by("BillingCurrency").agg(pl.col("cost").abs().sum()).collect()
    return {str(currency): Decimal(str(cost or 0)) for currency, cost in grouped.iter_rows()}


def _quarantined_cost_share(source: SourceConfig, store: Store, lake_url: str, day: dt.date) -> float:
    """Worst currency's share of |billed cost| that went to quarantine: bad rows (set aside from the raw
    slice by the normalized build) and rows whose usage date could not be parsed (set aside before the raw
    slice), over the delivered |billed cost| (the raw slice plus the latter). Currencies are never added."""
    with scratch_dir("billing-sli-") as workdir:
        kept = _abs_cost_by_currency(source, store, slice_url(lake_url, "raw_line_items", day, source.name), workdir)
        rows = _abs_cost_by_currency(source, store, quarantine_url(lake_url, "rows", day, source.name), workdir)
        dates = _abs_cost_by_currency(source, store, quarantine_url(lake_url, "bad_dates", day, source.name), workdir)
    shares = []
    for currency in set(kept) | set(rows) | set(dates):
        delivered = kept.get(currency, Decimal(0)) + dates.get(currency, Decimal(0))
        if delivered:
            shares.append(float((rows.get(currency, Decimal(0)) + dates.get(currency, Decimal(0))) / delivered))
    return max(shares, default=0.0)


def quarantine_rate(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Share of each source's delivered rows, and of their billed cost, that went to quarantine this day.

    Rows: (rows quarantined by the normalized build + rows with an unparseable usage date, set aside by the
    raw build) / (the raw slice's rows + those). Cost: the same share of |billed cost|, per billing
    currency (worst), for rows whose cost could be read. Above `slo.quarantine_rate` (1 %) a ticket; a
    delivery whose rows are mostly quarantined (above `slo.quarantine_rate_majority`, 50 %) fails at ERROR
    naming the source and the dominant reason.
    """
    target = config.slo.resolve("quarantine_rate")
    majority = config.slo.resolve("quarantine_rate_majority")
    per_source: dict[str, float] = {}
    cost_share: dict[str, float] = {}
    failing: dict[str, str] = {}
    mostly: dict[str, str] = {}
    total_bad = 0
    for source in config.sources:
        state = read_state(store, config.lake_url, source.name, day)
        result = (state.get("normalized") or {}).get("result") or {}
        bad_dates = int((state.get("raw") or {}).get("bad_date_rows") or 0)
        rows = int(result.get("raw_rows") or 0) + bad_dates
        bad = int(result.get("quarantined_rows") or 0) + bad_dates
        if not rows:
            continue
        total_bad += bad
        share = bad / rows
        per_source[source.name] = share
        cost_share[source.name] = _quarantined_cost_share(source, store, config.lake_url, day) if bad else 0.0
        reasons = dict(result.get("reasons") or {})
        if bad_dates:
            reasons["unparseable usage start date"] = bad_dates
        dominant = max(sorted(reasons.items()), key=lambda item: item[1], default=None)
        because = f"; dominant reason: {dominant[0]!r} ({dominant[1]} rows)" if dominant else ""
        text = (
            f"{bad} of {rows} rows ({share:.1%}) and {cost_share[source.name]:.1%} of billed cost quarantined{because}"
        )
        if share > majority.target:
            mostly[source.name] = text
        elif share > target.target or cost_share[source.name] > target.target:
            failing[source.name] = text
    value = max(per_source.values(), default=0.0)
    extra: dict[str, float | int | str] = {
        "sli/quarantine_cost_rate": max(cost_share.values(), default=0.0),
        "sli/quarantined_rows": total_bad,
    }
    extra.update({f"sli/quarantine_cost_rate/{name}": share for name, share in sorted(cost_share.items())})
    result = SliResult(
        "quarantine_rate",
        value,
        target,
        not failing and not mostly,
        per_source,
        extra,
        verdicts={name: name not in failing and name not in mostly for name in per_source},
    )
    if mostly:
        result.target = majority
        result.summary = f"mostly quarantined (above {majority.target:.0%} of rows): {_listed(mostly)}" + (
            f"; also failing: {_listed(failing)}" if failing else ""
        )
    elif failing:
        result.summary = f"above {target.target:.1%} quarantined: {_listed(failing)}"
    else:
        result.summary = f"worst source {value:.2%} of rows quarantined; {total_bad} row(s) in quarantine"
    return result


# ---- M5 ingestion cost ------------------------------------------------------------------------------------


def ingestion_cost(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M5: the pipeline's own storage, requests and compute in money, month to date at this usage day.

    Unit prices from `cost_model:`; quantities from the state of every (day, source) (`pipeline_cost.py`).
    Informational: it fails only when a monthly budget is set (`slo.ingestion_cost.target`, in
    `cost_model.currency`) and the month to date exceeds it. The raw quantities stay in the metadata.
    """
    from billing_pipeline.observability import pipeline_cost

    mtd = pipeline_cost.month_to_date(config, store, day)
    total, ccy = mtd.total, mtd.currency.lower()
    used, today = mtd.usage_day, mtd.day_cost
    extra: dict[str, float | int | str] = {
        "currency": mtd.currency,
        "month": mtd.month,
        **{
            f"sli/ingestion_cost_{part}_{ccy}": float(getattr(total, part))
            for part in ("storage", "requests", "compute", "transfer")
        },
        f"sli/ingestion_cost_day_{ccy}": float(today.total),
        "sli/ingestion_compute_seconds": used.compute_seconds,
        "sli/ingestion_bytes_read": used.read_bytes,
        "sli/ingestion_bytes_stored": used.stored_bytes,
        "sli/ingestion_requests_get": used.get_requests,
        "sli/ingestion_requests_put": used.put_requests,
        "sli/ingestion_requests_list": used.list_requests,
        "sli/ingestion_compute_seconds_month": mtd.usage_month.compute_seconds,
        "sli/ingestion_gb_months": float(mtd.gb_months),
        "sli/ingestion_lake_bytes": mtd.lake_bytes,
    }
    money, size = pipeline_cost.money, pipeline_cost.size
    budget = config.slo.resolve("ingestion_cost").target
    if budget == float("inf"):
        verdict = "no monthly budget set (slo.ingestion_cost.target): informational"
    else:
        verdict = (
            f"{'OVER' if total.total > Decimal(str(budget)) else 'within'} the monthly budget of "
            f"{mtd.currency} {money(budget)}"
        )
    summary = (
        f"month to date ({mtd.month}-01..{day.isoformat()}): {mtd.currency} {money(total.total)} (storage "
        f"{money(total.storage)}, requests {money(total.requests)}, compute {money(total.compute)}, transfer "
        f"{money(total.transfer)}); this day {mtd.currency} {money(today.total)}: {used.compute_seconds:.1f} s "
        f"compute, {size(used.read_bytes)} read, {size(used.stored_bytes)} stored, lake {size(mtd.lake_bytes)};"
        f" {verdict}"
    )
    result = _at_most(
        "ingestion_cost",
        float(total.total),
        config,
        per_source={name: float(cost.total) for name, cost in mtd.per_source.items()},
        extra=extra,
        summary=summary,
    )
    result.verdicts = {ALL_SOURCES: result.passed}  # the monthly budget is the pipeline's, not a source's
    return result


# ---- M6 backfill backlog -------------------------------------------------------------------------------------


def backfill_backlog(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M6: hours of delivered data this day's slices are behind the landing zone, per source.

    From the lake's state and the landing zone, never from the wall clock: when the current delivery's
    rows for the day differ from what the day's raw slice was built from (its per-day fingerprint), the
    backlog is the current delivery's timestamp minus that of the delivery the slice was built from (or,
    when the slice was built while nothing was delivered, the time it was built; never built: the day's
    start). A day held back from the current delivery (drift, shrink) is pending until repaired or accepted;
    a newest delivery the raw build passed over as unreadable is not (nothing can process it: M1 counts it).
    Zero once the day is rebuilt, so every partition keeps its own history.
    """
    per_source: dict[str, float] = {}
    pending: dict[str, str] = {}
    unlisted: list[str] = []
    for source in config.sources:
        state = read_state(store, config.lake_url, source.name, day)
        raw = state.get("raw") or {}
        held = state.get("held_back") or {}
        try:
            adapter = adapter_for(source.provider)
            current = choose_current(
                adapter.discover(store, source.name, source.url, period_of(day), source.format)
            ).current
            unusable = current is None or current.version in (raw.get("passed_over_versions") or [])
            new = (
                None
                if unusable or held.get("version") == current.version
                else delivery_day_fingerprints(store, source, current, config.lake_url).fingerprint(day)
            )
        except Exception as error:  # noqa: BLE001 - M10 / publish_guard report an unreadable landing zone
            unlisted.append(f"{source.name} ({type(error).__name__})")
            continue
        old = raw.get("fingerprint")
        if unusable or (new is not None and (new == old or (old is None and new == ABSENT))):
            per_source[source.name] = 0.0  # nothing newer that can be processed
            continue
        assert current is not None
        built_from = _parse(raw.get("delivered_at")) if raw.get("version") else _parse(raw.get("ingested_at"))
        since = built_from or dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        hours = max((current.delivered_at - since).total_seconds() / 3600, 0.0)
        per_source[source.name] = hours
        pending[source.name] = (
            f"delivery {current.version!r} ({current.delivered_at:%Y-%m-%d %H:%M} UTC) changed "
            f"this day, the lake holds {raw.get('version') or 'nothing'!s}: {hours:.1f} h behind"
            + (f" (held back: {held.get('kind')})" if held else "")
        )
    value = max(per_source.values(), default=0.0)
    target = config.slo.resolve("backfill_backlog")
    failing = {name: text for name, text in pending.items() if per_source[name] > target.target}
    summary = (
        f"worst source {value:.1f} h behind its landing zone"
        if pending
        else "every source is built from its current delivery"
    ) + (f"; pending: {_listed(pending)}" if pending else "")
    if unlisted:
        summary += f"; landing zone not readable: {', '.join(unlisted)}"
    return SliResult(
        "backfill_backlog",
        value,
        target,
        not failing,
        per_source,
        summary=summary,
        verdicts={name: name not in failing for name in per_source},
    )


# ---- M7 reconciliation ------------------------------------------------------------------------------------

JUDGED_STATUSES = ("matched", "mismatch")


def _joined(*texts: str | None) -> str:
    return "; ".join(t for t in texts if t)


def _invoice_text(row: dict) -> str:
    account = f"account {row['BillingAccountId']} {row['BillingCurrency']}"
    delta = f"{row['invoice_delta_relative'] or 0.0:+.4%}"
    return f"{account}: {row['month_to_date_total']} against invoice {row['invoice_amount']} ({delta}, {row['status']})"


def _break_text(row: dict) -> str:
    account = f"account {row['BillingAccountId']} {row['BillingCurrency']}"
    return (
        f"{account}: conservation break of {row['conservation_delta']} "
        "(raw - quarantined - duplicates != normalized): a pipeline bug"
    )


def reconciliation_delta(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M7: |export total - invoice| / invoice per closed billing period, worst source; any conservation
    break is an ERROR.

    A period is judged from its last day's partition on (`reconciliation.period_closed`): it fails when a
    row's status is `mismatch` (beyond `reconciliation.absolute_tolerance` and `relative_tolerance`) or its
    relative delta is above the SLO target (0.5 %). While the month is open the month-to-date delta is
    information only (`sli/reconciliation_delta_month_to_date`), never a failure. A source with days of the
    closed period never built (no state: a backfill of the last day alone, or still running) is not judged
    yet: its month to date lacks those days.
    """
    frames = []
    for source in config.sources:
        url = slice_url(config.lake_url, "reconciliation_deltas", day, source.name)
        if store.exists(url):
            frames.append(pl.read_parquet(store.read_bytes(url)))
    table = pl.concat(frames, how="diagonal_relaxed") if frames else None
    target = config.slo.resolve("reconciliation_delta")
    per_source: dict[str, float] = {}
    month_to_date: dict[str, float] = {}
    failing: dict[str, str] = {}
    unbuilt: dict[str, list[dt.date]] = {}
    breaks = 0
    if table is not None and table.height:
        breaks = table.filter(pl.col("status") == "conservation_break").height
        if period_closed(day):
            first = day.replace(day=1)
            for source in {str(s) for s in table.filter(pl.col("status").is_in(JUDGED_STATUSES))["source"]}:
                missing = [
                    first + dt.timedelta(days=k)
                    for k in range((day - first).days)
                    if not set(read_state(store, config.lake_url, source, first + dt.timedelta(days=k)))
                    & {"raw", "held_back"}
                ]
                if missing:
                    unbuilt[source] = missing
        for row in table.sort("source", "BillingAccountId", "BillingCurrency", nulls_last=True).iter_rows(named=True):
            source, relative = row["source"], abs(row["invoice_delta_relative"] or 0.0)
            if row["status"] == "month_in_progress" or (row["status"] in JUDGED_STATUSES and source in unbuilt):
                month_to_date[source] = max(month_to_date.get(source, 0.0), relative)
            elif row["status"] in JUDGED_STATUSES:
                per_source[source] = max(per_source.get(source, 0.0), relative)
                beyond = abs(row["invoice_delta"] or 0) > config.reconciliation.absolute_tolerance
                if row["status"] == "mismatch" or (relative > target.target and beyond):
                    failing[source] = _joined(failing.get(source), _invoice_text(row))
            elif row["status"] == "conservation_break":
                failing[source] = _joined(failing.get(source), _break_text(row))
    value = max(per_source.values(), default=0.0)
    extra: dict[str, float | int | str] = {
        "sli/conservation_breaks": breaks,
        "sli/reconciliation_delta_month_to_date": max(month_to_date.values(), default=0.0),
        "billing_period": day.strftime("%Y-%m"),
        "period_closed": "yes" if period_closed(day) else "no",
    }
    extra.update({f"sli/reconciliation_delta_month_to_date/{s}": v for s, v in sorted(month_to_date.items())})
    if per_source:
        summary = f"closed period {day:%Y-%m}: worst invoice delta {value:.4%} (target {target.target:.2%})"
    elif month_to_date:
        summary = (
            f"period {day:%Y-%m} open: month-to-date delta {max(month_to_date.values()):.4%} against the "
            "month's invoice (information, judged on the period's last day)"
        )
    else:
        summary = f"period {day:%Y-%m}: no invoice to judge against yet"
    if unbuilt:
        summary += "; not judged yet (days of the period never built, the month to date lacks them): " + _listed(
            {
                name: f"{len(days)} day(s), first {days[0]}; materialize them, then {day} again"
                for name, days in unbuilt.items()
            }
        )
    if failing:
        summary += f"; failing: {_listed(failing)}"
    # judged per source once its period is closed; a conservation break fails its source on any day
    verdicts = {name: name not in failing for name in per_source} | {name: False for name in failing}
    result = SliResult(
        "reconciliation_delta", value, target, not failing, per_source, extra, summary=summary, verdicts=verdicts
    )
    if breaks:
        result.severity = "ERROR"
    return result


# ---- M8 cost anomalies ------------------------------------------------------------------------------------


def anomalous_spends(table: pl.DataFrame) -> int:
    """Anomalous spends of one day's anomaly table: service, account and team each partition the same spend,
    so one spike flagged on its service, its account and its team is one anomalous spend. The day counts the
    most keys flagged in any one dimension (a burn-rate breach, dimension `total`, is one)."""
    if table.is_empty():
        return 0
    return int(table.group_by("dimension").len()["len"].max())


def cost_anomalies(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M8: anomalous spends detected in the rolling week ending at this day (the 7 days D-6..D), fewer than
    the target (3) per week.

    Detects (and stores in the lake) the day's spend anomalies and burn-rate breaches, then counts them with
    the anomalies stored for the six days before, per day as `anomalous_spends` (one spike flagged on its
    service, account and team counts once; every flag is still listed and alerted).
    """
    table = anomalies.publish(config, store, day)
    week = {
        day - dt.timedelta(days=k): anomalies.read_published(store, config.lake_url, day - dt.timedelta(days=k))
        for k in range(6, 0, -1)
    }
    week[day] = table
    counts = {d: anomalous_spends(frame) for d, frame in week.items()}
    value = float(sum(counts.values()))
    target = config.slo.resolve("cost_anomalies")
    burn = table.filter(pl.col("kind") == "burn_rate").height
    markdown = markdown_table(
        [
            {
                "kind": r["kind"],
                "dimension": r["dimension"],
                "key": r["key"],
                "spend": f"{r['spend']:.2f}",
                "baseline": f"{r['baseline']:.2f}",
                "delta": f"{r['delta']:+.2f}",
                "rows": r["rows"],
            }
            for r in table.head(20).iter_rows(named=True)
        ],
        empty="_no anomaly_",
    )  # keys are delivered tag values: escaped for Markdown
    days = ", ".join(f"{d:%m-%d}: {n}" for d, n in sorted(counts.items()) if n)
    messages = pl.concat(list(week.values()), how="diagonal_relaxed")["message"].tail(3).to_list()
    summary = (
        f"{int(value)} anomalous spend{'' if value == 1 else 's'} in the week {day - dt.timedelta(days=6)} to "
        f"{day} ({'fewer than' if value < target.target else 'NOT fewer than'} {target.target:g} per week)"
        + (f"; per day {days}" if days else "")
        + (f"; latest: {'; '.join(messages)}" if messages else "")
    )
    return SliResult(
        "cost_anomalies",
        value,
        target,
        value < target.target,
        extra={
            "sli/cost_anomalies_day": counts[day],
            "sli/cost_anomaly_flags_day": table.height,
            "sli/burn_rate_breaches": burn,
            "anomalies_table": anomalies.anomalies_url(config.lake_url, day),
            "anomalies": markdown,
        },
        summary=summary,
    )


# ---- M9 schema failures, M10 access violations ----------------------------------------------------------


def _problems(state: dict) -> list[dict]:
    """File problems of the day's last raw build, and of a build held back since (not yet published)."""
    return list((state.get("raw") or {}).get("problems") or []) + list(
        (state.get("held_back") or {}).get("problems") or []
    )


def schema_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M9: files that could not be read because their columns are not what the adapter expects, and sources
    whose day a breaking schema change held back (state `held_back.kind == "drift"`).

    Columns added or removed since the previous delivery are reported, not failed: tag columns come
    and go legitimately.
    """
    per_source, added, removed = {}, 0, 0
    failing: dict[str, str] = {}
    for source, state in _states(config, store, day).items():
        failures = [
            p
            for p in _problems(state)
            if p["kind"] == "unreadable" and SCHEMA_MARKERS.search(p["reason"]) and not is_access_denied(p["reason"])
        ]
        held = state.get("held_back") or {}
        drift = 1 if held.get("kind") == "drift" else 0  # a breaking change held it back
        per_source[source] = float(max(len(failures), drift))
        if drift:
            failing[source] = f"held back by a breaking schema change: {str(held.get('reason') or '')[:300]}"
        elif failures:
            failing[source] = "; ".join(f"{p['file_uri']}: {p['reason'][:200]}" for p in failures)
        raw = state.get("raw") or {}
        before, after = set(raw.get("previous_columns") or []), set(raw.get("columns") or [])
        if before:
            added += len(after - before)
            removed += len(before - after)
    value = sum(per_source.values())
    return _at_most(
        "schema_failures",
        value,
        config,
        per_source=per_source,
        extra={"sli/columns_added": added, "sli/columns_removed": removed},
        summary=f"{int(value)} schema failure(s); columns +{added} -{removed}"
        + (f"; failing: {_listed(failing)}" if failing else ""),
    )


def access_violations(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M10: access-denied events of the day (UTC) on each source's landing prefix and on the lake, read from
    the store's audit trail (`audit_logs:`: S3 server access logs, CloudTrail data events; `audit_logs.py`).

    Where no trail is configured, or for a source not on S3, the fallback is the denied reads the pipeline
    itself met (file problems and denied listings in its state); the summary says which applied. A trail
    that cannot be read fails at WARN (M10 is then not measured), unless violations already fail it.
    """
    from billing_pipeline.observability import audit_logs

    pipeline_denied = {}
    for source, state in _states(config, store, day).items():
        denied = [p for p in _problems(state) if is_access_denied(p["reason"])]
        pipeline_denied[source] = float(len(denied) + int((state.get("access") or {}).get("denied_listings") or 0))
    found = audit_logs.violations(config, store, day, pipeline_denied)
    result = _at_most(
        "access_violations", found.value, config, per_source=found.per_source, extra=found.extra, summary=found.summary
    )
    if result.passed and found.trail_unreadable:
        result.passed, result.severity = False, "WARN"
    return result


SliFunction = Callable[[BillingConfig, Store, dt.date, dt.datetime], SliResult]

__all__ = [
    "ALL_SOURCES",
    "SliResult",
    "access_violations",
    "anomalous_spends",
    "backfill_backlog",
    "cost_anomalies",
    "delivery_first_seen",
    "delivery_outcome",
    "duplicate_rate",
    "expected_latency_hours",
    "export_latency",
    "export_success_rate",
    "freshness",
    "ingestion_cost",
    "last_delivered_day",
    "latency_target",
    "quarantine_rate",
    "reconciliation_delta",
    "schema_failures",
    "unallocated_jump",
    "unallocated_percent",
]
