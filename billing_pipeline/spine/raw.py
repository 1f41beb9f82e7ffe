"""The raw layer's entry points, and its re-run decision from the state it recorded.

The landing zone is listed once per (day, source) build: `build_raw_slice_if_changed` chooses the
current delivery from that listing, decides from its per-day fingerprint whether the slice is
unchanged (then the slice is reused and the state records that the delivery confirmed it), and
otherwise hands the same listing to `publish_raw_slice`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billing_pipeline.adapters import Delivery, DeliveryChoice, FileProblem, adapter_for, choose_current
from billing_pipeline.lifecycle.audit_log import (
    ACCEPT_HELD_BACK,
    CLOSED_MONTH_RERUN,
    OperatorRun,
    append_operator_action,
)
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import RAW
from billing_pipeline.platform.parallel import compute_clock
from billing_pipeline.platform.state import ABSENT, read_state, write_state
from billing_pipeline.platform.storage import Store, is_access_denied
from billing_pipeline.spine.calendar import open_periods, period_of
from billing_pipeline.spine.fingerprint import DeliveryDays, delivery_day_fingerprints
from billing_pipeline.spine.guard import DeliveryIncompleteError, PublishGuard, held_back_kind
from billing_pipeline.spine.layer_state import ReusedSlice, now, slice_identity, stored_bytes
from billing_pipeline.spine.quarantine import quarantine_record, write_records
from billing_pipeline.spine.raw_publish import RawSlice, current_delivery_problems, publish_raw_slice
from billing_pipeline.spine.raw_read import ParsedFiles


@dataclass
class ReusedRawSlice(RawSlice, ReusedSlice):
    pass


def list_deliveries(source: SourceConfig, day: dt.date, store: Store) -> list[Delivery]:
    """The deliveries of the day's billing period in the source's landing zone, listed afresh."""
    store.invalidate(source.url)
    return adapter_for(source.provider).discover(store, source.name, source.url, period_of(day), source.format)


def build_raw_slice(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    ingested_at: dt.datetime | None = None,
    guard: PublishGuard | None = None,
) -> RawSlice:
    """List the landing zone, then `publish_raw_slice` from that listing."""
    ingested_at = ingested_at or now()
    deliveries = list_deliveries(source, day, store)
    return publish_raw_slice(source, day, deliveries, store, lake_url, workdir, ingested_at, guard or PublishGuard())


def build_raw_slice_if_changed(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    guard: PublishGuard | None = None,
    accepted_via: str = "",
    operator: OperatorRun | None = None,
) -> RawSlice:
    """`publish_raw_slice`, unless the current delivery holds exactly the rows the slice was built from.

    The decision reads the per-day fingerprint of the current delivery (cached), never the slice
    itself, so an unchanged source of a requested day is neither re-read nor rewritten. A slice held
    back (invariant 5) is recorded in the state's `held_back` section, which the `publish_guard`
    check reads; an operator's acceptance is recorded in `acceptances` with who, when and how.

    With `operator` (the run), two operator actions land in the audit log: an acceptance taking effect
    (`accept_held_back`), and building again a day already built whose billing period is closed, i.e.
    older than the source's `lookback_months` (`closed_month_rerun`, with what came of it).
    """
    state = read_state(store, lake_url, source.name, day)
    rerun_by = operator if operator and state.get("raw") and billing_period_is_closed(source, day, operator) else None
    try:
        result = _build_raw_slice_if_changed(
            source, day, store, lake_url, workdir, guard, accepted_via, operator, state
        )
    except DeliveryIncompleteError as error:
        if rerun_by:
            _audit_closed_month_rerun(store, lake_url, source, day, rerun_by, f"held back: {error}"[:500], workdir)
        raise
    if rerun_by:
        outcome = (
            "slice unchanged, reused" if isinstance(result, ReusedSlice) else f"slice rewritten, {result.rows} rows"
        )
        _audit_closed_month_rerun(store, lake_url, source, day, rerun_by, outcome, workdir)
    return result


def billing_period_is_closed(source: SourceConfig, day: dt.date, operator: OperatorRun) -> bool:
    """The day's billing period is older than the periods the source still restates (`lookback_months`)."""
    today = (operator.at or now()).date()
    return period_of(day) not in open_periods(today, source.lookback_months, dt.date.min) and day < today


def _audit_closed_month_rerun(
    store: Store, lake_url: str, source: SourceConfig, day: dt.date, operator: OperatorRun, outcome: str, workdir: Path
) -> None:
    append_operator_action(
        store,
        lake_url,
        operator,
        CLOSED_MONTH_RERUN,
        who=operator.who,
        table=RAW,
        partition=f"date={day.isoformat()}/source={source.name}",
        detail=f"billing period {period_of(day)} is closed (lookback {source.lookback_months} months); {outcome}",
        workdir=workdir,
    )


def _build_raw_slice_if_changed(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    guard: PublishGuard | None,
    accepted_via: str,
    operator: OperatorRun | None,
    state: dict[str, Any],
) -> RawSlice:
    parsed = ParsedFiles(workdir)  # a text delivery new to the lake: parsed once for fingerprints and slice
    try:
        return _build_from_listing(source, day, store, lake_url, workdir, guard, accepted_via, operator, state, parsed)
    finally:
        parsed.clear()


def _build_from_listing(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    guard: PublishGuard | None,
    accepted_via: str,
    operator: OperatorRun | None,
    state: dict[str, Any],
    parsed: ParsedFiles,
) -> RawSlice:
    started = compute_clock()
    deliveries = _list_counting_denials(source, day, store, lake_url, state)
    choice = choose_current(deliveries)
    days = None
    if choice.current is not None:
        days = delivery_day_fingerprints(store, source, choice.current, lake_url, parsed)
    if days is not None and _unchanged(store, lake_url, source.name, day, state, days):
        return _confirm_unchanged(source, day, store, lake_url, workdir, state, choice)
    ingested_at = now()
    # invariant 5 also on what the state says is published: the raw slice file may be missing (a new raw_lake_url)
    recorded = int((state.get("raw") or {}).get("rows") or 0)
    guard = dataclasses.replace(guard or PublishGuard(), recorded_rows=recorded)
    try:
        result = publish_raw_slice(source, day, deliveries, store, lake_url, workdir, ingested_at, guard, days, parsed)
    except DeliveryIncompleteError as error:
        _record_held_back(store, lake_url, source.name, day, error, ingested_at, choice)
        raise
    previous = state.get("raw") or {}
    section = _raw_section(
        result,
        previous,
        _built_fingerprint(store, source, lake_url, day, result, choice.current, days),
        days,
        ingested_at,
        bytes_stored=stored_bytes(store, slice_url(lake_url, RAW, day, source.name)),
        compute_seconds=compute_clock() - started,
    )
    acceptance = _acceptance(result, previous, day, ingested_at, accepted_via) if result.accepted_by else None
    _record_raw_build(store, lake_url, source.name, day, section, acceptance)
    if acceptance and operator is not None:
        append_operator_action(
            store,
            lake_url,
            operator,
            ACCEPT_HELD_BACK,
            who=acceptance["by"],
            table=RAW,
            partition=f"date={day.isoformat()}/source={source.name}",
            detail=(
                f"{source.name}:{acceptance['period']} version {acceptance['version']} published via "
                f"{acceptance['via']}: {acceptance['published_rows_before']} -> {acceptance['rows']} rows"
            ),
            workdir=workdir,
            files=1 if result.rows else 0,
            size=section["bytes_stored"],
        )
    return result


def _list_counting_denials(
    source: SourceConfig, day: dt.date, store: Store, lake_url: str, state: dict[str, Any]
) -> list[Delivery]:
    """`list_deliveries`; a listing the store refuses is counted in the state (`access`, M10) and raised."""
    try:
        return list_deliveries(source, day, store)
    except Exception as error:
        if is_access_denied(f"{type(error).__name__}: {error}"):
            state.setdefault("access", {})["denied_listings"] = (
                int((state.get("access") or {}).get("denied_listings", 0)) + 1
            )
            state["access"]["last_denied"] = f"{type(error).__name__}: {error}"[:300]
            write_state(store, lake_url, source.name, day, state)
        raise


def _unchanged(
    store: Store, lake_url: str, source: str, day: dt.date, state: dict[str, Any], days: DeliveryDays
) -> bool:
    """The current delivery holds the rows the slice was built from, read in full, nothing is held back,
    and the slice is there exactly when it has rows."""
    previous = state.get("raw") or {}
    slice_present = slice_identity(store, slice_url(lake_url, RAW, day, source)) != ABSENT
    return (
        previous.get("fingerprint") == days.fingerprint(day)
        and days.error is None
        and not state.get("held_back")
        and slice_present == (int(previous.get("rows") or 0) > 0)
    )


def _confirm_unchanged(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    state: dict[str, Any],
    choice: DeliveryChoice,
) -> ReusedRawSlice:
    """Reuse the slice; record that the current delivery confirmed it (M1), with that delivery's problems."""
    current = choice.current
    assert current is not None
    previous = state.get("raw") or {}
    if previous.get("confirmed_version", previous.get("version")) != current.version:
        # same rows, another delivery: its own problems (and what it passed over) replace the old ones
        problems = current_delivery_problems(choice)
        previous["problems"] = [dataclasses.asdict(p) for p, _ in problems]
        previous["passed_over_versions"] = [d.version for d in choice.passed_over]
        records = [quarantine_record(source.name, day, problem, version, now()) for problem, version in problems]
        write_records(store, lake_url, day, source.name, records, workdir, "raw")
    previous["confirmed_version"] = current.version
    previous["confirmed_at"] = now().isoformat()
    if current.delivered_at:  # M1: a delivery made after the day ended confirms the day
        previous["confirmed_delivered_at"] = current.delivered_at.isoformat()
    state["raw"] = previous
    write_state(store, lake_url, source.name, day, state)
    return _raw_from_state(source.name, day, previous)


def _raw_from_state(source: str, day: dt.date, raw: dict[str, Any]) -> ReusedRawSlice:
    delivered = raw.get("delivered_at")
    return ReusedRawSlice(
        source=source,
        day=day,
        rows=int(raw.get("rows") or 0),
        version=raw.get("version"),
        delivered_at=dt.datetime.fromisoformat(delivered) if delivered else None,
        files_read=int(raw.get("files_read") or 0),
        problems=[FileProblem(p["file_uri"], p["reason"], p["kind"]) for p in raw.get("problems") or []],
        bad_date_rows=int(raw.get("bad_date_rows") or 0),
        passed_over_versions=list(raw.get("passed_over_versions") or []),
        fingerprint=raw.get("delivery_fingerprint") or "",
    )


def _record_held_back(
    store: Store,
    lake_url: str,
    source: str,
    day: dt.date,
    error: DeliveryIncompleteError,
    at: dt.datetime,
    choice: DeliveryChoice,
) -> None:
    """Invariant 5: the state's `held_back` section, which the `publish_guard` check reads."""
    state = read_state(store, lake_url, source, day)
    state["held_back"] = {
        "kind": held_back_kind(error),
        "problems": [dataclasses.asdict(p) for p in error.problems],
        "reason": str(error)[:2000],
        "at": at.isoformat(),
        "version": choice.current.version if choice.current else None,
    }
    write_state(store, lake_url, source, day, state)


def _built_fingerprint(
    store: Store,
    source: SourceConfig,
    lake_url: str,
    day: dt.date,
    result: RawSlice,
    current: Delivery | None,
    days: DeliveryDays | None,
) -> str:
    """The content fingerprint of what the slice was built from: the current delivery's (already read),
    or that of an older complete delivery that stood in for a broken newer one."""
    used = result.delivery
    if used is None:
        return ABSENT
    if days is not None and used == current:
        return days.fingerprint(day)
    return delivery_day_fingerprints(store, source, used, lake_url).fingerprint(day)


def _raw_section(
    result: RawSlice,
    previous: dict[str, Any],
    fingerprint: str,
    days: DeliveryDays | None,
    ingested_at: dt.datetime,
    bytes_stored: int,
    compute_seconds: float,
) -> dict[str, Any]:
    """The state's `raw` section: what the slice was built from and what the build found and cost."""
    used = result.delivery
    return {
        "fingerprint": fingerprint,
        "version": result.version,
        "delivery_fingerprint": result.fingerprint,
        "delivered_at": result.delivered_at.isoformat() if result.delivered_at else None,
        "ingested_at": ingested_at.isoformat(),
        "first_available_at": previous.get("first_available_at") or (ingested_at.isoformat() if result.rows else None),
        "rows": result.rows,
        "files_read": result.files_read,
        "files_listed": len(used.files) if used else 0,
        "quarantined_files": result.quarantined_files,
        "bad_date_rows": result.bad_date_rows,
        "problems": [dataclasses.asdict(p) for p in result.problems],
        "passed_over_versions": result.passed_over_versions,
        "columns": days.columns if days else [],
        "previous_columns": previous.get("columns") or [],
        "bytes_read": days.bytes if days else 0,
        "bytes_stored": bytes_stored,
        "compute_seconds": compute_seconds,
        "writes": int(previous.get("writes") or 0) + 1,
    }


def _acceptance(
    result: RawSlice, previous: dict[str, Any], day: dt.date, at: dt.datetime, accepted_via: str
) -> dict[str, Any]:
    """One entry of the state's `acceptances`: who let a smaller version through, when, how, and the fall."""
    return {
        "by": result.accepted_by,
        "at": at.isoformat(),
        "via": accepted_via or "config",
        "version": result.version,
        "period": period_of(day),
        "published_rows_before": int(previous.get("rows") or 0),
        "rows": result.rows,
    }


def _record_raw_build(
    store: Store, lake_url: str, source: str, day: dt.date, section: dict[str, Any], acceptance: dict[str, Any] | None
) -> None:
    """A built slice: its `raw` section replaces the old one, a hold-back is lifted, an acceptance kept."""
    state = read_state(store, lake_url, source, day)
    state.pop("held_back", None)
    if acceptance:
        state.setdefault("acceptances", []).append(acceptance)
    state["raw"] = section
    write_state(store, lake_url, source, day, state)
