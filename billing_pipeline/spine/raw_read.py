"""Reading one delivery's rows of a day into local files, in one streaming pass.

Every file that cannot be read to its end is copied to the quarantine and makes the delivery
incomplete: nothing of an incomplete delivery is published (the raw step then tries the previous one).

Given the delivery's per-file day index (`fingerprint.DeliveryDays.file_days`), only the files holding
rows of the day are read: an append-only GCP export lists every file from the period on, and reading
them all for each day made a backfill quadratic. A file whose days are unknown (it could not be read)
is read as before, and so quarantined for every day it could affect.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from billing_pipeline.adapters import Adapter, Delivery, FileProblem
from billing_pipeline.adapters.base import EmptyExportFileError, detect_format
from billing_pipeline.adapters.drift import SchemaObserver
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.lake import quarantined_file_url
from billing_pipeline.platform.storage import PARQUET_OPTIONS, Store
from billing_pipeline.spine.calendar import is_period_scoped, partition_day

if TYPE_CHECKING:
    from billing_pipeline.spine.fingerprint import DeliveryDays

log = logging.getLogger(__name__)

# record(problem, version, rows=0, copy=None): how the raw step collects a problem and its quarantine record
Recorder = Callable[..., None]

# A CSV delivery's raw slice is every delivered column as text (legacy CUR: about 100 columns), and a
# reader decodes a whole row group of every column it reads at once: at 100,000 rows that held ~800 MiB
# when the normalized step read a 640,500-row legacy CUR slice (941 MiB peak for the mapping); 25,000-row
# groups hold 583 MiB and the mapping peaked at 588 MiB, 20 % faster (README "Performance").
TEXT_ROW_GROUP_ROWS = 25_000


# The local copy of a parsed CSV file (`ParsedFiles`) is read twice, by the fingerprint hash of every column
# and by the raw read: at 25,000-row groups the raw stage of the 640,500-row legacy CUR day peaked at 552 MiB
# (445 MiB when it parsed the CSV twice), at 10,000 at 425 MiB, for the same CPU (README "Performance").
PARSED_ROW_GROUP_ROWS = 10_000


def raw_parquet_options(all_text: bool) -> dict[str, object]:
    """Parquet options of a raw slice: smaller row groups when every delivered column is text (CSV)."""
    return {**PARQUET_OPTIONS, "row_group_size": TEXT_ROW_GROUP_ROWS} if all_text else PARQUET_OPTIONS


def _read_as_parquet(delivery: Delivery, file_uri: str) -> bool:
    """Read from Parquet columns, not parsed from text: the adapters' own reading of a file's format (a name
    no reader knows, such as GCP's `.json`, is text)."""
    try:
        return detect_format(file_uri, delivery.file_format) == "parquet"
    except ValueError:
        return False


@dataclass
class ParsedFiles:
    """Local Parquet copies of one delivery's text files (CSV, JSON lines), made by the fingerprint pass and
    read by the raw read of the same build, so a text delivery new to the lake is parsed once, not twice.

    A copy is the same frame: Parquet keeps polars' types exactly (text, floats, timestamps with their zone,
    GCP's nested records). Parquet files are not copied: reading them is not a parse.
    """

    workdir: Path
    files: dict[str, Path] = field(default_factory=dict)
    delivery: tuple[str, str] | None = None  # (version, fingerprint) of the delivery the copies are of

    def keep(self, delivery: Delivery, file_uri: str, frame: pl.LazyFrame) -> pl.LazyFrame:
        """A text file's frame, parsed once to a local copy and scanned from it; a Parquet file's unchanged."""
        if _read_as_parquet(delivery, file_uri):
            return frame
        if self.delivery != (delivery.version, delivery.fingerprint):
            self.clear()
            self.delivery = (delivery.version, delivery.fingerprint)
        path = self.workdir / f"parsed-{_short_digest(delivery.version + '|' + file_uri)}.parquet"
        try:
            frame.sink_parquet(path, **{**PARQUET_OPTIONS, "row_group_size": PARSED_ROW_GROUP_ROWS})
        except Exception:
            path.unlink(missing_ok=True)
            raise
        self.files[file_uri] = path
        return pl.scan_parquet(path)

    def scan(self, delivery: Delivery, file_uri: str) -> pl.LazyFrame | None:
        """The local copy of a file of `delivery`, if one was made."""
        if self.delivery != (delivery.version, delivery.fingerprint) or file_uri not in self.files:
            return None
        return pl.scan_parquet(self.files[file_uri])

    def clear(self) -> None:
        for path in self.files.values():
            path.unlink(missing_ok=True)
        self.files.clear()
        self.delivery = None


@dataclass
class DeliveryRead:
    """One delivery read into local files, or the files that kept it from being read to its end."""

    published: Path
    bad_dates: Path
    schemas: SchemaObserver
    files_read: int = 0
    unreadable: list[FileProblem] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unreadable


@dataclass
class _DayParts:
    """Per readable file: its rows of the day, and (first day of the period) its undated rows."""

    rows: list[pl.LazyFrame] = field(default_factory=list)
    bad_dates: list[pl.LazyFrame] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    all_text: bool = True  # every file read as text only (CSV): see TEXT_ROW_GROUP_ROWS
    skipped: int = 0  # files the day index says hold no row of the day (not read for it)


@dataclass
class _DeliveryReader:
    """Reads one delivery for one (day, source); quarantines and records the files that fail."""

    adapter: Adapter
    source: SourceConfig
    delivery: Delivery
    day: dt.date
    store: Store
    lake_url: str
    ingested_at: dt.datetime
    record: Recorder
    read: DeliveryRead
    parsed: ParsedFiles | None = None

    def open_file(self, file_uri: str, workdir: Path) -> pl.LazyFrame:
        """The file's rows: from the local copy the fingerprint pass parsed, else read from the landing zone.

        On a period's first day a file is read at least twice (its rows of the day, its undated rows; on a
        delivery's first read its schema observation too): a text file is then parsed once, to a copy."""
        copy = self.parsed.scan(self.delivery, file_uri) if self.parsed is not None else None
        if copy is not None:
            return copy
        frame = self.adapter.read(self.store.stage(file_uri, workdir), self.delivery.file_format)
        if self.parsed is not None and self.day.day == 1:
            return self.parsed.keep(self.delivery, file_uri, frame)
        return frame

    def quarantine_file(self, file_uri: str, error: Exception) -> None:
        """Copy an unreadable file to the quarantine and record it: the delivery is incomplete."""
        reason = f"unreadable export file: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        kind = "empty" if isinstance(error, EmptyExportFileError) else "unreadable"
        copy: str | None = quarantined_file_url(self.lake_url, self.source.name, self.delivery.version, file_uri)
        try:
            self.store.copy_in(file_uri, copy)
        except Exception:  # noqa: BLE001
            copy = None
        problem = FileProblem(file_uri, f"{reason} (delivery {self.delivery.version} is incomplete)", kind)
        self.read.unreadable.append(problem)
        self.record(problem, self.delivery.version, copy=copy)
        log.warning("%s", problem.describe(self.source.name))

    def plan_files(self, workdir: Path, holding: set[str]) -> _DayParts:
        """Lazy plans of the day's rows of every file in `holding` whose schema can be read (the others
        quarantined).

        A file outside `holding` holds no row of the day; its schema is still observed while schema drift
        needs every file (the delivery's first read), and the first readable file always is (drift names it).
        """
        parts = _DayParts()
        scoped = is_period_scoped(self.adapter, self.delivery)
        identities = (
            dict(zip(self.delivery.files, self.delivery.file_identities, strict=True))
            if self.delivery.file_identities
            else {}
        )
        observed = False
        for file_uri in self.delivery.files:
            holds_day = file_uri in holding
            if not holds_day and observed and self.read.schemas.settled:
                parts.skipped += 1
                continue
            identity = identities.get(file_uri)
            if not holds_day and identity is not None and self.read.schemas.recall(file_uri, identity):
                observed = True  # the same bytes passed every check below in an earlier delivery
                parts.skipped += 1
                continue
            try:
                frame = self.open_file(file_uri, workdir)
                schema = frame.collect_schema()
                observation = self.read.schemas.observe(file_uri, schema, frame)
                start = self.adapter.usage_start(schema)
            except Exception as error:  # noqa: BLE001 - reported with source, file and reason
                self.quarantine_file(file_uri, error)
                continue
            if observation is not None and identity is not None:
                self.read.schemas.remember(identity, observation)
            observed = True
            if not holds_day:
                parts.skipped += 1
                continue
            parts.all_text &= all(dtype == pl.String for dtype in schema.dtypes())
            frame = frame.with_columns(_lineage(self.source, self.delivery, file_uri, self.day, self.ingested_at))
            parts.files.append(file_uri)
            in_day = partition_day(start, self.delivery.billing_period, scoped) == self.day
            parts.rows.append(frame.filter(start.is_not_null() & in_day))
            if self.day.day == 1:
                reason = pl.lit(f"unparseable usage start date in {file_uri}").alias("_reason")
                parts.bad_dates.append(frame.filter(start.is_null()).with_columns(reason))
        return parts


def read_delivery(
    adapter: Adapter,
    source: SourceConfig,
    delivery: Delivery,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    ingested_at: dt.datetime,
    record: Recorder,
    index: DeliveryDays | None = None,
    parsed: ParsedFiles | None = None,
) -> DeliveryRead:
    """Read the day's rows of one delivery to local files in one streaming pass; quarantine every file
    that cannot be read to its end (the read is then incomplete and nothing of it is published).

    With the delivery's day `index`, only the files that may hold rows of the day are read; the others
    count as read (`files_read`: they were accounted for, and hold nothing of the day). A file `parsed`
    holds a local copy of is read from that copy; without `parsed`, a text file the read would parse twice
    gets a copy of the read's own (`_DeliveryReader.open_file`), removed when the read ends."""
    read = DeliveryRead(
        published=workdir / f"raw-{source.name}-{_short_digest(delivery.version)}.parquet",
        bad_dates=workdir / f"baddate-{source.name}-{_short_digest(delivery.version)}.parquet",
        schemas=SchemaObserver(source.provider, source.name, delivery, store, lake_url),
    )
    copies = parsed if parsed is not None else ParsedFiles(workdir)  # copies of this read's own: cleared below
    reader = _DeliveryReader(adapter, source, delivery, day, store, lake_url, ingested_at, record, read, copies)
    try:
        holding = index.files_for(delivery, day) if index is not None else delivery.files
        parts = reader.plan_files(workdir, set(holding))
        if read.unreadable:
            return read
        try:
            _write_local(read, parts)  # one streaming pass: every file read once
        except Exception:  # noqa: BLE001 - a file broken past its footer: find it, file by file
            read.published.unlink(missing_ok=True)
            read.bad_dates.unlink(missing_ok=True)
            parts = _isolate_unreadable(parts, workdir, source.name, reader.quarantine_file)
            if read.unreadable:
                return read
            _write_local(read, parts)
        read.files_read = len(parts.files) + parts.skipped
        return read
    finally:
        if parsed is None:
            copies.clear()


def _lineage(
    source: SourceConfig, delivery: Delivery, file_uri: str, day: dt.date, ingested_at: dt.datetime
) -> list[pl.Expr]:
    return [
        pl.lit(source.name, dtype=pl.String).alias("x_Source"),
        pl.lit(source.provider, dtype=pl.String).alias("x_Provider"),
        pl.lit(file_uri, dtype=pl.String).alias("x_FileUri"),
        pl.lit(delivery.version, dtype=pl.String).alias("x_ExportVersion"),
        pl.lit(delivery.delivered_at, dtype=pl.Datetime("us", "UTC")).alias("x_DeliveredAt"),
        pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")).alias("x_IngestedAt"),
        pl.lit(day, dtype=pl.Date).alias("x_UsageDate"),
    ]


def _short_digest(text: str) -> str:
    """A file-name-safe stand-in for a version (versions are delivered text)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """Files of one delivery may differ in columns (drift, legacy assemblies): union them by name."""
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _write_local(read: DeliveryRead, parts: _DayParts) -> None:
    options = raw_parquet_options(parts.all_text)
    if parts.rows:
        _concat(parts.rows).sink_parquet(read.published, **options)
    if parts.bad_dates:
        _concat(parts.bad_dates).sink_parquet(read.bad_dates, **options)


def _isolate_unreadable(
    parts: _DayParts, workdir: Path, source: str, quarantine_file: Callable[[str, Exception], None]
) -> _DayParts:
    """Read each file in full on its own; quarantine the ones that fail, keep the rest as local parts.

    The slow path, taken only when the one-pass read of a delivery failed (a file whose footer is
    sound but whose data pages are not): it names the broken file, which makes the delivery incomplete.
    """
    kept = _DayParts(all_text=parts.all_text, skipped=parts.skipped)
    has_bad_dates = len(parts.bad_dates) == len(parts.files)
    for index, file_uri in enumerate(parts.files):
        part = workdir / f"raw-{source}-{index}.parquet"
        bad_part = workdir / f"baddate-{source}-{index}.parquet"
        try:
            parts.rows[index].sink_parquet(part, **PARQUET_OPTIONS)
            if has_bad_dates:
                parts.bad_dates[index].sink_parquet(bad_part, **PARQUET_OPTIONS)
        except Exception as error:  # noqa: BLE001 - one bad file never crashes the day
            part.unlink(missing_ok=True)
            bad_part.unlink(missing_ok=True)
            quarantine_file(file_uri, error)
            continue
        kept.rows.append(pl.scan_parquet(part))
        if has_bad_dates:
            kept.bad_dates.append(pl.scan_parquet(bad_part))
        kept.files.append(file_uri)
    return kept
