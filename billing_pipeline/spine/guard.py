"""Invariant 5: never publish less than the lake holds without an operator.

A delivery that misses files, or whose schema broke, holds its source's day back; a new version
that would publish much less than the published slice waits for an operator's acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import Adapter, FileProblem
from billing_pipeline.platform.storage import Store


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


class RawSliceMissingError(DeliveryIncompleteError):
    """The raw slice file is not there although the lake's state records rows published from it (lost, or
    `raw_lake_url` moved): the layers above keep their slices rather than read the absence as "no rows"."""


def held_back_kind(error: DeliveryIncompleteError) -> str:
    """How the state's `held_back` section names a hold-back: `shrink`, `drift` or `incomplete`."""
    if isinstance(error, PublishHeldBackError):
        return "shrink"
    return "drift" if isinstance(error, SchemaDriftError) else "incomplete"


@dataclass(frozen=True)
class PublishGuard:
    """Invariant 5 for one (day, source): how far a new version may fall, and who accepted a fall."""

    max_shrink_fraction: float = 0.5
    accepted_by: str | None = None  # an operator accepted this source's billing period publishing less
    # rows the lake's state records as published for the (day, source): what counts when the slice file is
    # not where the guard looks (raw_lake_url moved, a file lost), so that a gap there lets nothing shorter in
    recorded_rows: int = 0


def published_rows(store: Store, target: str, workdir: Path, recorded_rows: int = 0) -> int:
    """Rows of the published slice (its footer); without the file, the rows the state records as published."""
    if not store.exists(target):
        return recorded_rows
    return pl.scan_parquet(store.stage(target, workdir)).select(pl.len()).collect().item()


def _abs_billed(adapter: Adapter, frame: pl.LazyFrame) -> Decimal:
    value = adapter.raw_totals(frame).select(pl.col("cost").abs().sum()).collect().item()
    return Decimal(value) if value is not None else Decimal(0)


def shrink_reason(
    adapter: Adapter, store: Store, target: str, new_file: Path, new_rows: int, guard: PublishGuard, workdir: Path
) -> str | None:
    """Why the new version publishes much less than the published one (None: it does not).

    Without the published slice file, the state's recorded rows are compared (the cost cannot be).
    """
    keep = 1 - guard.max_shrink_fraction
    if not store.exists(target):
        old_rows, where = guard.recorded_rows, f" (the lake's state; the slice file is missing at {target})"
        if not old_rows:
            return None
        if not new_rows:
            return f"has no rows for this day where {old_rows} are published{where}"
        if new_rows < old_rows * keep:
            return (
                f"has {new_rows} rows for this day against {old_rows} published{where}, a fall of more than "
                f"{guard.max_shrink_fraction:.0%}"
            )
        return None
    old = pl.scan_parquet(store.stage(target, workdir))
    old_rows = old.select(pl.len()).collect().item()
    if not old_rows:
        return None
    if not new_rows:
        return f"has no rows for this day where the published slice has {old_rows}"
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
