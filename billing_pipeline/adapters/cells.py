"""Cells as delivered, read one way for every provider: text, timestamps and money.

Real exports write the same value many ways (`NULL`, `None`, empty strings; a dozen timestamp
spellings; money as text or floats). These expressions read every spelling into one typed value,
and say why a cell cannot be used (`money_problem`), so a bad cell is quarantined, never guessed.
"""

from __future__ import annotations

import datetime as dt
import functools

import polars as pl

NULL_LITERALS = ("", "None", "NULL", "null", "NaN", "nan")
# No amount at all in a money cell. Not `NaN`: a delivered NaN is not a number, and is quarantined.
MONEY_NULLS = ("", "None", "NULL", "null")
# |amount| at or above this, in the billing currency, is a corrupt cell, not a charge (quarantined);
# it also keeps the arithmetic between a row's amounts inside what Decimal(38, 18) holds (20 digits).
MONEY_LIMIT = 10**15
# Timestamp spellings of every provider, as (format, has a zone, shape). `%+` is RFC 3339 / ISO 8601
# with a zone: `T`, `t` or space between date and time, 0-9 decimals, `Z`, `z`, ` UTC`, `+hh:mm`,
# `+hhmm` (any offset, converted to UTC); it reads nearly every cell of real exports. A space around
# the other formats accepts surrounding whitespace. Each format other than `%+` is tried only on the
# cells of its shape (`_datetime_shapes`: byte tests, far cheaper than a parse), so a day written in
# one spelling is parsed about once per cell, not once per format. Cells without a zone are UTC.
DATETIME_FORMATS: tuple[tuple[str, bool, str], ...] = (
    ("%+", True, "any"),
    (" %Y-%m-%dT%H:%M:%S%.f ", False, "unzoned"),
    (" %Y-%m-%d %H:%M:%S%.f ", False, "unzoned"),
    (" %Y-%m-%dT%H:%M%#z ", True, "minutes"),  # 2026-10-01T00:00Z, ...T00:00+05:30
    (" %Y-%m-%dT%H:%M ", False, "minutes"),
    (" %Y-%m-%d ", False, "date"),
    (" %Y%m%dT%H%M%S%.f%#z ", True, "compact"),  # AWS manifests: 20261001T000000.000Z
    (" %m/%d/%Y ", False, "slashed"),  # Azure EA: 09/21/2023, 9/2/2023
    (" %m/%d/%Y %H:%M:%S ", False, "slashed"),
    (" %m/%d/%Y %I:%M:%S %p ", False, "slashed"),
    (" %d.%m.%Y ", False, "dotted"),  # localized Azure: 21.09.2023
)


@functools.lru_cache(maxsize=4096)
def text(name: str) -> pl.Expr:
    """A text column with the placeholder literals of real exports turned into nulls (built once per name:
    expressions are immutable, and a day's plans ask for the same columns again)."""
    value = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(value.is_in(NULL_LITERALS)).then(None).otherwise(value)


def parse_datetime(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """UTC datetime from a text or temporal column; unparseable text becomes null (and is quarantined).

    The expression of a plain column is built once per (name, type): building it takes about 2 ms of
    Python (a dozen formats), and every file of every delivery asks for its timestamp columns again."""
    if expr.meta.is_column():
        return _parse_datetime_column(expr.meta.output_name(), dtype)
    return _parse_datetime(expr, dtype)


@functools.lru_cache(maxsize=4096)
def _parse_datetime_column(name: str, dtype: pl.DataType) -> pl.Expr:
    return _parse_datetime(pl.col(name), dtype)


def _parse_datetime(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return expr.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    value = expr.cast(pl.String)
    shapes = _datetime_shapes(value)
    zoned: list[pl.Expr] = []
    unzoned: list[pl.Expr] = []
    for fmt, has_zone, shape in DATETIME_FORMATS:
        might = shapes[shape]
        cells = value if might is None else pl.when(might).then(value)
        parsed = cells.str.to_datetime(fmt, strict=False, time_unit="us")
        (zoned if has_zone else unzoned).append(parsed)
    # `%+` takes no surrounding whitespace: padded cells are stripped first (only those: stripping
    # every cell would cost more than the parse)
    padded = pl.when(value.str.starts_with(" ") | value.str.ends_with(" ")).then(value).str.strip_chars()
    zoned.append(padded.str.to_datetime("%+", strict=False, time_unit="us"))
    return pl.coalesce([*zoned, pl.coalesce(unzoned).dt.replace_time_zone("UTC")])


def _datetime_shapes(value: pl.Expr) -> dict[str, pl.Expr | None]:
    """Per shape, which cells of `value` a format of that shape might read (a superset, by byte tests); None:
    every cell."""
    colons = value.str.count_matches(":", literal=True)
    zulu = value.str.ends_with("Z")
    has_colon = value.str.contains(":", literal=True)
    return {
        "any": None,
        "unzoned": ~zulu,  # an offset is only told apart by the parse
        "minutes": (colons == 1) | ((colons == 2) & ~zulu),  # hh:mm, plus an offset's colon
        "date": ~has_colon,
        "compact": value.str.slice(4, 1) != "-",
        "slashed": value.str.contains("/", literal=True),
        "dotted": value.str.contains(".", literal=True) & ~has_colon,
    }


def parse_money(expr: pl.Expr, dtype: pl.DataType, limit: int | None = None) -> pl.Expr:
    """Decimal from text or float, converted once; placeholders become null.

    A float goes through its shortest round-trip text (`0.1`, not 0.1000000000000000055...), which
    is the number the provider meant; casting the binary value directly would invent digits. Text
    or floats that are not a finite number MONEY can hold (`NaN`, `inf`, `1e30`) become null, never
    an error. With `limit` (money columns: `MONEY_LIMIT`), so does |x| >= limit, so that no arithmetic
    between a row's amounts can overflow; `money_problem` says why, and the row is quarantined.
    """
    from billing_pipeline.platform.focus import MONEY

    if dtype == pl.String:
        value = expr.str.strip_chars()
        value = pl.when(value.is_in(MONEY_NULLS)).then(None).otherwise(value)
        value = value.cast(MONEY, strict=False)
    elif dtype.is_float():
        value = expr.cast(pl.String).cast(MONEY, strict=False)
    else:
        value = expr.cast(MONEY, strict=False)
    return value if limit is None else pl.when(value.abs() < limit).then(value)


def money_problem(expr: pl.Expr, dtype: pl.DataType, column: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
    """Why a numeric cell cannot be used, as quarantine reason text naming `column` and the value;
    null where it can (a number, or no value at all: null or a placeholder like `""`, `NULL`).

    - text that is not a number: `unparseable number 12,5O in <column>`;
    - not a finite number MONEY can hold (NaN, +-inf as floats or as text, `1e30`), or |x| >= `limit`
      (money columns: `MONEY_LIMIT`; `limit=None` for quantities): `non-finite or out-of-range money
      inf in <column>`. A delivered `NaN` is not a placeholder: it is quarantined, not made null.
    """
    from billing_pipeline.platform.focus import MONEY

    if dtype == pl.String:
        shown = expr.str.strip_chars()
        present = shown.is_not_null() & ~shown.is_in(MONEY_NULLS)
        number = shown.cast(pl.Float64, strict=False)
        amount = shown.cast(MONEY, strict=False)
    elif dtype.is_float():
        shown, present, number = expr.cast(pl.String), expr.is_not_null(), expr
        amount = shown.cast(MONEY, strict=False)
    elif dtype.is_numeric():  # integers, decimals: a value MONEY cannot hold becomes null, never an error
        shown, present, number = expr.cast(pl.String), expr.is_not_null(), expr
        amount = expr.cast(MONEY, strict=False)
    else:
        return pl.lit(None, dtype=pl.String)
    unparseable = present & number.is_null() & amount.is_null()
    unusable = amount.is_null()
    if limit is not None:
        unusable = unusable | (amount >= limit) | (amount <= -limit)
    return (
        pl.when(unparseable)
        .then(pl.format("unparseable number {} in {}", shown, pl.lit(column)))
        .when(present & unusable)
        .then(pl.format("non-finite or out-of-range money {} in {}", shown, pl.lit(column)))
    )


def money_is_missing(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """True where a money cell holds no value at all: null, or a placeholder (`""`, `None`, `NULL`)."""
    if dtype == pl.String:
        value = expr.str.strip_chars()
        return value.is_null() | value.is_in(MONEY_NULLS)
    return expr.is_null()


def column_or_null(schema: pl.Schema, name: str, dtype: pl.DataType = pl.String) -> pl.Expr:
    return pl.col(name) if name in schema else pl.lit(None, dtype=dtype)


def parse_timestamp(value: str | None, fallback: dt.datetime) -> dt.datetime:
    """A manifest or listing time as an aware UTC datetime, in any spelling `parse_datetime` reads
    (no zone: UTC); `fallback` when there is none or it cannot be read."""
    if not value or not value.strip():
        return fallback
    try:
        parsed = dt.datetime.fromisoformat(value.strip())  # the usual ISO spellings, without polars
    except ValueError:
        parsed = pl.select(parse_datetime(pl.lit(value, dtype=pl.String), pl.String)).item()
        if parsed is None:
            return fallback
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def modified_at(modified: str) -> dt.datetime:
    """A listing's modification time (ISO string or epoch seconds) as an aware UTC datetime."""
    try:
        return dt.datetime.fromtimestamp(float(modified), tz=dt.UTC)
    except ValueError:
        return parse_timestamp(modified, dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
