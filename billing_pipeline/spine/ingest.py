"""Per (day, source) slice builders: raw rows of the current delivery, then FOCUS rows.

These are plain functions (no Dagster) so that tests, the demo and the benchmark run exactly the
code the assets run. Every row of the current delivery ends in exactly one place: the normalized
slice, the duplicates quarantine, or the bad-row quarantine; every unusable file is copied to the
quarantine and recorded with its source, file and reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import Delivery, adapter_for, choose_current
from billing_pipeline.adapters.base import DeliveryChoice, EmptyExportFileError, FileProblem
from billing_pipeline.adapters.drift import SchemaObserver, text_cells
from billing_pipeline.platform.config import SourceConfig, TagPolicy
from billing_pipeline.platform.focus import LINEAGE_COLUMNS, MONEY, conform, validate_focus_file
from billing_pipeline.platform.lake import quarantine_url, quarantined_file_url, slice_url
from billing_pipeline.platform.storage import PARQUET_OPTIONS, ROW_GROUP_ROWS, Store
from billing_pipeline.spine.allocation import allocate_by_distinct_tags

log = logging.getLogger(__name__)

QUARANTINE_RECORD_SCHEMA = {
    "source": pl.String,
    "usage_date": pl.Date,
    "stage": pl.String,
    "kind": pl.String,
    "file_uri": pl.String,
    "export_version": pl.String,
    "reason": pl.String,
    "rows": pl.Int64,
    "quarantined_copy": pl.String,
    "detected_at": pl.Datetime("us", "UTC"),
}


class DeliveryIncompleteError(RuntimeError):
    """The current delivery of a billing period misses files: the day is held back, not published short."""

    def __init__(self, message: str, problems: list[FileProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])  # what was found on the way (recorded in the state for the SLIs)


class SchemaDriftError(DeliveryIncompleteError):
    """A column the adapter needs was renamed, removed or retyped: the source's day is held back (`drift`)."""


class PublishHeldBackError(DeliveryIncompleteError):
    """A new version would publish much less than the lake holds (empty, shrunk, or the source lists no
    delivery): it waits for an operator's acceptance; the published slice stays (invariant 5)."""


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


@dataclass
class NormalizedSlice:
    source: str
    day: dt.date
    rows: int = 0
    raw_rows: int = 0
    duplicate_rows: int = 0
    quarantined_rows: int = 0
    billed_cost: Decimal = Decimal(0)
    effective_cost: Decimal = Decimal(0)
    duplicate_cost: Decimal = Decimal(0)
    reasons: dict[str, int] = field(default_factory=dict)


def _lineage(source: SourceConfig, delivery: Delivery, file_uri: str, day: dt.date, ingested_at: dt.datetime):
    return [
        pl.lit(source.name, dtype=pl.String).alias("x_Source"),
        pl.lit(source.provider, dtype=pl.String).alias("x_Provider"),
        pl.lit(file_uri, dtype=pl.String).alias("x_FileUri"),
        pl.lit(delivery.version, dtype=pl.String).alias("x_ExportVersion"),
        pl.lit(delivery.delivered_at, dtype=pl.Datetime("us", "UTC")).alias("x_DeliveredAt"),
        pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")).alias("x_IngestedAt"),
        pl.lit(day, dtype=pl.Date).alias("x_UsageDate"),
    ]


def write_records(
    store: Store, lake_url: str, day: dt.date, source: str, records: list[dict], workdir: Path, stage: str
) -> None:
    """Replace this stage's quarantine records for the slice (other stages' records are kept)."""
    url = quarantine_url(lake_url, "records", day, source)
    new = pl.DataFrame(records, schema=QUARANTINE_RECORD_SCHEMA)
    if store.exists(url):
        old = pl.read_parquet(store.stage(url, workdir)).filter(pl.col("stage") != stage)
        new = pl.concat([old, new], how="vertical_relaxed")
    if new.height:
        store.write_parquet(new, url, workdir)
    else:
        store.remove(url)


def quarantine_record(
    source: str,
    day: dt.date,
    problem: FileProblem,
    version: str,
    at: dt.datetime,
    rows: int = 0,
    copy: str | None = None,
) -> dict:
    """One row of `quarantine/records` (raw stage): source, day, file, reason, kind."""
    return {
        "source": source,
        "usage_date": day,
        "stage": "raw",
        "kind": problem.kind,
        "file_uri": problem.file_uri,
        "export_version": version,
        "reason": problem.reason,
        "rows": rows,
        "quarantined_copy": copy,
        "detected_at": at,
    }


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


@dataclass(frozen=True)
class PublishGuard:
    """Invariant 5 for one (day, source): how far a new version may fall, and who accepted a fall."""

    max_shrink_fraction: float = 0.5
    accepted_by: str | None = None  # an operator accepted this source's billing period publishing less


@dataclass
class _Attempt:
    """One delivery read into local files, or the files that kept it from being read to its end."""

    published: Path
    bad_dates: Path | None
    files_read: int = 0
    unreadable: list[FileProblem] = field(default_factory=list)
    schemas: SchemaObserver | None = None

    @property
    def complete(self) -> bool:
        return not self.unreadable


def is_period_scoped(adapter: object, delivery: Delivery) -> bool:
    """A manifest-described delivery holds one billing period: rows dated outside it are bad rows.

    GCP is not (its files hold every usage month, invoiced by `invoice.month`), nor are plain folders.
    """
    return delivery.manifest_uri is not None and not getattr(adapter, "bills_by_invoice_month", False)


def partition_day(start: pl.Expr, billing_period: str, scoped: bool) -> pl.Expr:
    """The usage day a raw row is published under: its own, or (unparseable, or outside a scoped
    delivery's period) the period's first day, where the row is quarantined with its reason."""
    year, month = (int(part) for part in billing_period.split("-"))
    first = dt.date(year, month, 1)
    last = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
    date = start.dt.date()
    if scoped:
        date = pl.when(date.is_between(first, last)).then(date)
    return date.fill_null(first)


def build_raw_slice(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    ingested_at: dt.datetime | None = None,
    guard: PublishGuard | None = None,
) -> RawSlice:
    """Publish the day's rows of the source's current delivery, untouched, plus lineage columns.

    Never publishes less than the lake holds without an operator (invariant 5): a delivery with a
    file that cannot be read to its end is incomplete, so the previous complete delivery is used;
    with none, `DeliveryIncompleteError` names source, file and reason and the old slice stays.
    A new version that is empty or much smaller than the published one, or a source that lists no
    delivery where the lake has data, raises `PublishHeldBackError` unless `guard.accepted_by`.
    """
    adapter = adapter_for(source.provider)
    guard = guard or PublishGuard()
    ingested_at = ingested_at or dt.datetime.now(dt.UTC)
    period = day.strftime("%Y-%m")
    result = RawSlice(source=source.name, day=day)
    store.invalidate(source.url)
    deliveries = adapter.discover(store, source.name, source.url, period, source.format)
    records: list[dict] = []

    def record(problem: FileProblem, version: str, rows: int = 0, copy: str | None = None) -> None:
        result.problems.append(problem)
        records.append(quarantine_record(source.name, day, problem, version, ingested_at, rows, copy))

    target = slice_url(lake_url, "raw_line_items", day, source.name)
    seen: set[str] = set()
    unreadable: list[Delivery] = []
    attempt: _Attempt | None = None
    while True:
        choice = choose_current([d for d in deliveries if d not in unreadable])
        new = [d.version for d in choice.passed_over if d.version not in seen]
        seen.update(new)
        result.passed_over_versions += new
        for problem, version in current_delivery_problems(choice, include_current=False):
            if version in new:
                record(problem, version)
        if choice.current is None:
            break
        attempt = _read_delivery(adapter, source, choice.current, day, store, lake_url, workdir, ingested_at, record)
        if attempt.complete:
            break
        assert attempt.schemas is not None
        drift_records, drift_error = attempt.schemas.finish(day, ingested_at)
        if drift_error:  # a breaking schema change holds the source's day back (drift.py), named as such
            write_records(store, lake_url, day, source.name, records + drift_records, workdir, "raw")
            raise SchemaDriftError(drift_error, result.problems)
        unreadable.append(choice.current)
        seen.add(choice.current.version)
        result.passed_over_versions.append(choice.current.version)
        log.warning(
            "source %r: delivery %s is incomplete (a file cannot be read to its end); trying the previous complete one",
            source.name,
            choice.current.version,
        )
        attempt = None

    if attempt is None:  # nothing complete and readable to publish from
        write_records(store, lake_url, day, source.name, records, workdir, "raw")
        problems = [p for p in result.problems if p.kind not in ("outside_prefix", "listed_twice")]
        if choice.held_back or unreadable:
            details = "; ".join(p.describe(source.name) for p in problems)
            raise DeliveryIncompleteError(
                f"source {source.name!r}: no complete delivery for billing period {period}, day {day} held back "
                f"(the published slice is kept): {details}",
                result.problems,
            )
        published_rows = _published_rows(store, target, workdir)
        if published_rows and guard.accepted_by is None:
            reason = (
                f"source {source.name!r}: {source.url} lists no delivery for billing period {period} "
                f"but the lake holds {published_rows} rows of {day}; held back (the published slice is kept) "
                f"until an operator accepts {source.name}:{period}"
            )
            record(FileProblem(source.url, reason, "held_back"), "none")
            write_records(store, lake_url, day, source.name, records, workdir, "raw")
            raise PublishHeldBackError(reason, result.problems)
        if published_rows:
            result.accepted_by = guard.accepted_by
        store.remove(target)
        return result

    delivery = choice.current
    assert delivery is not None
    result.delivery = delivery
    result.version = delivery.version
    result.delivered_at = delivery.delivered_at
    result.fingerprint = delivery.fingerprint
    result.files_read = attempt.files_read
    for problem in delivery.problems:
        record(problem, delivery.version)

    if attempt.bad_dates is not None and attempt.bad_dates.exists():
        bad_rows = pl.scan_parquet(attempt.bad_dates)
        count = bad_rows.select(pl.len()).collect().item()
        result.bad_date_rows = count
        if count:
            store.write_parquet(
                text_cells(bad_rows),
                quarantine_url(lake_url, "bad_dates", day, source.name),
                workdir,
            )
            record(
                FileProblem(source.url, f"{count} rows with an unparseable usage start date", "bad_date"),
                delivery.version,
                rows=count,
            )

    assert attempt.schemas is not None
    drift_records, drift_error = attempt.schemas.finish(day, ingested_at)
    published = attempt.published
    new_rows = pl.scan_parquet(published).select(pl.len()).collect().item() if published.exists() else 0
    shrink = None if drift_error else _shrink(adapter, store, target, published, new_rows, guard, workdir)
    if shrink and guard.accepted_by is None:
        reason = (
            f"source {source.name!r}, day {day}: delivery {delivery.version} {shrink}; held back (the "
            f"published slice is kept) until an operator accepts {source.name}:{period}"
        )
        record(FileProblem(delivery.manifest_uri or source.url, reason, "held_back"), delivery.version)
    elif shrink:
        result.accepted_by = guard.accepted_by
        record(
            FileProblem(
                delivery.manifest_uri or source.url,
                f"{shrink}; published as accepted by {guard.accepted_by}",
                "accepted",
            ),
            delivery.version,
        )
    write_records(store, lake_url, day, source.name, records + drift_records, workdir, "raw")
    if drift_error:
        published.unlink(missing_ok=True)
        raise SchemaDriftError(drift_error, result.problems)
    if shrink and guard.accepted_by is None:
        published.unlink(missing_ok=True)
        raise PublishHeldBackError(reason, result.problems)
    if not new_rows:
        store.remove(target)
        return result
    result.rows = new_rows
    store.publish_file(published, target)
    return result


def _published_rows(store: Store, target: str, workdir: Path) -> int:
    """Rows of the published slice (its footer), 0 when there is none."""
    if not store.exists(target):
        return 0
    return pl.scan_parquet(store.stage(target, workdir)).select(pl.len()).collect().item()


def _abs_billed(adapter: object, frame: pl.LazyFrame) -> Decimal:
    value = adapter.raw_totals(frame).select(pl.col("cost").abs().sum()).collect().item()  # type: ignore[attr-defined]
    return Decimal(value) if value is not None else Decimal(0)


def _shrink(
    adapter: object, store: Store, target: str, new_file: Path, new_rows: int, guard: PublishGuard, workdir: Path
) -> str | None:
    """Why the new version publishes much less than the published one (None: it does not)."""
    if not store.exists(target):
        return None
    old = pl.scan_parquet(store.stage(target, workdir))
    old_rows = old.select(pl.len()).collect().item()
    if not old_rows:
        return None
    if not new_rows:
        return f"has no rows for this day where the published slice has {old_rows}"
    keep = 1 - guard.max_shrink_fraction
    if new_rows < old_rows * keep:
        return (
            f"has {new_rows} rows for this day against {old_rows} published (a fall of more than "
            f"{guard.max_shrink_fraction:.0%})"
        )
    old_cost, new_cost = _abs_billed(adapter, old), _abs_billed(adapter, pl.scan_parquet(new_file))
    if new_cost < old_cost * Decimal(str(keep)):
        return (
            f"has an absolute billed cost of {new_cost.normalize():f} for this day against "
            f"{old_cost.normalize():f} published (a fall of more than {guard.max_shrink_fraction:.0%})"
        )
    return None


def _read_delivery(
    adapter: object,
    source: SourceConfig,
    delivery: Delivery,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    ingested_at: dt.datetime,
    record: Callable[..., None],
) -> _Attempt:
    """Read the day's rows of one delivery to local files in one streaming pass; quarantine every file
    that cannot be read to its end (the attempt is then incomplete and nothing of it is published)."""
    first_day_of_period = day.day == 1
    scoped = is_period_scoped(adapter, delivery)
    attempt = _Attempt(
        published=workdir / f"raw-{source.name}-{_safe(delivery.version)}.parquet",
        bad_dates=workdir / f"baddate-{source.name}-{_safe(delivery.version)}.parquet",
    )
    attempt.schemas = SchemaObserver(source.provider, source.name, delivery, store, lake_url)
    day_rows: list[pl.LazyFrame] = []
    bad_date_frames: list[pl.LazyFrame] = []
    readable: list[str] = []

    def quarantine_file(file_uri: str, error: Exception) -> None:
        reason = f"unreadable export file: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        kind = "empty" if isinstance(error, EmptyExportFileError) else "unreadable"
        copy = quarantined_file_url(lake_url, source.name, delivery.version, file_uri)
        try:
            store.copy_in(file_uri, copy)
        except Exception:  # noqa: BLE001
            copy = None
        problem = FileProblem(file_uri, f"{reason} (delivery {delivery.version} is incomplete)", kind)
        attempt.unreadable.append(problem)
        record(problem, delivery.version, copy=copy)
        log.warning("%s", problem.describe(source.name))

    for file_uri in delivery.files:
        try:
            frame = adapter.read(store.stage(file_uri, workdir), delivery.file_format)  # type: ignore[attr-defined]
            schema = frame.collect_schema()
            attempt.schemas.observe(file_uri, schema, frame)
            start = adapter.usage_start(schema)  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - reported with source, file and reason
            quarantine_file(file_uri, error)
            continue
        frame = frame.with_columns(_lineage(source, delivery, file_uri, day, ingested_at))
        readable.append(file_uri)
        day_rows.append(
            frame.filter(start.is_not_null() & (partition_day(start, delivery.billing_period, scoped) == day))
        )
        if first_day_of_period:
            bad_date_frames.append(
                frame.filter(start.is_null()).with_columns(
                    pl.lit(f"unparseable usage start date in {file_uri}").alias("_reason")
                )
            )
    if attempt.unreadable:
        return attempt

    def write_local(rows: list[pl.LazyFrame], bad: list[pl.LazyFrame]) -> None:
        if rows:
            _concat(rows).sink_parquet(attempt.published, **PARQUET_OPTIONS)
        if bad:
            _concat(bad).sink_parquet(attempt.bad_dates, **PARQUET_OPTIONS)

    try:
        write_local(day_rows, bad_date_frames)  # one streaming pass: every file read and written once
    except Exception:  # noqa: BLE001 - a file broken past its footer: find it, file by file
        attempt.published.unlink(missing_ok=True)
        attempt.bad_dates.unlink(missing_ok=True)
        day_rows, bad_date_frames, readable = _isolate_unreadable(
            readable, day_rows, bad_date_frames, workdir, source.name, quarantine_file
        )
        if attempt.unreadable:
            return attempt
        write_local(day_rows, bad_date_frames)
    attempt.files_read = len(readable)
    return attempt


def _safe(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """Files of one delivery may differ in columns (drift, legacy assemblies): union them by name."""
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _isolate_unreadable(
    files: list[str],
    day_rows: list[pl.LazyFrame],
    bad_date_frames: list[pl.LazyFrame],
    workdir: Path,
    source: str,
    quarantine_file: Callable[[str, Exception], None],
) -> tuple[list[pl.LazyFrame], list[pl.LazyFrame], list[str]]:
    """Read each file in full on its own; quarantine the ones that fail, keep the rest as local parts.

    The slow path, taken only when the one-pass read of a delivery failed (a file whose footer is
    sound but whose data pages are not): it names the broken file, which makes the delivery incomplete.
    """
    kept_rows: list[pl.LazyFrame] = []
    kept_bad: list[pl.LazyFrame] = []
    kept_files: list[str] = []
    has_bad_dates = len(bad_date_frames) == len(files)
    for index, file_uri in enumerate(files):
        part = workdir / f"raw-{source}-{index}.parquet"
        bad_part = workdir / f"baddate-{source}-{index}.parquet"
        try:
            day_rows[index].sink_parquet(part, **PARQUET_OPTIONS)
            if has_bad_dates:
                bad_date_frames[index].sink_parquet(bad_part, **PARQUET_OPTIONS)
        except Exception as error:  # noqa: BLE001 - one bad file never crashes the day
            part.unlink(missing_ok=True)
            bad_part.unlink(missing_ok=True)
            quarantine_file(file_uri, error)
            continue
        kept_rows.append(pl.scan_parquet(part))
        if has_bad_dates:
            kept_bad.append(pl.scan_parquet(bad_part))
        kept_files.append(file_uri)
    return kept_rows, kept_bad, kept_files


def _sum(frame: pl.LazyFrame, column: str) -> Decimal:
    value = frame.select(pl.col(column).cast(MONEY).sum()).collect().item()
    return Decimal(value) if value is not None else Decimal(0)


# FOCUS rows of the rows whose key hash repeats are held in memory up to this many (one read of
# the raw file); beyond it (a whole delivery sent twice) they stay lazy and stream.
CANDIDATES_IN_MEMORY = 250_000


def _rows_in_blocks(raw: pl.LazyFrame, row_ids: pl.Series) -> pl.LazyFrame:
    """The rows `row_ids` of the raw slice, reading only the blocks of rows that hold them.

    Each block is a slice, which polars pushes down to the Parquet reader, so the row groups without
    a wanted row are not decoded (repeated rows usually cluster: a file delivered twice).
    """
    blocks = (row_ids // ROW_GROUP_ROWS).unique().sort()
    pieces = [raw.slice(int(block) * ROW_GROUP_ROWS, ROW_GROUP_ROWS) for block in blocks]
    return pl.concat(pieces).filter(pl.col("x_RawRow").is_in(row_ids.implode()))


def _repeated_rows(
    raw: pl.LazyFrame, to_focus: Callable[[pl.LazyFrame], pl.LazyFrame], key: list[str], decisions: pl.DataFrame
) -> tuple[pl.Series, pl.LazyFrame]:
    """The rows that repeat an earlier row's key, compared exactly, and their FOCUS rows.

    Exact, and light on memory at tens of millions of rows: the decision pass hashed every key to
    64 bits; only rows whose hash repeats are mapped again, from their raw rows, and compared on
    their real key values (the mapping does not let a row filter through, so filtering the whole
    day's FOCUS rows would map every row again).
    """
    candidates = decisions.filter(pl.col("_keyed") & pl.col("_h").is_duplicated()).get_column("x_RawRow")
    if candidates.is_empty():
        return pl.Series("x_RawRow", [], dtype=pl.UInt32), pl.LazyFrame()
    subset = _rows_in_blocks(raw, candidates)  # filtered before it is mapped
    focus = to_focus(subset).filter(pl.col("_bad_reason").is_null()).drop("_bad_reason")
    if candidates.len() <= CANDIDATES_IN_MEMORY:
        focus = focus.collect(engine="streaming").lazy()
    keys = focus.select("x_RawRow", *key).collect(engine="streaming").sort("x_RawRow")
    repeated = keys.filter(~pl.struct(key).is_first_distinct()).get_column("x_RawRow")
    return repeated, focus.filter(pl.col("x_RawRow").is_in(repeated.implode()))


def whole_row_key(focus_schema: pl.Schema) -> list[str]:
    """Every delivered column of a FOCUS row, lineage and derived columns aside: a row's identity
    when nothing else identifies it (a file delivered twice under two names repeats all of it)."""
    derived = ("x_RawRow", "x_TagList")
    return [c for c in focus_schema if c not in LINEAGE_COLUMNS and c not in derived and not c.startswith("_")]


def _with_out_of_period_reasons(
    adapter: object, raw: pl.LazyFrame, day: dt.date, decisions: pl.DataFrame
) -> pl.DataFrame:
    """Rows published under `day` but dated elsewhere (outside their delivery's billing period, see
    `partition_day`) become bad rows whose reason names the column and the value."""
    start = adapter.usage_start(raw.collect_schema())  # type: ignore[attr-defined]
    column = (start.meta.root_names() or ["usage start"])[0]
    out = (
        raw.select(
            "x_RawRow",
            pl.format(
                "usage date {} in {} outside the billing period {} of its delivery",
                pl.col(column).cast(pl.String),
                pl.lit(column),
                pl.lit(day.strftime("%Y-%m")),
            ).alias("_out"),
            start.dt.date().alias("_date"),
        )
        .filter(pl.col("_date").is_not_null() & (pl.col("_date") != day))
        .drop("_date")
        .collect(engine="streaming")
    )
    if out.is_empty():
        return decisions
    return (
        decisions.join(out, on="x_RawRow", how="left", maintain_order="left")
        .with_columns(pl.coalesce("_bad_reason", "_out").alias("_bad_reason"))
        .drop("_out")
    )


def build_normalized_slice(
    source: SourceConfig, day: dt.date, store: Store, lake_url: str, workdir: Path
) -> NormalizedSlice:
    """FOCUS rows from the day's raw slice: typed, deduplicated, conformed; the rest quarantined.

    Two passes over the raw slice: a narrow one (row id, bad-row reason, key hash) that decides
    which rows are quarantined or duplicates, then the full mapping of the rows that stay, streamed
    to the published file. Quarantined and duplicate rows are few, written from row-id filters.
    """
    adapter = adapter_for(source.provider)
    result = NormalizedSlice(source=source.name, day=day)
    raw_url = slice_url(lake_url, "raw_line_items", day, source.name)
    target = slice_url(lake_url, "normalized_line_items", day, source.name)
    rows_url = quarantine_url(lake_url, "rows", day, source.name)
    dups_url = quarantine_url(lake_url, "duplicates", day, source.name)
    if not store.exists(raw_url):
        for url in (target, rows_url, dups_url):
            store.remove(url)
        return result
    raw = pl.scan_parquet(store.stage(raw_url, workdir)).with_row_index("x_RawRow")
    focus = adapter.to_focus(raw)
    focus_schema = focus.drop("_bad_reason").collect_schema()
    key = adapter.dedup_key(focus_schema)
    row_key = whole_row_key(focus_schema)
    # A key of every delivered column compares nulls as equal (a FOCUS row is mostly nulls); an id key
    # (AWS) decides only where the id is there, and rows without one are compared on every column.
    keyed = pl.lit(True) if set(row_key) <= set(key) else pl.all_horizontal([pl.col(c).is_not_null() for c in key])
    decisions = focus.select(
        "x_RawRow",
        "_bad_reason",
        pl.struct(key).hash(seed=0).alias("_h"),
        keyed.alias("_keyed"),
    ).collect(engine="streaming")
    decisions = _with_out_of_period_reasons(adapter, raw, day, decisions)
    result.raw_rows = decisions.height

    bad_ids = decisions.filter(pl.col("_bad_reason").is_not_null()).select("x_RawRow", "_bad_reason")
    result.quarantined_rows = bad_ids.height
    if bad_ids.height:
        result.reasons = dict(bad_ids.group_by("_bad_reason").len().sort("_bad_reason").iter_rows())
        raw_bad = text_cells(raw.join(bad_ids.lazy(), on="x_RawRow"))
        store.write_parquet(raw_bad.rename({"_bad_reason": "reason"}), rows_url, workdir)
    else:
        store.remove(rows_url)

    clean = decisions.filter(pl.col("_bad_reason").is_null())
    duplicate_ids, dropped = _repeated_rows(raw, adapter.to_focus, key, clean)
    unkeyed = clean.filter(~pl.col("_keyed")).with_columns(pl.lit(True).alias("_keyed"))
    if unkeyed.height > 1:  # rows without an id: a duplicate only when equal in every column
        more_ids, more = _repeated_rows(raw, adapter.to_focus, row_key, unkeyed)
        if more_ids.len():
            duplicate_ids = pl.concat([duplicate_ids, more_ids])
            dropped = (
                pl.concat([dropped, more], how="diagonal_relaxed") if duplicate_ids.len() > more_ids.len() else more
            )
    excluded = pl.concat([bad_ids.get_column("x_RawRow"), duplicate_ids]).implode()
    result.duplicate_rows = duplicate_ids.len()
    if result.duplicate_rows:
        store.write_parquet(conform(dropped), dups_url, workdir)
        result.duplicate_cost = _sum(pl.scan_parquet(store.stage(dups_url, workdir)), "BilledCost")
    else:
        store.remove(dups_url)
    publishable = workdir / f"normalized-{source.name}.parquet"
    kept = focus.filter(~pl.col("x_RawRow").is_in(excluded)).drop("_bad_reason")
    conform(kept).sink_parquet(publishable, **PARQUET_OPTIONS)
    result.rows = validate_focus_file(str(publishable))
    totals = (
        pl.scan_parquet(publishable)
        .select(
            pl.col("BilledCost").sum().alias("billed"),
            pl.col("EffectiveCost").sum().alias("effective"),
        )
        .collect()
    )
    result.billed_cost = Decimal(totals["billed"].item() or 0)
    result.effective_cost = Decimal(totals["effective"].item() or 0)
    store.publish_file(publishable, target)
    return result


@dataclass
class EnrichedSlice:
    source: str
    day: dt.date
    rows: int = 0
    billed_cost: Decimal = Decimal(0)
    unallocated_cost: Decimal = Decimal(0)
    by_rule: dict[str, int] = field(default_factory=dict)
    # per BillingCurrency: {"billed": ..., "unallocated": ...}; shares are taken per currency, never across
    by_currency: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def build_enriched_slice(
    source: SourceConfig, day: dt.date, store: Store, lake_url: str, policy: TagPolicy, workdir: Path
) -> EnrichedSlice:
    """Normalized rows plus the tag policy's allocation, published atomically."""
    result = EnrichedSlice(source=source.name, day=day)
    normalized_url = slice_url(lake_url, "normalized_line_items", day, source.name)
    target = slice_url(lake_url, "tag_enriched_costs", day, source.name)
    if not store.exists(normalized_url):
        store.remove(target)
        return result
    enriched = allocate_by_distinct_tags(pl.scan_parquet(store.stage(normalized_url, workdir)), policy)
    local = workdir / f"enriched-{source.name}.parquet"
    enriched.sink_parquet(local, **PARQUET_OPTIONS)
    frame = pl.scan_parquet(local)
    totals = (
        frame.group_by(pl.col("BillingCurrency").fill_null(""))
        .agg(
            pl.len().alias("rows"),
            pl.col("BilledCost").sum().alias("billed"),
            pl.col("BilledCost").filter(pl.col("unallocated")).sum().alias("unallocated"),
        )
        .collect()
    )
    result.rows = int(totals["rows"].sum())
    result.by_currency = {
        currency: {"billed": Decimal(billed or 0), "unallocated": Decimal(unallocated or 0)}
        for currency, _, billed, unallocated in totals.sort("BillingCurrency").iter_rows()
    }
    result.billed_cost = sum((m["billed"] for m in result.by_currency.values()), Decimal(0))
    result.unallocated_cost = sum((m["unallocated"] for m in result.by_currency.values()), Decimal(0))
    rules = frame.group_by("allocation_rule").len().collect(engine="streaming")  # a handful of distinct rules
    result.by_rule = dict(
        rules.group_by(pl.col("allocation_rule").str.extract(r"^([a-z]+)", 1).fill_null("unallocated"))
        .agg(pl.col("len").sum())
        .sort("allocation_rule")
        .iter_rows()
    )
    store.publish_file(local, target)
    return result
