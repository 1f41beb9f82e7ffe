"""Vectorised building blocks shared by the generator's models and writers.

Money is carried as integers in units of 10**-scale all the way to the writers, so that a float
written to Parquet is the nearest double to a short decimal and a CSV cell is that decimal exactly.
"""

from __future__ import annotations

import calendar
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class Month:
    """A calendar billing period, possibly truncated to its first ``days`` usage days."""

    year: int
    month: int
    days: int

    @classmethod
    def parse(cls, label: str, days: int | None = None) -> Month:
        """Parse ``YYYY-MM``; ``days=None`` keeps the whole month."""
        try:
            year_s, month_s = label.split("-")
            year, month = int(year_s), int(month_s)
            days_in_month = calendar.monthrange(year, month)[1]
        except (ValueError, calendar.IllegalMonthError) as exc:
            raise ValueError(f"month must look like 2026-10, got {label!r}") from exc
        if days is None:
            days = days_in_month
        if not 1 <= days <= days_in_month:
            raise ValueError(f"days must be within 1..{days_in_month} for {label}, got {days}")
        return cls(year, month, days)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def days_in_month(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive end of the calendar month (the billing period never shrinks with ``days``)."""
        return self.start + timedelta(days=self.days_in_month)

    def day(self, d: int) -> date:
        return date(self.year, self.month, d)

    def day_start(self, d: int) -> datetime:
        return self.start + timedelta(days=d - 1)

    def day_ms(self, d: int) -> int:
        return epoch_ms(self.day_start(d))


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def iso_z(ts: datetime, millis: bool = False) -> str:
    """``2026-10-05T00:00:00Z`` (or ``...00.000Z``): the UTC spellings the exports use."""
    if millis:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def rng_for(*key: int) -> np.random.Generator:
    """A generator keyed by integers: the same key always gives the same stream."""
    return np.random.default_rng(list(key))


def stable_int(text: str) -> int:
    """A process-independent integer for a name (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stable_uuid(*parts: object) -> str:
    """A UUID4-shaped id derived from ``parts``: deterministic execution and assembly ids."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def stable_code(text: str, length: int, alphabet: str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789") -> str:
    """A short upper-case code (SKU-like) derived from ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """Turn an ``(n, width)`` uint8 matrix into an Arrow string array without a Python loop."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def random_tokens(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray = BASE32) -> pa.Array:
    """``n`` random fixed-width tokens (line item ids, resource id suffixes)."""
    idx = rng.integers(0, len(alphabet), size=(n, width), dtype=np.uint8)
    return fixed_width_strings(alphabet[idx])


def decimal_str(col: pl.Expr, scale: int) -> pl.Expr:
    """Format an integer column in units of 10**-scale as a plain decimal (``12.5``, ``-0.00000001``).

    Floats would print ``1e-08``; this keeps CSV cells exact and free of exponents.
    """
    unit = 10**scale
    a = col.abs()
    int_part = (a // unit).cast(pl.String)
    frac = (a % unit).cast(pl.String).str.zfill(scale).str.strip_chars_end("0")
    body = (
        pl.when(frac == "")
        .then(pl.concat_str([int_part, pl.lit(".0")]))
        .otherwise(pl.concat_str([int_part, pl.lit("."), frac]))
    )
    return pl.when(col < 0).then(pl.concat_str([pl.lit("-"), body])).otherwise(body)


def epoch_ms_to_datetime(col: pl.Expr) -> pl.Expr:
    return pl.from_epoch(col, time_unit="ms").dt.replace_time_zone("UTC")


def map_from_columns(frame: pl.DataFrame, pairs: list[tuple[str, str]]) -> pa.MapArray:
    """Build a MAP<string,string> array from string columns: one entry per non-null cell.

    ``pairs`` is ``[(map_key, column_name), ...]``; absent columns are skipped. Rows with no
    non-null cell get an empty map, as in AWS's export.
    """
    n = frame.height
    present = [(k, c) for k, c in pairs if c in frame.columns]
    if not present:
        offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
        return pa.MapArray.from_arrays(offsets, pa.array([], pa.string()), pa.array([], pa.string()))
    keys = [k for k, _ in present]
    valid = np.stack([frame[c].is_not_null().to_numpy() for _, c in present], axis=1)
    counts = valid.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    flat = valid.ravel()
    k = len(present)
    key_idx = np.tile(np.arange(k, dtype=np.int32), n)[flat]
    pos = (np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()[flat]
    values = pa.concat_arrays([frame[c].to_arrow().cast(pa.string()) for _, c in present])
    items = values.take(pa.array(pos))
    key_arr = pa.array(keys, pa.string()).take(pa.array(key_idx))
    return pa.MapArray.from_arrays(pa.array(offsets), key_arr, items)


def take_strings(values: list[str | None], idx: np.ndarray) -> pl.Series:
    """Gather from a small list of strings by an index array (a vectorised lookup table)."""
    return pl.Series(values, dtype=pl.String).gather(pl.Series(idx, dtype=pl.UInt32))


def constant_strings(value: str | None, n: int) -> pl.Series:
    return pl.repeat(value, n, dtype=pl.String, eager=True)


@dataclass
class Piece:
    """A slice of one usage day: its canonical rows and the ground truth they carry."""

    day: int
    frame: pl.DataFrame
    billed: dict[tuple[str, str], int]
    effective: dict[tuple[str, str], int]
    rows: dict[tuple[str, str], int]
    duplicates: dict[tuple[str, str], int]
