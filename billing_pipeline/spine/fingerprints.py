"""Invariant 4 ("only what changed re-runs"), decided from data rather than from file timestamps.

A restated month arrives as a whole new delivery; most of its days usually hold exactly the rows the
previous delivery held. For every delivery we compute one content fingerprint per usage day: the
number of rows and two 64-bit sums of per-row hashes (polars `struct(...).hash`, over the delivered
columns in sorted order). Sums make the fingerprint independent of row order, file names, file
split and ingest time, and they still count a duplicated row. The fingerprints of a delivery are
cached in the lake (computing them is one streaming scan of the delivery), and the fingerprint a
(day, source) slice was last built from is recorded beside it:

    <lake>/_state/deliveries/source=S/period=YYYY-MM/<delivery key>.json   per-day fingerprints of a delivery
    <lake>/_state/fingerprints/source=S/period=YYYY-MM/date=YYYY-MM-DD.json what each layer was built from

The late-arrival sensor requests only the days whose fingerprint differs; within a requested day the
`*_if_changed` / `*_if_stale` builders below re-read and rewrite only the sources whose slice changed,
and leave the downstream slices of an unchanged source as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline.adapters import Delivery, adapter_for, choose_current
from billing_pipeline.adapters.base import FileProblem, listing_fingerprint
from billing_pipeline.platform.config import BillingConfig, SourceConfig, TagPolicy
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.storage import Store, is_remote, join, scratch_dir
from billing_pipeline.spine.ingest import (
    DeliveryIncompleteError,
    EnrichedSlice,
    NormalizedSlice,
    PublishGuard,
    PublishHeldBackError,
    RawSlice,
    SchemaDriftError,
    build_enriched_slice,
    build_normalized_slice,
    build_raw_slice,
    current_delivery_problems,
    is_period_scoped,
    partition_day,
    quarantine_record,
    write_records,
)
from billing_pipeline.spine.reconciliation import RECONCILIATION_SCHEMA, publish_reconciliation

log = logging.getLogger(__name__)

# Bump when the way fingerprints are computed changes; polars' hash is stable only within a version.
SCHEME = f"v1-polars-{pl.__version__}"
STATE_DIR = "_state"
ABSENT = "absent"
_SPLIT = 2**32  # two sums of 32-bit halves: no overflow below 2**32 rows a day

# Error names / texts of a denied read: PermissionError (local, s3fs maps AccessDenied to it), botocore's
# AccessDenied, gcsfs / HTTP "Forbidden". A bare "403" is not enough: file names contain numbers.
DENIED_MARKERS = ("PermissionError", "AccessDenied", "Access Denied", "Forbidden", "HTTP 403", "status 403")


def is_access_denied(text: str) -> bool:
    """True for a store error that means "not allowed" (M10 counts these), not "broken"."""
    return any(marker in text for marker in DENIED_MARKERS)


# ---- where state lives ---------------------------------------------------------------------------------


def period_of(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def open_periods(today: dt.date, lookback_months: int, start_date: dt.date) -> list[str]:
    """`YYYY-MM` of the months still open for restatement, newest first, none before `start_date`."""
    periods = []
    year, month = today.year, today.month
    for _ in range(lookback_months):
        if (year, month) < (start_date.year, start_date.month):
            break
        periods.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return periods


def days_of_period(period: str) -> list[dt.date]:
    year, month = (int(p) for p in period.split("-"))
    first = dt.date(year, month, 1)
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return [first + dt.timedelta(days=i) for i in range((following - first).days)]


def state_url(lake_url: str, source: str, day: dt.date) -> str:
    return join(
        lake_url,
        STATE_DIR,
        "fingerprints",
        f"source={source}",
        f"period={period_of(day)}",
        f"date={day.isoformat()}.json",
    )


def delivery_cache_url(lake_url: str, source: str, delivery: Delivery) -> str:
    return join(
        lake_url,
        STATE_DIR,
        "deliveries",
        f"source={source}",
        f"period={delivery.billing_period}",
        f"{delivery_key(delivery)}.json",
    )


def delivery_key(delivery: Delivery) -> str:
    """A delivery's identity: its version plus what its files are (a file replaced in place changes it)."""
    return hashlib.sha256(f"{SCHEME}|{delivery.version}|{delivery.fingerprint}".encode()).hexdigest()[:32]


def _read_json(store: Store, url: str) -> dict[str, Any] | None:
    try:
        if not store.exists(url):
            return None
        return json.loads(store.read_bytes(url))
    except (OSError, ValueError) as error:
        log.warning("state file %s unreadable (%s): treated as absent", url, error)
        return None


def _write_json(store: Store, url: str, document: dict[str, Any]) -> None:
    store.write_bytes(url, json.dumps(document, sort_keys=True, default=str, indent=1).encode())


def read_state(store: Store, lake_url: str, source: str, day: dt.date) -> dict[str, Any]:
    return _read_json(store, state_url(lake_url, source, day)) or {"source": source, "date": day.isoformat()}


def write_state(store: Store, lake_url: str, source: str, day: dt.date, state: dict[str, Any]) -> None:
    _write_json(store, state_url(lake_url, source, day), state)


# ---- per-day fingerprints of a delivery ------------------------------------------------------------------


@dataclass
class DeliveryDays:
    """Per usage day of one delivery: content fingerprint and row count; plus what reading it cost."""

    version: str
    delivery_fingerprint: str
    days: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    bytes: int = 0
    error: str | None = None

    def fingerprint(self, day: dt.date) -> str:
        """The day's fingerprint; a delivery that could not be read fully differs from everything."""
        if self.error:
            return "unreadable-" + hashlib.sha256(f"{self.delivery_fingerprint}|{self.error}".encode()).hexdigest()[:16]
        return self.days.get(day.isoformat(), ABSENT)


def _fingerprint(count: int, high: int, low: int, columns: list[str]) -> str:
    text = f"{SCHEME}|{count}|{high}|{low}|{','.join(columns)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compute_delivery_days(store: Store, source: SourceConfig, delivery: Delivery) -> DeliveryDays:
    """One streaming pass over the delivery's files: per usage day, count and sums of row hashes.

    Rows whose usage start cannot be parsed, or (a delivery of one billing period) falls outside the
    period, count for the period's first day, where the builders quarantine them.
    """
    adapter = adapter_for(source.provider)
    result = DeliveryDays(version=delivery.version, delivery_fingerprint=delivery.fingerprint)
    totals: dict[str, list[int]] = {}
    columns: set[str] = set()
    with scratch_dir("billing-fp-") as workdir:
        for file_uri in delivery.files:
            try:
                local = store.stage(file_uri, workdir)
                result.bytes += local.stat().st_size
                frame = adapter.read(local, delivery.file_format)
                schema = frame.collect_schema()
                names = sorted(schema)
                columns.update(names)
                start = adapter.usage_start(schema)
                hashed = frame.select(
                    partition_day(start, delivery.billing_period, is_period_scoped(adapter, delivery)).alias("_day"),
                    pl.struct(names).hash(seed=0).alias("_h"),
                )
                grouped = (
                    hashed.group_by("_day")
                    .agg(
                        pl.len().alias("n"),
                        (pl.col("_h") // _SPLIT).sum().alias("hi"),
                        (pl.col("_h") % _SPLIT).sum().alias("lo"),
                    )
                    .collect(engine="streaming")
                )
            except Exception as error:  # noqa: BLE001 - the raw builder reports the file; we only mark the period
                first_line = (str(error).splitlines() or [""])[0][:200]
                result.error = f"{file_uri}: {type(error).__name__}: {first_line}"
                log.warning("fingerprinting %s: %s", source.name, result.error)
                continue
            finally:
                if is_remote(file_uri):  # a staged copy: keep at most one on local disk
                    for staged in workdir.iterdir():
                        staged.unlink(missing_ok=True)
            for day, count, high, low in grouped.iter_rows():
                acc = totals.setdefault(day.isoformat(), [0, 0, 0])
                acc[0] += int(count)
                acc[1] += int(high)
                acc[2] += int(low)
    result.columns = sorted(columns)
    for day, (count, high, low) in sorted(totals.items()):
        result.days[day] = _fingerprint(count, high, low, result.columns)
        result.rows[day] = count
    return result


def delivery_day_fingerprints(store: Store, source: SourceConfig, delivery: Delivery, lake_url: str) -> DeliveryDays:
    """Per-day fingerprints of a delivery, computed once and cached in the lake under its identity."""
    url = delivery_cache_url(lake_url, source.name, delivery)
    cached = _read_json(store, url)
    if cached and cached.get("scheme") == SCHEME:
        return DeliveryDays(
            **{k: cached[k] for k in ("version", "delivery_fingerprint", "days", "rows", "columns", "bytes", "error")}
        )
    computed = compute_delivery_days(store, source, delivery)
    if computed.error is None:  # never cache a failed read: it may be transient (a denied or flaky GET)
        # first_seen_at: when the pipeline first saw this delivery (M2), kept by every later reader
        _write_json(store, url, {"scheme": SCHEME, **dataclasses.asdict(computed), "first_seen_at": _now().isoformat()})
    return computed


def recorded_fingerprints(store: Store, lake_url: str, source: str, period: str) -> dict[str, str]:
    """day -> the content fingerprint its raw slice was last built from (days never built are absent)."""
    folder = join(lake_url, STATE_DIR, "fingerprints", f"source={source}", f"period={period}")
    out: dict[str, str] = {}
    for info in store.find(folder):
        if not info.url.endswith(".json"):
            continue
        document = _read_json(store, info.url) or {}
        raw = document.get("raw") or {}
        if raw.get("fingerprint") and document.get("date"):
            out[document["date"]] = raw["fingerprint"]
    return out


def changed_days(store: Store, source: SourceConfig, lake_url: str, delivery: Delivery) -> list[dt.date]:
    """Days of the delivery's period whose content differs from what their raw slice was built from."""
    days = delivery_day_fingerprints(store, source, delivery, lake_url)
    recorded = recorded_fingerprints(store, lake_url, source.name, delivery.billing_period)
    out = []
    for day in days_of_period(delivery.billing_period):
        new = days.fingerprint(day)
        old = recorded.get(day.isoformat())
        if old is None and new == ABSENT:
            continue  # never had data, still has none
        if new != old:
            out.append(day)
    return out


# ---- the builders, skipping what did not change -------------------------------------------------------


def _identity(store: Store, url: str) -> str:
    """What a published slice is (size + etag/mtime), or `absent`: ties a downstream slice to its input."""
    try:
        info = store.info(url)
    except (FileNotFoundError, OSError):
        return ABSENT
    return f"{info.size}:{info.etag or info.modified}"


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Decimal, dt.date, dt.datetime)):
        return str(obj)
    return obj


class ReusedSlice:
    """Marker mixin: the slice was left as it was because its input did not change."""

    reused = True


@dataclass
class ReusedRawSlice(RawSlice, ReusedSlice):
    pass


@dataclass
class ReusedNormalizedSlice(NormalizedSlice, ReusedSlice):
    pass


@dataclass
class ReusedEnrichedSlice(EnrichedSlice, ReusedSlice):
    pass


def is_reused(slice_result: object) -> bool:
    return bool(getattr(slice_result, "reused", False))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


def build_raw_slice_if_changed(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    guard: PublishGuard | None = None,
    accepted_via: str = "",
) -> RawSlice:
    """`build_raw_slice`, unless the current delivery holds exactly the rows the slice was built from.

    The decision reads the per-day fingerprint of the current delivery (cached), never the slice
    itself, so an unchanged source of a requested day is neither re-read nor rewritten. A slice held
    back (invariant 5) is recorded in the state's `held_back` section, which the `publish_guard`
    check reads; an operator's acceptance is recorded in `acceptances` with who, when and how.
    """
    started = time.monotonic()
    adapter = adapter_for(source.provider)
    store.invalidate(source.url)
    state = read_state(store, lake_url, source.name, day)
    previous = state.get("raw") or {}
    target = slice_url(lake_url, "raw_line_items", day, source.name)
    try:
        choice = choose_current(adapter.discover(store, source.name, source.url, period_of(day), source.format))
    except Exception as error:
        if is_access_denied(f"{type(error).__name__}: {error}"):
            state.setdefault("access", {})["denied_listings"] = (
                int((state.get("access") or {}).get("denied_listings", 0)) + 1
            )
            state["access"]["last_denied"] = f"{type(error).__name__}: {error}"[:300]
            write_state(store, lake_url, source.name, day, state)
        raise
    days: DeliveryDays | None = None
    if choice.current is not None:
        days = delivery_day_fingerprints(store, source, choice.current, lake_url)
        fingerprint = days.fingerprint(day)
        slice_present = _identity(store, target) != ABSENT
        if (
            previous.get("fingerprint") == fingerprint
            and days.error is None
            and not state.get("held_back")
            and slice_present == (int(previous.get("rows") or 0) > 0)
        ):
            if previous.get("confirmed_version", previous.get("version")) != choice.current.version:
                # same rows, another delivery: its own problems (and what it passed over) replace the old ones
                problems = current_delivery_problems(choice)
                previous["problems"] = [dataclasses.asdict(p) for p, _ in problems]
                previous["passed_over_versions"] = [d.version for d in choice.passed_over]
                write_records(
                    store,
                    lake_url,
                    day,
                    source.name,
                    [quarantine_record(source.name, day, problem, version, _now()) for problem, version in problems],
                    workdir,
                    "raw",
                )
            previous["confirmed_version"] = choice.current.version
            previous["confirmed_at"] = _now().isoformat()
            if choice.current.delivered_at:  # M1: a delivery made after the day ended confirms the day
                previous["confirmed_delivered_at"] = choice.current.delivered_at.isoformat()
            state["raw"] = previous
            write_state(store, lake_url, source.name, day, state)
            return _raw_from_state(source.name, day, previous)

    ingested_at = _now()
    try:
        result = build_raw_slice(source, day, store, lake_url, workdir, ingested_at=ingested_at, guard=guard)
    except DeliveryIncompleteError as error:
        state = read_state(store, lake_url, source.name, day)
        state["held_back"] = {
            "kind": "shrink"
            if isinstance(error, PublishHeldBackError)
            else ("drift" if isinstance(error, SchemaDriftError) else "incomplete"),
            "problems": [dataclasses.asdict(p) for p in error.problems],
            "reason": str(error)[:2000],
            "at": ingested_at.isoformat(),
            "version": choice.current.version if choice.current else None,
        }
        write_state(store, lake_url, source.name, day, state)
        raise
    used = result.delivery
    if used is None:
        fingerprint = ABSENT
    elif choice.current is not None and used == choice.current and days is not None:
        fingerprint = days.fingerprint(day)
    else:  # an older complete delivery stood in for a broken newer one: record what was really read
        fingerprint = delivery_day_fingerprints(store, source, used, lake_url).fingerprint(day)
    first_available = previous.get("first_available_at") or (ingested_at.isoformat() if result.rows else None)
    state = read_state(store, lake_url, source.name, day)
    state.pop("held_back", None)
    if result.accepted_by:
        state.setdefault("acceptances", []).append(
            {
                "by": result.accepted_by,
                "at": ingested_at.isoformat(),
                "via": accepted_via or "config",
                "version": result.version,
                "period": period_of(day),
                "published_rows_before": int(previous.get("rows") or 0),
                "rows": result.rows,
            }
        )
    state["raw"] = {
        "fingerprint": fingerprint,
        "version": result.version,
        "delivery_fingerprint": result.fingerprint,
        "delivered_at": result.delivered_at.isoformat() if result.delivered_at else None,
        "ingested_at": ingested_at.isoformat(),
        "first_available_at": first_available,
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
        "bytes_stored": 0 if _identity(store, target) == ABSENT else store.info(target).size,
        "compute_seconds": time.monotonic() - started,
        "writes": int(previous.get("writes") or 0) + 1,
    }
    write_state(store, lake_url, source.name, day, state)
    return result


def record_layer_outcome(
    store: Store, lake_url: str, source: str, day: dt.date, layer: str, error: BaseException | None
) -> None:
    """Invariant 6: a layer that failed for one source is recorded in the state (`failures`), where
    the `source_failures` check reads it, instead of failing the day for every source."""
    state = read_state(store, lake_url, source, day)
    failures = dict(state.get("failures") or {})
    if error is None and layer not in failures:
        return
    if error is None:
        failures.pop(layer)
    else:
        failures[layer] = {"reason": f"{type(error).__name__}: {error}"[:2000], "at": _now().isoformat()}
    state["failures"] = failures
    write_state(store, lake_url, source, day, state)


def _stale(section: dict[str, Any], built_from: str, target_present: bool) -> bool:
    result = section.get("result") or {}
    return section.get("built_from") != built_from or target_present != (int(result.get("rows") or 0) > 0)


def _record_layer(
    store: Store,
    lake_url: str,
    source: str,
    day: dt.date,
    layer: str,
    built_from: str,
    result: object,
    started: float,
    target: str,
) -> None:
    state = read_state(store, lake_url, source, day)
    previous = state.get(layer) or {}
    state[layer] = {
        "built_from": built_from,
        "result": _jsonable(result),
        "compute_seconds": time.monotonic() - started,
        "bytes_stored": 0 if _identity(store, target) == ABSENT else store.info(target).size,
        "built_at": _now().isoformat(),
        "writes": int(previous.get("writes") or 0) + 1,
    }
    write_state(store, lake_url, source, day, state)


def _restore(cls: type, values: dict[str, Any]) -> Any:
    """A slice result dataclass back from its JSON form (Decimals and dates re-typed)."""
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.name not in values:
            continue
        value = values[item.name]
        if item.name == "day":
            value = dt.date.fromisoformat(value)
        elif "cost" in item.name:
            value = Decimal(value)
        kwargs[item.name] = value
    return cls(**kwargs)


def build_normalized_slice_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
) -> NormalizedSlice:
    """`build_normalized_slice`, unless its raw slice is exactly the one it was built from."""
    started = time.monotonic()
    raw_identity = _identity(store, slice_url(lake_url, "raw_line_items", day, source.name))
    target = slice_url(lake_url, "normalized_line_items", day, source.name)
    section = read_state(store, lake_url, source.name, day).get("normalized") or {}
    if not _stale(section, raw_identity, _identity(store, target) != ABSENT):
        return _restore(ReusedNormalizedSlice, section["result"])
    result = build_normalized_slice(source, day, store, lake_url, workdir)
    _record_layer(store, lake_url, source.name, day, "normalized", raw_identity, result, started, target)
    return result


def policy_digest(policy: TagPolicy) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


def build_enriched_slice_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    policy: TagPolicy,
    workdir: Path,
) -> EnrichedSlice:
    """`build_enriched_slice`, unless its normalized slice and the tag policy are what it was built from."""
    started = time.monotonic()
    built_from = (
        _identity(store, slice_url(lake_url, "normalized_line_items", day, source.name)) + "|" + (policy_digest(policy))
    )
    target = slice_url(lake_url, "tag_enriched_costs", day, source.name)
    section = read_state(store, lake_url, source.name, day).get("enriched") or {}
    if not _stale(section, built_from, _identity(store, target) != ABSENT):
        return _restore(ReusedEnrichedSlice, section["result"])
    result = build_enriched_slice(source, day, store, lake_url, policy, workdir)
    _record_layer(store, lake_url, source.name, day, "enriched", built_from, result, started, target)
    return result


def invoices_digest(store: Store, invoices_url: str) -> str:
    files = store.find(invoices_url)
    return hashlib.sha256(listing_fingerprint(files).encode()).hexdigest()[:16]


def publish_reconciliation_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    config: BillingConfig,
    invoices: pl.DataFrame,
    invoices_id: str,
    workdir: Path,
) -> pl.DataFrame:
    """`publish_reconciliation`, unless its three input slices and the invoices are unchanged."""
    started = time.monotonic()
    lake_url = config.lake_url
    built_from = "|".join(
        [
            _identity(store, slice_url(lake_url, t, day, source.name))
            for t in ("raw_line_items", "normalized_line_items", "tag_enriched_costs")
        ]
        + [invoices_id, config.reconciliation.model_dump_json()]
    )
    target = slice_url(lake_url, "reconciliation_deltas", day, source.name)
    section = read_state(store, lake_url, source.name, day).get("reconciliation") or {}
    present = _identity(store, target) != ABSENT
    if not _stale(section, built_from, present):
        return pl.read_parquet(store.stage(target, workdir)) if present else pl.DataFrame(schema=RECONCILIATION_SCHEMA)
    frame = publish_reconciliation(source, day, store, lake_url, invoices, config.reconciliation, workdir)
    _record_layer(
        store, lake_url, source.name, day, "reconciliation", built_from, {"rows": frame.height}, started, target
    )
    return frame


__all__ = [
    "DeliveryDays",
    "build_enriched_slice_if_stale",
    "build_normalized_slice_if_stale",
    "build_raw_slice_if_changed",
    "changed_days",
    "delivery_day_fingerprints",
    "invoices_digest",
    "is_reused",
    "publish_reconciliation_if_stale",
    "read_state",
    "state_url",
]
