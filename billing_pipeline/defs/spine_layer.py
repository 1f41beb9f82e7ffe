"""The skeleton the four spine assets share, so that each asset only says how its layer is built and
what it reports.

A spine asset materializes one day: it builds every source's slice in a scratch directory (one source's
failure never stops the others), refreshes the DuckDB views over the lake, then reports what it built as
metadata (per-currency money, a preview people can read, the column schema of the published slices).
"""

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import polars as pl
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, PartitionsDefinition, asset

from billing_pipeline.defs.asset_metadata import slice_schemas
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.escaping import markdown_table
from billing_pipeline.platform.lake import refresh_views, slice_url
from billing_pipeline.platform.names import SPINE_GROUP
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.layer_state import record_layer_outcome
from resources import BillingResource

Built = TypeVar("Built")
T = TypeVar("T")

OWNERS = ["team:finops-platform"]
NO_EXPORT = "_no export delivered for this day_"


def markdown_preview(rows: Sequence[dict[str, object]]) -> str:
    """A preview table; its cells (versions, account ids) are delivered text, escaped for Markdown."""
    return markdown_table(rows, empty=NO_EXPORT)


@dataclass(frozen=True)
class LayerDay:
    """One spine asset materializing one day: the run's context and resource, and what they resolve to."""

    context: AssetExecutionContext
    billing: BillingResource
    config: BillingConfig
    store: Store
    day: dt.date

    @classmethod
    def of(cls, context: AssetExecutionContext, billing: BillingResource) -> "LayerDay":
        return cls(context, billing, billing.config, billing.store(), dt.date.fromisoformat(context.partition_key))

    def warn(self, message: str) -> None:
        """A warning in the run's log: what metadata cannot read never fails the step."""
        self.context.log.warning(message)

    def each_source(self, layer: str, build: Callable[[SourceConfig], T]) -> list[T]:
        """`build` for every source; one source's failure is logged and recorded (the `source_failures`
        check fails naming it) and never stops the other sources (invariant 6)."""
        built = []
        for source in self.config.sources:
            try:
                built.append(build(source))
            except Exception as error:  # noqa: BLE001 - this source only; its previous slices stay
                self.context.log.error(f"source {source.name!r}, {self.day}, {layer}: {type(error).__name__}: {error}")
                record_layer_outcome(self.store, self.config.lake_url, source.name, self.day, layer, error)
                continue
            record_layer_outcome(self.store, self.config.lake_url, source.name, self.day, layer, None)
        return built

    def slice_urls(self, table: str, sources: Iterable[str]) -> dict[str, str]:
        """source -> the url of its published slice of `table` for the day."""
        return {source: slice_url(self.config.lake_url, table, self.day, source) for source in sources}

    def published_schemas(self, table: str, sources: Iterable[str]) -> dict[str, pl.Schema]:
        """source -> the Parquet schema of its published slice of `table` (absent slices left out)."""
        return slice_schemas(self.store, self.slice_urls(table, sources), self.warn)

    def refresh_views(self) -> None:
        """Refresh the DuckDB views; a convenience for analysts, so a failure is a warning, not a failed day."""
        try:
            refresh_views(self.config.lake_url, self.config.duckdb_file, self.billing.store())
        except Exception as error:  # noqa: BLE001 - e.g. one damaged slice in the lake: the layers are still built
            self.warn(f"DuckDB views not refreshed: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class SpineLayer(Generic[Built]):
    """One spine asset: its Dagster identity and the two steps in which the layers differ."""

    name: str
    description: str
    kinds: frozenset[str]
    deps: tuple[str, ...]
    build: Callable[[LayerDay, Path], Built]
    """Builds every source of the day in the scratch directory (deleted afterwards)."""
    report: Callable[[LayerDay, Built], dict[str, object]]
    """The materialization's metadata, read once the DuckDB views are refreshed."""


def materialize_layer(
    layer: SpineLayer[Built], context: AssetExecutionContext, billing: BillingResource
) -> MaterializeResult:
    """Build, refresh the views, report: the order every spine asset follows."""
    run = LayerDay.of(context, billing)
    with scratch_dir() as workdir:
        built = layer.build(run, workdir)
    run.refresh_views()
    return MaterializeResult(metadata=layer.report(run, built))


def build_layer_asset(layer: SpineLayer[Built], partitions_def: PartitionsDefinition) -> AssetsDefinition:
    """The Dagster asset of `layer`: grouped in the spine, owned, daily, after its upstream layer."""

    @asset(
        name=layer.name,
        partitions_def=partitions_def,
        group_name=SPINE_GROUP,
        kinds=set(layer.kinds),
        owners=OWNERS,
        deps=list(layer.deps) or None,
        description=layer.description,
    )
    def _materialize(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        return materialize_layer(layer, context, billing)

    return _materialize
