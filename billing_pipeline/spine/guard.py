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


def published_rows(store: Store, target: str, workdir: Path) -> int:
    """Rows of the published slice (its footer), 0 when there is none."""
    if not store.exists(target):
        return 0
    return pl.scan_parquet(store.stage(target, workdir)).select(pl.len()).collect().item()


def _abs_billed(adapter: Adapter, frame: pl.LazyFrame) -> Decimal:
    value = adapter.raw_totals(frame).select(pl.col("cost").abs().sum()).collect().item()
    return Decimal(value) if value is not None else Decimal(0)


def shrink_reason(
    adapter: Adapter, store: Store, target: str, new_file: Path, new_rows: int, guard: PublishGuard, workdir: Path
) -> str | None:
    """Why the new version publishes much less than the published one (None: it does not)."""
    if not store.exists(target):
        return None
    old = pl.scan_parquet(store.stage(target, workdir))
    old_rows = old.select(pl.len()).collect().item()
    if not old_rows:
        return None
    if not new_rows:
        return f"has no rows for this day where the published slice has {old_rows}"
    keep = 1 - guard.max_shrink_fraction
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
