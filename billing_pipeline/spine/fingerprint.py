"""Invariant 4 ("only what changed re-runs"), decided from data rather than from file timestamps.

A restated month arrives as a whole new delivery; most of its days usually hold exactly the rows the
previous delivery held. For every delivery we compute one content fingerprint per usage day: the
number of rows and two 64-bit sums of per-row hashes (polars `struct(...).hash`, over the delivered
columns in sorted order). Sums make the fingerprint independent of row order, file names, file
split and ingest time, and they still count a duplicated row. The fingerprints of a delivery are
cached in the lake (computing them is one streaming scan of the delivery) and the raw layer records
the fingerprint each (day, source) slice was built from (`platform/state.py` has the layout).

The same pass records which usage days each file holds (`DeliveryDays.file_days`), so the raw read of a
day reads only the files holding rows of it (`files_for`). An append-only export (GCP) shares its files
between the deliveries of every later period and every new append: there each file's day sums are also
cached on their own, keyed by the file's identity, so a file is read for its days once, ever.

The late-arrival sensor requests only the days whose fingerprint differs; within a requested day
each layer's `*_if_changed` / `*_if_stale` entry point rebuilds only the sources whose input changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import Adapter, Delivery, adapter_for
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.state import (
    ABSENT,
    STATE_DIR,
    delivery_record_url,
    period_states,
    read_document,
    write_document,
)
from billing_pipeline.platform.storage import Store, is_remote, join, scratch_dir
from billing_pipeline.spine.calendar import days_of_period, is_period_scoped, partition_day
from billing_pipeline.spine.raw_read import ParsedFiles

log = logging.getLogger(__name__)

# Bump when the way fingerprints are computed changes; polars' hash is stable only within a version.
SCHEME = f"v1-polars-{pl.__version__}"
_SPLIT = 2**32  # two sums of 32-bit halves: no overflow below 2**32 rows a day


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
    # file -> the days (ISO) it holds rows of; a file absent from it (not read to its end) may hold any
    # day; None (a record written before the index existed): every file may hold every day
    file_days: dict[str, list[str]] | None = None

    def fingerprint(self, day: dt.date) -> str:
        """The day's fingerprint; a delivery that could not be read fully differs from everything."""
        if self.error:
            return "unreadable-" + hashlib.sha256(f"{self.delivery_fingerprint}|{self.error}".encode()).hexdigest()[:16]
        return self.days.get(day.isoformat(), ABSENT)

    def files_for(self, delivery: Delivery, day: dt.date) -> list[str]:
        """The delivery's files (in its order) that may hold rows of the day (all: no index for it).

        A file whose days are unknown (it could not be read: the raw read quarantines it) is kept, so it
        holds back every day it could affect, as when every file was read for every day.
        """
        if self.file_days is None or (self.version, self.delivery_fingerprint) != (
            delivery.version,
            delivery.fingerprint,
        ):
            return list(delivery.files)
        wanted = day.isoformat()
        return [f for f in delivery.files if f not in self.file_days or wanted in self.file_days[f]]


def delivery_key(delivery: Delivery) -> str:
    """A delivery's identity: its version plus what its files are (a file replaced in place changes it)."""
    return hashlib.sha256(f"{SCHEME}|{delivery.version}|{delivery.fingerprint}".encode()).hexdigest()[:32]


def delivery_cache_url(lake_url: str, source: str, delivery: Delivery) -> str:
    return delivery_record_url(lake_url, source, delivery.billing_period, delivery_key(delivery))


def _fingerprint(count: int, high: int, low: int, columns: list[str]) -> str:
    text = f"{SCHEME}|{count}|{high}|{low}|{','.join(columns)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_SUMS_SCHEMA = {"_day": pl.Date, "n": pl.Int64, "hi": pl.UInt64, "lo": pl.UInt64}


@dataclass
class FileSums:
    """One file's rows per usage date (null: unparseable) with their two hash sums; its columns and size."""

    sums: pl.DataFrame
    columns: list[str]
    bytes: int


def _day_sums(adapter: Adapter, frame: pl.LazyFrame, schema: pl.Schema) -> pl.DataFrame:
    """Per usage date of one file (as delivered, null when unparseable): its row count and two sums of
    row hashes (over the sorted columns). Independent of the delivery, so it can be cached per file."""
    hashed = frame.select(
        adapter.usage_start(schema).dt.date().alias("_day"),
        pl.struct(sorted(schema)).hash(seed=0).alias("_h"),
    )
    return (
        hashed.group_by("_day")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            (pl.col("_h") // _SPLIT).sum().alias("hi"),
            (pl.col("_h") % _SPLIT).sum().alias("lo"),
        )
        .collect(engine="streaming")
        .cast(_SUMS_SCHEMA)  # type: ignore[arg-type]
    )


def file_cache_url(lake_url: str, source: str, provider: str, file_format: str, identity: str) -> str:
    """Where one file's day sums are cached: by scheme, reader and the file's identity (path, size, ETag)."""
    key = hashlib.sha256(f"{SCHEME}|{provider}|{file_format}|{identity}".encode()).hexdigest()[:32]
    return join(lake_url, STATE_DIR, "deliveries", f"source={source}", "files", f"{key}.json")


def _cached_file_sums(store: Store, url: str) -> FileSums | None:
    document = read_document(store, url)
    if not document or document.get("scheme") != SCHEME:
        return None
    days = [dt.date.fromisoformat(d) if d else None for d, *_ in document["sums"]]
    counts = [[row[i] for row in document["sums"]] for i in (1, 2, 3)]
    frame = pl.DataFrame({"_day": days, "n": counts[0], "hi": counts[1], "lo": counts[2]}, schema=_SUMS_SCHEMA)
    return FileSums(frame, list(document["columns"]), int(document["bytes"]))


def _write_file_sums(store: Store, url: str, identity: str, sums: FileSums) -> None:
    rows = [[d.isoformat() if d else None, n, hi, lo] for d, n, hi, lo in sums.sums.iter_rows()]
    document = {"scheme": SCHEME, "identity": identity, "columns": sums.columns, "bytes": sums.bytes, "sums": rows}
    write_document(store, url, document)


def _read_file_sums(
    store: Store, adapter: Adapter, delivery: Delivery, file_uri: str, workdir: Path, parsed: ParsedFiles | None
) -> FileSums:
    local = store.stage(file_uri, workdir)
    size = local.stat().st_size
    frame = adapter.read(local, delivery.file_format)
    schema = frame.collect_schema()
    if parsed is not None:  # a text file is parsed once, to a local copy the raw read uses too
        frame = parsed.keep(delivery, file_uri, frame)
    return FileSums(_day_sums(adapter, frame, schema), list(schema), size)


def compute_delivery_days(
    store: Store,
    source: SourceConfig,
    delivery: Delivery,
    lake_url: str | None = None,
    parsed: ParsedFiles | None = None,
) -> DeliveryDays:
    """One streaming pass over the delivery's files: per usage day, count and sums of row hashes, and
    which days each file holds.

    Rows whose usage start cannot be parsed, or (a delivery of one billing period) falls outside the
    period, count for the period's first day, where the builders quarantine them. With `lake_url`, the
    day sums of a file whose identity the delivery names are read from (and written to) the per-file
    cache; a file that cannot be read is never cached. With `parsed`, text files (CSV, JSON lines) are parsed
    once to local Parquet copies, which the raw read of the same build reads instead of the text.
    """
    adapter = adapter_for(source.provider)
    result = DeliveryDays(version=delivery.version, delivery_fingerprint=delivery.fingerprint, file_days={})
    per_file: list[pl.DataFrame] = []
    columns: set[str] = set()
    identities = dict(zip(delivery.files, delivery.file_identities, strict=True)) if delivery.file_identities else {}
    with scratch_dir("billing-fp-") as workdir:
        for file_uri in delivery.files:
            identity = identities.get(file_uri)
            cache = (
                file_cache_url(lake_url, source.name, source.provider, delivery.file_format, identity)
                if lake_url and identity
                else None
            )
            try:
                sums = _cached_file_sums(store, cache) if cache else None
                if sums is None:
                    sums = _read_file_sums(store, adapter, delivery, file_uri, workdir, parsed)
                    if cache and identity:
                        _write_file_sums(store, cache, identity, sums)
            except Exception as error:  # noqa: BLE001 - the raw builder reports the file; we only mark the period
                first_line = (str(error).splitlines() or [""])[0][:200]
                result.error = f"{file_uri}: {type(error).__name__}: {first_line}"
                log.warning("fingerprinting %s: %s", source.name, result.error)
                continue
            finally:
                if is_remote(file_uri):  # a staged copy: keep at most one on local disk
                    for staged in workdir.iterdir():
                        staged.unlink(missing_ok=True)
            result.bytes += sums.bytes
            columns.update(sums.columns)
            per_file.append(sums.sums.with_columns(pl.lit(file_uri, dtype=pl.String).alias("_file")))
            result.file_days[file_uri] = []  # read to its end: it holds the days found below, if any
    result.columns = sorted(columns)
    if per_file:
        scoped = is_period_scoped(adapter, delivery)
        by_day = pl.concat(per_file).with_columns(partition_day(pl.col("_day"), delivery.billing_period, scoped))
        totals = by_day.group_by("_day").agg(pl.col("n").sum(), pl.col("hi").sum(), pl.col("lo").sum()).sort("_day")
        for day, count, high, low in totals.iter_rows():
            result.days[day.isoformat()] = _fingerprint(count, high, low, result.columns)
            result.rows[day.isoformat()] = count
        held = by_day.group_by("_file").agg(pl.col("_day").unique().sort().dt.to_string())
        result.file_days |= dict(held.iter_rows())
    return result


def delivery_day_fingerprints(
    store: Store, source: SourceConfig, delivery: Delivery, lake_url: str, parsed: ParsedFiles | None = None
) -> DeliveryDays:
    """Per-day fingerprints of a delivery, computed once and cached in the lake under its identity
    (`parsed`: where computing them keeps local copies of text files for the raw read, see `ParsedFiles`)."""
    url = delivery_cache_url(lake_url, source.name, delivery)
    cached = read_document(store, url)
    if cached and cached.get("scheme") == SCHEME:
        return DeliveryDays(
            **{k: cached[k] for k in ("version", "delivery_fingerprint", "days", "rows", "columns", "bytes", "error")},
            file_days=cached.get("file_days"),  # absent from records written before the index
        )
    computed = compute_delivery_days(store, source, delivery, lake_url, parsed)
    if computed.error is None:  # never cache a failed read: it may be transient (a denied or flaky GET)
        # first_seen_at: when the pipeline first saw this delivery (M2), kept by every later reader
        first_seen_at = dt.datetime.now(dt.UTC).isoformat()
        write_document(store, url, {"scheme": SCHEME, **dataclasses.asdict(computed), "first_seen_at": first_seen_at})
    return computed


def recorded_fingerprints(store: Store, lake_url: str, source: str, period: str) -> dict[str, str]:
    """day -> the content fingerprint its raw slice was last built from (days never built are absent)."""
    out: dict[str, str] = {}
    for document in period_states(store, lake_url, source, period):
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
