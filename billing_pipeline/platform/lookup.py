"""Table lookups that stream: a key column mapped through a small key -> value table.

Why not `Expr.replace_strict` / `Expr.replace`: in polars 2.1's streaming engine they are run as a
columnar function that holds every row of its input in memory before it answers (measured: a
3M-row sink of one replaced string column peaks at 335 MiB against 110 MiB for any elementwise
string expression; with a dozen lookups over a 3M-row CUR day the normalized layer peaked at
4.2 GiB). A cast to an `Enum` of the table's keys gives each row the position of its key (null
when absent), and gathering the values at those positions is elementwise, so it streams.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl


def key_index(key: pl.Expr, keys: Sequence[str] | pl.Series) -> pl.Expr:
    """Position of each row's key in `keys` (unique, non-null strings); null when absent or null."""
    categories = pl.Series("keys", keys, dtype=pl.String)
    return key.cast(pl.String).cast(pl.Enum(categories), strict=False).to_physical()


def gather(index: pl.Expr, values: Sequence[Any] | pl.Series, dtype: pl.DataType | None = None) -> pl.Expr:
    """`values[index]` per row (null where the index is null): the value half of a lookup."""
    return pl.lit(pl.Series("values", values, dtype=dtype)).gather(index)


def lookup(
    key: pl.Expr,
    table: Mapping[str, Any],
    default: Any = None,
    return_dtype: pl.DataType | None = pl.String,
) -> pl.Expr:
    """`replace_strict(table, default=...)`, streaming: keys missing from `table` get `default`
    (a value or an expression), keys present get their value even when that value is null."""
    index = key_index(key, list(table))
    found = gather(index, list(table.values()), return_dtype)
    if default is None:
        return found
    fallback = default if isinstance(default, pl.Expr) else pl.lit(default, dtype=return_dtype)
    return pl.when(index.is_null()).then(fallback).otherwise(found)


# Above this many distinct values (estimated, HyperLogLog) a per-distinct table would hold most of the column
# in memory: the transform then runs per row instead.
PER_DISTINCT_LIMIT = 100_000


def per_distinct_value(
    frame: pl.LazyFrame, value: pl.Expr, transforms: Mapping[str, Callable[[pl.Expr], pl.Expr]]
) -> dict[str, pl.Expr]:
    """Per name, `transform(value)` on every row of `frame`, computed once per distinct value and looked up
    per row.

    For costly per-row text work on a column with few distinct values (a day's tag strings: about 2,600
    distinct in a million FOCUS rows, each parsed by regexes). Two narrow streaming passes over the one
    column (an estimate of its distinct values, then the values when there are few), so memory is bounded
    by `PER_DISTINCT_LIMIT`; above it the transforms run per row. Same values either way, nulls included.
    """
    column = frame.select(value.alias("value"))
    estimate = column.select(pl.col("value").approx_n_unique()).collect(engine="streaming").item()
    if estimate > PER_DISTINCT_LIMIT:
        return {name: transform(value) for name, transform in transforms.items()}
    keys = column.unique().collect(engine="streaming").get_column("value").drop_nulls().sort()
    with_null = pl.concat([keys, pl.Series("value", [None], dtype=keys.dtype)])  # null's results go last
    results = with_null.to_frame().select(
        transform(pl.col("value")).alias(name) for name, transform in transforms.items()
    )
    index = pl.when(value.is_null()).then(pl.lit(keys.len(), dtype=pl.UInt32)).otherwise(key_index(value, keys))
    return {name: gather(index, results.get_column(name)) for name in transforms}
