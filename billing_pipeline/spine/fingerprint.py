"""Invariant 4 ("only what changed re-runs"), decided from data rather than from file timestamps.

A restated month arrives as a whole new delivery; most of its days usually hold exactly the rows the
previous delivery held. For every delivery we compute one content fingerprint per usage day: the
number of rows and two 64-bit sums of per-row hashes (polars `struct(...).hash`, over the delivered
columns in sorted order). Sums make the fingerprint independent of row order, file names, file
split and ingest time, and they still count a duplicated row. The fingerprints of a delivery are
cached in the lake (computing them is one streaming scan of the delivery) and the raw layer records
the fingerprint each (day, source) slice was built from (`platform/state.py` has the layout).

The late-arrival sensor requests only the days whose fingerprint differs; within a requested day
each layer's `*_if_changed` / `*_if_stale` entry point rebuilds only the sources whose input changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field

import polars as pl

from billing_pipeline.adapters import Adapter, Delivery, adapter_for
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.state import ABSENT, delivery_record_url, period_states, read_document, write_document
from billing_pipeline.platform.storage import Store, is_remote, scratch_dir
from billing_pipeline.spine.calendar import days_of_period, is_period_scoped, partition_day

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

    def fingerprint(self, day: dt.date) -> str:
        """The day's fingerprint; a delivery that could not be read fully differs from everything."""
        if self.error:
            return "unreadable-" + hashlib.sha256(f"{self.delivery_fingerprint}|{self.error}".encode()).hexdigest()[:16]
        return self.days.get(day.isoformat(), ABSENT)


def delivery_key(delivery: Delivery) -> str:
    """A delivery's identity: its version plus what its files are (a file replaced in place changes it)."""
    return hashlib.sha256(f"{SCHEME}|{delivery.version}|{delivery.fingerprint}".encode()).hexdigest()[:32]


def delivery_cache_url(lake_url: str, source: str, delivery: Delivery) -> str:
    return delivery_record_url(lake_url, source, delivery.billing_period, delivery_key(delivery))


def _fingerprint(count: int, high: int, low: int, columns: list[str]) -> str:
    text = f"{SCHEME}|{count}|{high}|{low}|{','.join(columns)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _day_sums(adapter: Adapter, frame: pl.LazyFrame, schema: pl.Schema, delivery: Delivery) -> pl.DataFrame:
    """Per usage day of one file: its row count and two sums of row hashes (over the sorted columns)."""
    start = adapter.usage_start(schema)
    hashed = frame.select(
        partition_day(start, delivery.billing_period, is_period_scoped(adapter, delivery)).alias("_day"),
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
    )


def compute_delivery_days(store: Store, source: SourceConfig, delivery: Delivery) -> DeliveryDays:
    """One streaming pass over the delivery's files: per usage day, count and sums of row hashes.

    Rows whose usage start cannot be parsed, or (a delivery of one billing period) falls outside the
    period, count for the period's first day, where the builders quarantine them.
    """
    adapter = adapter_for(source.provider)
    result = DeliveryDays(version=delivery.version, delivery_fingerprint=delivery.fingerprint)
    per_file: list[pl.DataFrame] = []
    columns: set[str] = set()
    with scratch_dir("billing-fp-") as workdir:
        for file_uri in delivery.files:
            try:
                local = store.stage(file_uri, workdir)
                result.bytes += local.stat().st_size
                frame = adapter.read(local, delivery.file_format)
                schema = frame.collect_schema()
                columns.update(schema)
                per_file.append(_day_sums(adapter, frame, schema, delivery))
            except Exception as error:  # noqa: BLE001 - the raw builder reports the file; we only mark the period
                first_line = (str(error).splitlines() or [""])[0][:200]
                result.error = f"{file_uri}: {type(error).__name__}: {first_line}"
                log.warning("fingerprinting %s: %s", source.name, result.error)
            finally:
                if is_remote(file_uri):  # a staged copy: keep at most one on local disk
                    for staged in workdir.iterdir():
                        staged.unlink(missing_ok=True)
    result.columns = sorted(columns)
    if per_file:
        totals = (
            pl.concat(per_file)
            .group_by("_day")
            .agg(pl.col("n").sum(), pl.col("hi").sum(), pl.col("lo").sum())
            .sort("_day")
        )
        for day, count, high, low in totals.iter_rows():
            result.days[day.isoformat()] = _fingerprint(count, high, low, result.columns)
            result.rows[day.isoformat()] = count
    return result


def delivery_day_fingerprints(store: Store, source: SourceConfig, delivery: Delivery, lake_url: str) -> DeliveryDays:
    """Per-day fingerprints of a delivery, computed once and cached in the lake under its identity."""
    url = delivery_cache_url(lake_url, source.name, delivery)
    cached = read_document(store, url)
    if cached and cached.get("scheme") == SCHEME:
        return DeliveryDays(
            **{k: cached[k] for k in ("version", "delivery_fingerprint", "days", "rows", "columns", "bytes", "error")}
        )
    computed = compute_delivery_days(store, source, delivery)
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
