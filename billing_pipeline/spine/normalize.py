"""The normalized layer: FOCUS rows from the day's raw slice, typed, deduplicated and conformed.

Every raw row ends in exactly one place: the normalized slice, the duplicates quarantine, or the
bad-row quarantine (with its reason).
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import Adapter, adapter_for
from billing_pipeline.adapters.drift import text_cells
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.focus import LINEAGE_COLUMNS, MONEY, conform, validate_focus_file
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import NORMALIZED, RAW
from billing_pipeline.platform.parallel import compute_clock
from billing_pipeline.platform.state import ABSENT, read_state
from billing_pipeline.platform.storage import PARQUET_OPTIONS, ROW_GROUP_ROWS, Store
from billing_pipeline.spine.guard import RawSliceMissingError
from billing_pipeline.spine.layer_state import ReusedSlice, is_stale, record_layer_build, restore_result, slice_identity
from billing_pipeline.spine.privacy import Pseudonymizer, privacy_digest


@dataclass
class NormalizedSlice:
    """What building one normalized slice found: rows kept, duplicates and bad rows set aside, money."""

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


@dataclass
class ReusedNormalizedSlice(NormalizedSlice, ReusedSlice):
    pass


def _sum(frame: pl.LazyFrame, column: str) -> Decimal:
    value = frame.select(pl.col(column).cast(MONEY).sum()).collect().item()
    return Decimal(value) if value is not None else Decimal(0)


# FOCUS rows of the rows whose key hash repeats are held in memory up to this many (one read of
# the raw file); beyond it (a whole delivery sent twice) they stay lazy and stream.
CANDIDATES_IN_MEMORY = 250_000
# Beyond it their keys are compared in buckets of about that many, at most this many buckets.
MAX_KEY_BUCKETS = 64
# Plans over the candidates' rows run without common-subplan elimination: GCP's mapping reads its input
# twice (charge rows, then credit rows), and polars cached a shared filter of the raw slice whole (the
# 2.4M candidates of a 10M-row GCP day: 974 -> 2,318 MiB); without it each part reads the candidates'
# blocks again (19.4 s instead of 17.9). The plain scan of the raw slice that the whole mapping shares is
# cached too, but streams: with the cache off there the 1M-row GCP slice peaked no lower (decision pass
# 845 -> 932 MiB, published slice 1,338 -> 1,367 MiB), so it stays on.
CANDIDATE_PLANS = pl.QueryOptFlags(comm_subplan_elim=False)


def _rows_in_blocks(raw: pl.LazyFrame, row_ids: pl.Series) -> pl.LazyFrame:
    """The rows `row_ids` of the raw slice, reading only the blocks of rows that hold them.

    Each block is a slice, which polars pushes down to the Parquet reader, so the row groups without
    a wanted row are not decoded (repeated rows usually cluster: a file delivered twice).
    """
    blocks = (row_ids // ROW_GROUP_ROWS).unique().sort()
    pieces = [raw.slice(int(block) * ROW_GROUP_ROWS, ROW_GROUP_ROWS) for block in blocks]
    return pl.concat(pieces).filter(pl.col("x_RawRow").is_in(row_ids.implode()))


# A raw slice of at most this many rows is mapped to FOCUS once, in memory, and the decision pass and the
# published slice read that frame; a bigger one is mapped twice, streaming (bounded memory at any size).
# At demo size (400 rows) the mapping's plan costs more than its rows: 20-60 ms a pass, whatever the rows.
IN_MEMORY_ROWS = 50_000


def _mapped_once_if_small(focus: pl.LazyFrame, raw: pl.LazyFrame) -> pl.LazyFrame:
    """`focus` itself, or its rows computed once when the raw slice is small (same rows either way)."""
    if raw.select(pl.len()).collect().item() > IN_MEMORY_ROWS:
        return focus
    return focus.collect().lazy()


def _repeated_rows(
    raw: pl.LazyFrame,
    to_focus: Callable[[pl.LazyFrame], pl.LazyFrame],
    key: list[str],
    decisions: pl.DataFrame,
    workdir: Path,
) -> tuple[pl.Series, pl.LazyFrame]:
    """The rows that repeat an earlier row's key, compared exactly, and their FOCUS rows.

    Exact, and light on memory at tens of millions of rows: the decision pass hashed every key to
    64 bits; only rows whose hash repeats are mapped again, from their raw rows, and compared on
    their real key values (the mapping does not let a row filter through, so filtering the whole
    day's FOCUS rows would map every row again). More candidates than `CANDIDATES_IN_MEMORY` are
    compared bucket by bucket (`_first_distinct_by_bucket`).
    """
    candidates = decisions.filter(pl.col("_keyed") & pl.col("_h").is_duplicated()).get_column("x_RawRow")
    if candidates.is_empty():
        return pl.Series("x_RawRow", [], dtype=pl.UInt32), pl.LazyFrame()
    subset = _rows_in_blocks(raw, candidates)  # filtered before it is mapped
    focus = to_focus(subset).filter(pl.col("_bad_reason").is_null()).drop("_bad_reason")
    if candidates.len() <= CANDIDATES_IN_MEMORY:
        focus = focus.collect(engine="streaming", optimizations=CANDIDATE_PLANS).lazy()
        repeated = _not_first_distinct(focus.select("x_RawRow", *key).collect(engine="streaming"), key)
    else:
        buckets = min(-(-candidates.len() // max(CANDIDATES_IN_MEMORY, 1)), MAX_KEY_BUCKETS)
        rows_per_file = max(CANDIDATES_IN_MEMORY // buckets, 1)  # the sink holds about CANDIDATES_IN_MEMORY rows
        repeated = _first_distinct_by_bucket(focus.select("x_RawRow", *key), key, buckets, workdir, rows_per_file)
    return repeated, focus.filter(pl.col("x_RawRow").is_in(repeated.implode()))


def _not_first_distinct(keys: pl.DataFrame, key: list[str]) -> pl.Series:
    """Row ids whose key an earlier row (lower id) has."""
    return keys.sort("x_RawRow").filter(~pl.struct(key).is_first_distinct()).get_column("x_RawRow")


def _first_distinct_by_bucket(
    keys: pl.LazyFrame, key: list[str], buckets: int, workdir: Path, rows_per_file: int
) -> pl.Series:
    """`_not_first_distinct` of more keys than memory should hold: streamed to local files by bucket of the
    key's hash (equal keys share a bucket), then compared a bucket at a time. A key can be a whole delivered
    row (GCP: every nested field): the 2.4M candidate keys of a 10M-row GCP day held at once peaked at
    5.9 GiB. polars' partitioned sink buffers each bucket's open file: a file closes at `rows_per_file` rows,
    so the sink holds about `buckets * rows_per_file` rows (without it the 10 buckets' sink peaked at
    2,419 MiB, with 20,000 rows a file 972 MiB, no slower)."""
    folder = workdir / f"dedup-{uuid.uuid4().hex[:12]}"
    bucket = (pl.struct(key).hash(seed=1) % buckets).alias("_bucket")
    target = pl.PartitionBy(folder, key="_bucket", include_key=False, max_rows_per_file=rows_per_file)
    try:
        keys.with_columns(bucket).sink_parquet(target, mkdir=True, optimizations=CANDIDATE_PLANS)
        files_by_bucket: dict[Path, list[Path]] = {}
        for part in sorted(folder.rglob("*.parquet")):
            files_by_bucket.setdefault(part.parent, []).append(part)
        parts = [_not_first_distinct(pl.read_parquet(files), key) for files in files_by_bucket.values()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return pl.concat(parts).sort() if parts else pl.Series("x_RawRow", [], dtype=pl.UInt32)


def whole_row_key(focus_schema: pl.Schema) -> list[str]:
    """Every delivered column of a FOCUS row, lineage and derived columns aside: a row's identity
    when nothing else identifies it (a file delivered twice under two names repeats all of it)."""
    derived = ("x_RawRow", "x_TagList")
    return [c for c in focus_schema if c not in LINEAGE_COLUMNS and c not in derived and not c.startswith("_")]


def _with_out_of_period_reasons(
    adapter: Adapter, raw: pl.LazyFrame, day: dt.date, decisions: pl.DataFrame
) -> pl.DataFrame:
    """Rows published under `day` but dated elsewhere (outside their delivery's billing period, see
    `partition_day`) become bad rows whose reason names the column and the value."""
    start = adapter.usage_start(raw.collect_schema())
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


def _row_decisions(focus: pl.LazyFrame, key: list[str], row_key: list[str]) -> pl.DataFrame:
    """The narrow pass: per raw row its id, bad-row reason, key hash and whether its key identifies it."""
    # A key of every delivered column compares nulls as equal (a FOCUS row is mostly nulls); an id key
    # (AWS) decides only where the id is there, and rows without one are compared on every column.
    keyed = pl.lit(True) if set(row_key) <= set(key) else pl.all_horizontal([pl.col(c).is_not_null() for c in key])
    return focus.select(
        "x_RawRow",
        "_bad_reason",
        pl.struct(key).hash(seed=0).alias("_h"),
        keyed.alias("_keyed"),
    ).collect(engine="streaming")


def _duplicates(
    raw: pl.LazyFrame,
    to_focus: Callable[[pl.LazyFrame], pl.LazyFrame],
    key: list[str],
    row_key: list[str],
    clean: pl.DataFrame,
    workdir: Path,
) -> tuple[pl.Series, pl.LazyFrame]:
    """Row ids of the duplicates among the clean rows, and their FOCUS rows (kept in quarantine)."""
    duplicate_ids, dropped = _repeated_rows(raw, to_focus, key, clean, workdir)
    unkeyed = clean.filter(~pl.col("_keyed")).with_columns(pl.lit(True).alias("_keyed"))
    if unkeyed.height > 1:  # rows without an id: a duplicate only when equal in every column
        more_ids, more = _repeated_rows(raw, to_focus, row_key, unkeyed, workdir)
        if more_ids.len():
            duplicate_ids = pl.concat([duplicate_ids, more_ids])
            dropped = (
                pl.concat([dropped, more], how="diagonal_relaxed") if duplicate_ids.len() > more_ids.len() else more
            )
    return duplicate_ids, dropped


def build_normalized_slice(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    privacy: Pseudonymizer | None = None,
) -> NormalizedSlice:
    """FOCUS rows from the day's raw slice: typed, deduplicated, conformed; the rest quarantined.

    With `privacy`, identifiers of people are replaced by their tokens in the published slice (the
    write boundary of the curated layers); the quarantine, under the raw lake, keeps them as delivered.

    Two passes over the raw slice: a narrow one (row id, bad-row reason, key hash) that decides
    which rows are quarantined or duplicates, then the full mapping of the rows that stay, streamed
    to the published file. Quarantined and duplicate rows are few, written from row-id filters. A small
    raw slice (`IN_MEMORY_ROWS`) is mapped once, in memory, and both passes read that frame.
    """
    adapter = adapter_for(source.provider)
    result = NormalizedSlice(source=source.name, day=day)
    raw_url = slice_url(lake_url, RAW, day, source.name)
    target = slice_url(lake_url, NORMALIZED, day, source.name)
    rows_url = quarantine_url(lake_url, "rows", day, source.name)
    dups_url = quarantine_url(lake_url, "duplicates", day, source.name)
    if not store.exists(raw_url):
        for url in (target, rows_url, dups_url):
            store.remove(url)
        return result
    raw = pl.scan_parquet(store.stage(raw_url, workdir)).with_row_index("x_RawRow")
    focus = _mapped_once_if_small(adapter.to_focus(raw), raw)
    identified = adapter.identify(focus)  # the decisions' plan only: the published slice needs no identity
    focus_schema = identified.drop("_bad_reason").collect_schema()
    key, row_key = adapter.dedup_key(focus_schema), whole_row_key(focus_schema)
    decisions = _with_out_of_period_reasons(adapter, raw, day, _row_decisions(identified, key, row_key))
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
    duplicate_ids, dropped = _duplicates(
        raw, lambda rows: adapter.identify(adapter.to_focus(rows)), key, row_key, clean, workdir
    )
    excluded = pl.concat([bad_ids.get_column("x_RawRow"), duplicate_ids]).implode()
    result.duplicate_rows = duplicate_ids.len()
    if result.duplicate_rows:
        store.write_parquet(conform(dropped), dups_url, workdir, CANDIDATE_PLANS)
        result.duplicate_cost = _sum(pl.scan_parquet(store.stage(dups_url, workdir)), "BilledCost")
    else:
        store.remove(dups_url)
    publishable = workdir / f"normalized-{source.name}.parquet"
    kept = focus.filter(~pl.col("x_RawRow").is_in(excluded)).drop("_bad_reason")
    published = conform(kept) if privacy is None else privacy.apply(conform(kept))
    published.sink_parquet(publishable, **PARQUET_OPTIONS)
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


def build_normalized_slice_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    workdir: Path,
    privacy: Pseudonymizer | None = None,
) -> NormalizedSlice:
    """`build_normalized_slice`, unless its raw slice and the pseudonymization are what it was built from."""
    started = compute_clock()
    raw_url = slice_url(lake_url, RAW, day, source.name)
    raw_identity = slice_identity(store, raw_url)
    target = slice_url(lake_url, NORMALIZED, day, source.name)
    state = read_state(store, lake_url, source.name, day)
    recorded_raw_rows = int((state.get("raw") or {}).get("rows") or 0)
    if raw_identity == ABSENT and recorded_raw_rows:
        # invariant 5: an absent raw slice means "no rows" only when the state says so; otherwise it is lost
        # or elsewhere (a new raw_lake_url), and the published slice stays until the raw one is built again
        raise RawSliceMissingError(
            f"source {source.name!r}, {day}: the raw slice {raw_url} is missing while the lake's state records "
            f"{recorded_raw_rows} published rows; the normalized slice is kept until the raw slice is built again"
        )
    raw_identity += privacy_digest(privacy)
    section = state.get("normalized") or {}
    if not is_stale(section, raw_identity, slice_identity(store, target) != ABSENT):
        return restore_result(ReusedNormalizedSlice, section["result"])
    result = build_normalized_slice(source, day, store, lake_url, workdir, privacy)
    record_layer_build(store, lake_url, source.name, day, "normalized", raw_identity, result, started, target)
    return result
