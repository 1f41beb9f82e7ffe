"""Intermediate values a mapping uses in many output columns, computed once per row as columns.

A mapping written as Python expressions shares sub-expressions freely (the cleaned `ChargeType` feeds a
dozen FOCUS columns), but polars receives each output column as a tree with every shared part copied
in: a CSV delivery's mapping came to 230-600 KB of plan, and converting and running that plan cost
20-80 ms per slice whatever its rows (a demo day's slices are 400 rows). `SharedColumns.share` names
such a value: its expression is computed once, as a column added before the mapping's select, and the
output columns read it by name. The values are the same either way; the plan is smaller.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

PREFIX = "__shared_"


class SharedColumns:
    """Named expressions added to a frame as columns, in as many `with_columns` as their dependencies need."""

    def __init__(self) -> None:
        self._levels: dict[str, tuple[int, pl.Expr]] = {}

    def __contains__(self, key: str) -> bool:
        return PREFIX + key in self._levels

    def share(self, key: str, build: Callable[[], pl.Expr]) -> pl.Expr:
        """A reference to the column holding `build()`, built for the first ask of `key` (a later ask of the
        same key gets that column: a key must name one value)."""
        name = PREFIX + key
        if name not in self._levels:
            expr = build()
            needs = [self._levels[c][0] for c in expr.meta.root_names() if c in self._levels]
            self._levels[name] = (1 + max(needs, default=0), expr.alias(name))
        return pl.col(name)

    def apply(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """`frame` with every shared column (the mapping's select leaves them out of its output)."""
        for level in sorted({level for level, _ in self._levels.values()}):
            frame = frame.with_columns([expr for at, expr in self._levels.values() if at == level])
        return frame


def shared(store: SharedColumns | None, key: str, build: Callable[[], pl.Expr]) -> pl.Expr:
    """`build()` itself without a store (a plan that is not a mapping's select), else its shared column."""
    return build() if store is None else store.share(key, build)
