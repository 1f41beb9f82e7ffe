"""Building a raw slice from one listing of the landing zone: the day's rows of the current delivery.

Rows are published untouched, plus lineage columns. An incomplete delivery is passed over for the
previous complete one; nothing is published that would break invariant 5 (`guard.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from billing_pipeline.adapters import Adapter, Delivery, DeliveryChoice, FileProblem, adapter_for, choose_current
from billing_pipeline.adapters.drift import text_cells
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import RAW
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.calendar import period_of
from billing_pipeline.spine.guard import (
    DeliveryIncompleteError,
    PublishGuard,
    PublishHeldBackError,
    SchemaDriftError,
    published_rows,
    shrink_reason,
)
from billing_pipeline.spine.quarantine import quarantine_record, write_records
from billing_pipeline.spine.raw_read import DeliveryRead, ParsedFiles, read_delivery

if TYPE_CHECKING:
    from billing_pipeline.spine.fingerprint import DeliveryDays

log = logging.getLogger(__name__)


@dataclass
class RawSlice:
    """What building one raw slice found: counts, the version read, and every problem."""

    source: str
    day: dt.date
    rows: int = 0
    version: str | None = None
    delivered_at: dt.datetime | None = None
    files_read: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    bad_date_rows: int = 0
    passed_over_versions: list[str] = field(default_factory=list)
    fingerprint: str = ""
    delivery: Delivery | None = None  # the delivery the slice was built from
    accepted_by: str | None = None  # the operator whose acceptance let a smaller version through

    @property
    def quarantined_files(self) -> int:
        return sum(1 for p in self.problems if p.kind in ("unreadable", "outside_prefix", "empty"))


def current_delivery_problems(choice: DeliveryChoice, include_current: bool = True) -> list[tuple[FileProblem, str]]:
    """The problems of a choice as the raw step records them: each passed-over delivery's (an empty one
    says so), then the current delivery's own (files refused or listed twice)."""
    out: list[tuple[FileProblem, str]] = []
    for passed in choice.passed_over:
        for problem in passed.problems or (
            FileProblem(passed.manifest_uri or passed.version, "delivery lists no data files (empty export)", "empty"),
        ):
            out.append((problem, passed.version))
    if include_current and choice.current is not None:
        out += [(problem, choice.current.version) for problem in choice.current.problems]
    return out


@dataclass
class _RawBuild:
    """One raw build of a (day, source): where it reads and writes, and what it found so far."""

    source: SourceConfig
    day: dt.date
    store: Store
    lake_url: str
    workdir: Path
    ingested_at: dt.datetime
    guard: PublishGuard
    result: RawSlice
    records: list[dict] = field(default_factory=list)

    @property
    def target(self) -> str:
        return slice_url(self.lake_url, RAW, self.day, self.source.name)

    @property
    def period(self) -> str:
        return period_of(self.day)

    def record(self, problem: FileProblem, version: str, rows: int = 0, copy: str | None = None) -> None:
        """A problem of the slice, and its quarantine record."""
        self.result.problems.append(problem)
        self.records.append(
            quarantine_record(self.source.name, self.day, problem, version, self.ingested_at, rows, copy)
        )

    def write_records(self, extra: list[dict] | None = None) -> None:
        write_records(
            self.store, self.lake_url, self.day, self.source.name, self.records + (extra or []), self.workdir, "raw"
        )


def publish_raw_slice(
    source: SourceConfig,
    day: dt.date,
    deliveries: list[Delivery],
    store: Store,
    lake_url: str,
    workdir: Path,
    ingested_at: dt.datetime,
    guard: PublishGuard,
    index: DeliveryDays | None = None,
    parsed: ParsedFiles | None = None,
) -> RawSlice:
    """Publish the day's rows of the current one of `deliveries`, untouched, plus lineage columns.

    `index`, the current delivery's per-day fingerprints, says which of its files hold rows of the day:
    only those are read (`read_delivery`); `parsed`, its files the fingerprint pass already parsed.

    Never publishes less than the lake holds without an operator (invariant 5): a delivery with a
    file that cannot be read to its end is incomplete, so the previous complete delivery is used;
    with none, `DeliveryIncompleteError` names source, file and reason and the old slice stays.
    A new version that is empty or much smaller than the published one, or a source that lists no
    delivery where the lake has data, raises `PublishHeldBackError` unless `guard.accepted_by`.
    """
    build = _RawBuild(source, day, store, lake_url, workdir, ingested_at, guard, RawSlice(source.name, day))
    adapter = adapter_for(source.provider)
    choice, read, unreadable = _read_first_complete(build, adapter, deliveries, index, parsed)
    if read is None or choice.current is None:
        return _publish_without_delivery(build, choice, unreadable)
    return _publish_read(build, adapter, choice.current, read)


def _read_first_complete(
    build: _RawBuild,
    adapter: Adapter,
    deliveries: list[Delivery],
    index: DeliveryDays | None,
    parsed: ParsedFiles | None,
) -> tuple[DeliveryChoice, DeliveryRead | None, list[Delivery]]:
    """Read the current delivery; while it is incomplete, pass it over and read the next current one.

    Returns the last choice, its complete read (None: nothing complete to read) and the deliveries
    passed over as unreadable.
    """
    seen: set[str] = set()
    unreadable: list[Delivery] = []
    while True:
        choice = choose_current([d for d in deliveries if d not in unreadable])
        _record_passed_over(build, choice, seen)
        if choice.current is None:
            return choice, None, unreadable
        read = read_delivery(
            adapter,
            build.source,
            choice.current,
            build.day,
            build.store,
            build.lake_url,
            build.workdir,
            build.ingested_at,
            build.record,
            index,  # an older delivery read in its place is not the one it indexes: read in full
            parsed,
        )
        if read.complete:
            return choice, read, unreadable
        _raise_on_breaking_drift(build, read)
        unreadable.append(choice.current)
        seen.add(choice.current.version)
        build.result.passed_over_versions.append(choice.current.version)
        log.warning(
            "source %r: delivery %s is incomplete (a file cannot be read to its end); trying the previous complete one",
            build.source.name,
            choice.current.version,
        )


def _record_passed_over(build: _RawBuild, choice: DeliveryChoice, seen: set[str]) -> None:
    """Record the deliveries this choice passed over that no earlier choice did, with their problems."""
    new = [d.version for d in choice.passed_over if d.version not in seen]
    seen.update(new)
    build.result.passed_over_versions += new
    for problem, version in current_delivery_problems(choice, include_current=False):
        if version in new:
            build.record(problem, version)


def _raise_on_breaking_drift(build: _RawBuild, read: DeliveryRead) -> None:
    """A breaking schema change holds the source's day back (drift.py), named as such."""
    drift_records, drift_error = read.schemas.finish(build.day, build.ingested_at)
    if drift_error:
        build.write_records(drift_records)
        raise SchemaDriftError(drift_error, build.result.problems)


def _publish_without_delivery(build: _RawBuild, choice: DeliveryChoice, unreadable: list[Delivery]) -> RawSlice:
    """Nothing complete and readable to publish from: hold the day back, or (accepted) remove the slice."""
    source, result = build.source, build.result
    build.write_records()
    if choice.held_back or unreadable:
        problems = [p for p in result.problems if p.kind not in ("outside_prefix", "listed_twice")]
        details = "; ".join(p.describe(source.name) for p in problems)
        raise DeliveryIncompleteError(
            f"source {source.name!r}: no complete delivery for billing period {build.period}, day {build.day} "
            f"held back (the published slice is kept): {details}",
            result.problems,
        )
    rows = published_rows(build.store, build.target, build.workdir, build.guard.recorded_rows)
    if rows and build.guard.accepted_by is None:
        reason = (
            f"source {source.name!r}: {source.url} lists no delivery for billing period {build.period} "
            f"but the lake holds {rows} rows of {build.day}; held back (the published slice is kept) "
            f"until an operator accepts {source.name}:{build.period}"
        )
        build.record(FileProblem(source.url, reason, "held_back"), "none")
        build.write_records()
        raise PublishHeldBackError(reason, result.problems)
    if rows:
        result.accepted_by = build.guard.accepted_by
    build.store.remove(build.target)
    return result


def _publish_read(build: _RawBuild, adapter: Adapter, delivery: Delivery, read: DeliveryRead) -> RawSlice:
    """Publish a complete read of `delivery`, unless its schema broke or it shrinks without acceptance."""
    result = build.result
    result.delivery = delivery
    result.version = delivery.version
    result.delivered_at = delivery.delivered_at
    result.fingerprint = delivery.fingerprint
    result.files_read = read.files_read
    for problem in delivery.problems:
        build.record(problem, delivery.version)
    _quarantine_bad_dates(build, delivery, read)
    drift_records, drift_error = read.schemas.finish(build.day, build.ingested_at)
    new_rows = pl.scan_parquet(read.published).select(pl.len()).collect().item() if read.published.exists() else 0
    shrink = None
    if not drift_error:
        shrink = shrink_reason(adapter, build.store, build.target, read.published, new_rows, build.guard, build.workdir)
    held_back = _judge_shrink(build, delivery, shrink) if shrink else None
    build.write_records(drift_records)
    if drift_error:
        read.published.unlink(missing_ok=True)
        raise SchemaDriftError(drift_error, result.problems)
    if held_back:
        read.published.unlink(missing_ok=True)
        raise PublishHeldBackError(held_back, result.problems)
    if not new_rows:
        build.store.remove(build.target)
        return result
    result.rows = new_rows
    build.store.publish_file(read.published, build.target)
    return result


def _quarantine_bad_dates(build: _RawBuild, delivery: Delivery, read: DeliveryRead) -> None:
    """Rows whose usage start cannot be parsed (read on the period's first day) go to the quarantine."""
    if not read.bad_dates.exists():
        return
    bad_rows = pl.scan_parquet(read.bad_dates)
    count = bad_rows.select(pl.len()).collect().item()
    build.result.bad_date_rows = count
    if count:
        url = quarantine_url(build.lake_url, "bad_dates", build.day, build.source.name)
        build.store.write_parquet(text_cells(bad_rows), url, build.workdir)
        build.record(
            FileProblem(build.source.url, f"{count} rows with an unparseable usage start date", "bad_date"),
            delivery.version,
            rows=count,
        )


def _judge_shrink(build: _RawBuild, delivery: Delivery, shrink: str) -> str | None:
    """Record a shrinking version: held back (returns the reason) or published as accepted (None)."""
    where = delivery.manifest_uri or build.source.url
    name, accepted_by = build.source.name, build.guard.accepted_by
    if accepted_by is None:
        reason = (
            f"source {name!r}, day {build.day}: delivery {delivery.version} {shrink}; held back (the "
            f"published slice is kept) until an operator accepts {name}:{build.period}"
        )
        build.record(FileProblem(where, reason, "held_back"), delivery.version)
        return reason
    build.result.accepted_by = accepted_by
    build.record(FileProblem(where, f"{shrink}; published as accepted by {accepted_by}", "accepted"), delivery.version)
    return None
