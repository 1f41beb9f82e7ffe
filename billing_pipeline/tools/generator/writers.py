"""Turn canonical frames into each export's exact file format, and roll them into data files.

One converter per flavour (CUR 2.0 Parquet with MAP columns, legacy CUR gzip CSV with slash names,
the Athena snake_case Parquet, FOCUS gzip CSV) keeps format details out of the models, and the
rolling writers split a delivery into files of bounded size the way AWS splits big exports.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from billing_pipeline.tools.generator._util import (
    Piece,
    decimal_str,
    epoch_ms_to_datetime,
    map_from_columns,
)
from billing_pipeline.tools.generator.columns import (
    CUR2_COLUMNS,
    CUR2_MAP_COLUMNS,
    CUR2_NUMERIC_SCALES,
    CUR2_TIMESTAMP_COLUMNS,
    FOCUS_COLUMNS,
    FOCUS_DATETIME_COLUMNS,
    FOCUS_MONEY_COLUMNS,
    FOCUS_QUANTITY_COLUMNS,
    FOCUS_UNIT_PRICE_COLUMNS,
    LEGACY_CUR_COLUMNS,
    MONEY_SCALE,
    PRODUCT_MAP_KEYS,
    RESOURCE_TAG_KEYS,
    athena_column,
    cur2_tag_key,
)

MAP_TYPE = pa.map_(pa.string(), pa.string())
TIMESTAMP_UTC = pa.timestamp("ms", tz="UTC")


def _cur2_type(name: str) -> pa.DataType:
    if name in CUR2_MAP_COLUMNS:
        return MAP_TYPE
    if name in CUR2_TIMESTAMP_COLUMNS:
        return TIMESTAMP_UTC
    if name in CUR2_NUMERIC_SCALES:
        return pa.float64()
    return pa.string()


CUR2_SCHEMA: pa.Schema = pa.schema([pa.field(c, _cur2_type(c)) for c in CUR2_COLUMNS])


def cur2_manifest_type(t: pa.DataType) -> str:
    """The type names the CUR 2.0 manifest lists for each column."""
    if pa.types.is_map(t):
        return "map<string,string>"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_floating(t):
        return "double"
    return "string"


def scale_ints(table: pa.Table) -> pa.Table:
    """Integer columns in units of 10**-scale -> float64, by a correctly rounded division.

    Arrow's divide is IEEE division, so 332536483 becomes the double nearest to 3.32536483, whose
    repr is that decimal. (polars divides by a literal through its reciprocal, which can land one
    ulp off: 3.3253648300000003.)
    """
    for i, name in enumerate(table.column_names):
        scale = CUR2_NUMERIC_SCALES.get(name)
        if scale is not None and pa.types.is_integer(table.schema.field(i).type):
            floats = pc.divide(table.column(i).cast(pa.float64()), float(10**scale))
            table = table.set_column(i, pa.field(name, pa.float64()), floats)
    return table


# --- CUR 2.0 -----------------------------------------------------------------------------------


def cur2_table(frame: pl.DataFrame) -> pa.Table:
    """Canonical AWS rows -> a CUR 2.0 Arrow table (all columns, MAP columns, float64 money)."""
    exprs: list[pl.Expr] = []
    flat_fields: list[pa.Field] = []
    for name in CUR2_COLUMNS:
        if name in CUR2_MAP_COLUMNS:
            continue
        present = name in frame.columns
        if name in CUR2_NUMERIC_SCALES:
            e = pl.col(name).cast(pl.Int64) if present else pl.lit(None, pl.Int64)
        elif name in CUR2_TIMESTAMP_COLUMNS:
            e = epoch_ms_to_datetime(pl.col(name)) if present else pl.lit(None, pl.Datetime("ms", "UTC"))
        else:
            e = pl.col(name).cast(pl.String) if present else pl.lit(None, pl.String)
        exprs.append(e.alias(name))
        flat_fields.append(CUR2_SCHEMA.field(name))
    flat = scale_ints(frame.select(exprs).to_arrow()).cast(pa.schema(flat_fields))
    tags = _coalesced_tags(frame, cur2_tag_key)
    maps = {
        "product": map_from_columns(frame, [(k, f"product_{k}") for k in PRODUCT_MAP_KEYS]),
        "resource_tags": map_from_columns(tags, [(c, c) for c in tags.columns]),
        "cost_category": map_from_columns(frame, [("BusinessUnit", "_cost_category")]),
        "discount": map_from_columns(frame, []),
    }
    arrays = [maps[c] if c in maps else flat.column(c) for c in CUR2_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=CUR2_SCHEMA)


def _coalesced_tags(frame: pl.DataFrame, key_fn: Callable[[str], str]) -> pl.DataFrame:
    """Merge tag spellings that a flavour's key normalisation makes identical (``Team``/``TEAM``)."""
    groups: dict[str, list[str]] = {}
    for key in RESOURCE_TAG_KEYS:
        groups.setdefault(key_fn(key), []).append(f"_tag_{key}")
    exprs = [
        pl.coalesce([pl.col(c) if c in frame.columns else pl.lit(None, pl.String) for c in cols]).alias(k)
        for k, cols in groups.items()
    ]
    return frame.select(exprs)


# --- legacy CUR (CSV) and its Athena/Parquet flavour ------------------------------------------


def _legacy_source(legacy_name: str) -> str:
    category, _, name = legacy_name.partition("/")
    if category == "resourceTags":
        return "_tag_" + name.removeprefix("user:")
    return athena_column(legacy_name)


def legacy_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical AWS rows -> legacy CUR CSV columns, every value a string (empty when absent)."""
    exprs: list[pl.Expr] = []
    for name in LEGACY_CUR_COLUMNS:
        src = _legacy_source(name)
        if src not in frame.columns:
            e = pl.lit(None, pl.String)
        elif src in CUR2_NUMERIC_SCALES:
            e = decimal_str(pl.col(src), CUR2_NUMERIC_SCALES[src])
        elif src in CUR2_TIMESTAMP_COLUMNS:
            e = epoch_ms_to_datetime(pl.col(src)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            e = pl.col(src).cast(pl.String)
        exprs.append(e.alias(name))
    return frame.select(exprs)


def legacy_manifest_columns() -> list[dict[str, str]]:
    """``columns`` of a legacy CUR manifest: category, name and AWS's type names."""
    out = []
    for name in LEGACY_CUR_COLUMNS:
        category, _, col = name.partition("/")
        src = _legacy_source(name)
        if name == "identity/TimeInterval":
            kind = "Interval"
        elif src in CUR2_TIMESTAMP_COLUMNS:
            kind = "DateTime"
        elif src in CUR2_NUMERIC_SCALES:
            kind = "OptionalBigDecimal"
        elif category in ("identity", "bill", "lineItem"):
            kind = "String"
        else:
            kind = "OptionalString"
        out.append({"category": category, "name": col, "type": kind})
    return out


ATHENA_COLUMNS: list[str] = list(dict.fromkeys(athena_column(c) for c in LEGACY_CUR_COLUMNS))


def _athena_type(name: str) -> pa.DataType:
    if name in CUR2_TIMESTAMP_COLUMNS:
        return pa.timestamp("ms")  # Athena's timestamp has no zone; values are UTC
    if name in CUR2_NUMERIC_SCALES:
        return pa.float64()
    return pa.string()


ATHENA_SCHEMA: pa.Schema = pa.schema([pa.field(c, _athena_type(c)) for c in ATHENA_COLUMNS])


def athena_table(frame: pl.DataFrame) -> pa.Table:
    """Canonical AWS rows -> the Athena-integration Parquet flavour of the legacy CUR."""
    tags = _coalesced_tags(frame, lambda k: athena_column(f"resourceTags/user:{k}"))
    exprs: list[pl.Expr] = []
    for name in ATHENA_COLUMNS:
        if name in tags.columns:
            continue
        if name not in frame.columns:
            e = pl.lit(None, pl.String)
        elif name in CUR2_NUMERIC_SCALES:
            e = pl.col(name).cast(pl.Int64)
        elif name in CUR2_TIMESTAMP_COLUMNS:
            e = pl.from_epoch(pl.col(name), time_unit="ms")
        else:
            e = pl.col(name).cast(pl.String)
        exprs.append(e.alias(name))
    flat = pl.concat([frame.select(exprs), tags], how="horizontal").select(ATHENA_COLUMNS)
    return scale_ints(flat.to_arrow()).cast(ATHENA_SCHEMA)


# --- FOCUS -------------------------------------------------------------------------------------


def focus_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical FOCUS rows -> CSV-ready strings: plain decimals, ``...T..:..:..Z`` datetimes."""
    exprs: list[pl.Expr] = []
    for name in FOCUS_COLUMNS:
        if name not in frame.columns:
            e = pl.lit(None, pl.String)
        elif name in FOCUS_MONEY_COLUMNS:
            e = decimal_str(pl.col(name), MONEY_SCALE)
        elif name in FOCUS_QUANTITY_COLUMNS or name in FOCUS_UNIT_PRICE_COLUMNS:
            e = decimal_str(pl.col(name), 4)
        elif name in FOCUS_DATETIME_COLUMNS:
            e = epoch_ms_to_datetime(pl.col(name)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            e = pl.col(name).cast(pl.String)
        exprs.append(e.alias(name))
    return frame.select(exprs)


def focus_manifest_columns() -> list[dict[str, str]]:
    out = []
    for name in FOCUS_COLUMNS:
        if name in FOCUS_MONEY_COLUMNS or name in FOCUS_QUANTITY_COLUMNS or name in FOCUS_UNIT_PRICE_COLUMNS:
            kind = "decimal"
        elif name in FOCUS_DATETIME_COLUMNS:
            kind = "timestamp"
        elif name in ("Tags", "SkuPriceDetails"):
            kind = "json"
        else:
            kind = "string"
        out.append({"name": name, "type": kind})
    return out


# --- files -------------------------------------------------------------------------------------


@dataclass
class WrittenFile:
    """A data file and the ground truth of the rows in it, per (day, billing account, currency)."""

    path: Path
    rows: int
    row_counts: dict[tuple[int, str, str], int] = field(default_factory=dict)


def write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="snappy")


def write_csv_gz(frame: pl.DataFrame, path: Path) -> None:
    """gzip CSV with a zero header mtime, so that the same rows give the same bytes."""
    buf = io.BytesIO()
    frame.write_csv(buf)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        gz.write(buf.getvalue())


T = TypeVar("T")


class RollingWriter(Generic[T]):
    """Accumulate pieces into data files of at most ``target_rows`` rows (or one bigger piece).

    Pieces are never split, so duplicates injected inside a piece stay in the same file as their
    originals. Conversion to the file format runs once per file, not per piece.
    """

    def __init__(
        self,
        path_for: Callable[[int], Path],
        target_rows: int,
        convert: Callable[[pl.DataFrame], T],
        write: Callable[[T, Path], None],
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer")
        self._pending: Future[None] | None = None
        self.path_for = path_for
        self.target_rows = max(1, target_rows)
        self.convert = convert
        self.write = write
        self.files: list[WrittenFile] = []
        self._buffer: list[pl.DataFrame] = []
        self._rows = 0
        self._counts: dict[tuple[int, str, str], int] = {}

    def add(self, piece: Piece) -> None:
        if self._rows and self._rows + piece.frame.height > self.target_rows:
            self.flush()
        self._buffer.append(piece.frame)
        self._rows += piece.frame.height
        for (acct, cur), n in piece.rows.items():
            key = (piece.day, acct, cur)
            self._counts[key] = self._counts.get(key, 0) + n + piece.duplicates.get((acct, cur), 0)
        if self._rows >= self.target_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        path = self.path_for(len(self.files) + 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self._buffer[0] if len(self._buffer) == 1 else pl.concat(self._buffer, how="diagonal_relaxed")
        self._buffer = []
        converted = self.convert(frame)
        del frame
        # Encoding and compression release the GIL: write this file while the next is generated.
        # At most one file is in flight, so memory stays at about two files' worth of rows.
        self._wait()
        self._pending = self._pool.submit(self.write, converted, path)
        self.files.append(WrittenFile(path, self._rows, self._counts))
        self._rows, self._counts = 0, {}

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> list[WrittenFile]:
        try:
            self.flush()
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
        return self.files
