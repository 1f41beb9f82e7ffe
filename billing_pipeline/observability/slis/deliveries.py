"""Deliveries: M1 export success rate, M2 export latency, freshness (M2b) and M6 backfill backlog, from the
lake's state of (day, source) and the landing zone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from billing_pipeline.adapters import Delivery, adapter_for, choose_current
from billing_pipeline.adapters.base import modified_at
from billing_pipeline.observability.slis.base import SliResult, day_end, expected_latency_hours, listed, parse_time
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.lake import table_root
from billing_pipeline.platform.names import RAW
from billing_pipeline.platform.ops_config import DAILY_WINDOW_PROVIDERS, SloTarget
from billing_pipeline.platform.state import ABSENT, read_state
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.calendar import period_of
from billing_pipeline.spine.fingerprint import delivery_cache_url, delivery_day_fingerprints

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
    times = [t for t in (parse_time(raw.get("delivered_at")), parse_time(raw.get("confirmed_delivered_at"))) if t]
    delivered = max(times, default=None)
    if delivered is None or delivered < day_end(day):
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
        deadline = day_end(day) + dt.timedelta(hours=expected_latency_hours(source))
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
        + (f"; failing: {listed(failing)}" if failing else "")
    )
    return SliResult(
        "export_success_rate",
        value,
        target,
        value >= target.target,
        per_source,
        failing=failing,  # the due sources without a complete delivery: exactly those scoring 0
        extra={"sli/export_deliveries_due": expected, "sli/export_deliveries_complete": complete},
        summary=summary,
    )


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
    times = [t for t in (parse_time(raw.get("ingested_at")),) if t]
    if raw.get("version"):
        probe = Delivery(
            source, period_of(day), raw["version"], _EPOCH, (), fingerprint=raw.get("delivery_fingerprint") or ""
        )
        url = delivery_cache_url(lake_url, source, probe)
        try:
            info = store.info(url)
            recorded = parse_time(json.loads(store.read_bytes(url)).get("first_seen_at"))
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
        delivered = parse_time(raw.get("delivered_at"))
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
        summary += f"; failing: {listed(failing)}"
    target = config.slo.resolve("export_latency_hours")
    return SliResult(
        "export_latency_hours",
        value,
        target,
        not failing,
        per_source,
        extra,
        summary=summary,
        failing=failing,
    )


def last_delivered_day(config: BillingConfig, store: Store) -> dt.date | None:
    """The newest usage day for which any source published rows in the lake (None: none ever did)."""
    for url in reversed(store.list_dirs(table_root(config.lake_url, RAW))):  # in the raw lake
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
    available = parse_time(raw.get("first_available_at"))
    deadline = day_end(day) + dt.timedelta(hours=latency)
    if available is not None:
        hours = (available - day_end(day)).total_seconds() / 3600
        historical = available > day_end(day) + dt.timedelta(days=config.automation.freshness_window_days)
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
    hours = (now - day_end(day)).total_seconds() / 3600
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
        built_from = parse_time(raw.get("delivered_at")) if raw.get("version") else parse_time(raw.get("ingested_at"))
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
    ) + (f"; pending: {listed(pending)}" if pending else "")
    if unlisted:
        summary += f"; landing zone not readable: {', '.join(unlisted)}"
    return SliResult(
        "backfill_backlog",
        value,
        target,
        not failing,
        per_source,
        summary=summary,
        failing=failing,
    )


def overdue_days(
    config: BillingConfig, store: Store, now: dt.datetime, has_partition_key: Callable[[str], bool]
) -> list[tuple[SourceConfig, dt.date, SliResult]]:
    """(source, day, SLI result) of every day in the freshness window that is past its deadline and missing.

    A day after the last day any source delivered, when that day is older than the freshness window, fails at
    WARN (ticket), not ERROR: the configured sources end before it (`freshness`); the lake is listed once.
    """
    out = []
    today = now.date()
    last_delivered = last_delivered_day(config, store)
    for source in config.sources:
        for back in range(1, config.automation.freshness_window_days + 1):
            day = today - dt.timedelta(days=back)
            if not has_partition_key(day.isoformat()):
                continue
            result = freshness(config, store, day, now, source, last_delivered=last_delivered)
            if not result.passed:
                out.append((source, day, result))
    return out
