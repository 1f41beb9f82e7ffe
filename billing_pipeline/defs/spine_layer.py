"""The skeleton the day's assets share, so that each layer only says how it is built and what it reports.

The four spine layers and the assets after them (`DayPart`: the cost anomalies, the error budgets) are one
Dagster multi-asset that can be subset: materializing a day runs them in one step, each in build order
(build every source's slice in a scratch directory, one source's failure never stopping the others; report
what it built as metadata; evaluate its checks); the DuckDB views are refreshed once after the spine and
the lake catalogue's check reads them. Check verdicts are recorded as evaluations without a step output
each (`check_results.DayRecorder`). Selecting one asset (or any subset, or only checks) runs just that
part, so a single layer is still re-run on its own.

A backfill runs as one run (`BackfillPolicy.single_run`: the UI's asset backfill, `dagster asset
materialize --partition-range`): its days in order in the one step, each day recorded as a run of that
day records it, a day that fails leaving the others built. One step and one run instead of one per asset,
check and day is most of what a day of demo size costs (README, "Backfills and per-run cost").
"""

import datetime as dt
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    PartitionsDefinition,
    multi_asset,
)

from billing_pipeline.defs.asset_metadata import slice_schemas
from billing_pipeline.defs.check_results import DayRecorder
from billing_pipeline.defs.checks import CATALOGUE_CHECK, DayCheck, catalogue_check_spec, catalogue_result
from billing_pipeline.observability.slis import SliResult
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.escaping import markdown_table
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.lake_views import refresh_views_if_tables_changed
from billing_pipeline.platform.names import LAKE_POOL, SPINE_GROUP
from billing_pipeline.platform.parallel import build_each_source
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
    # The day's SLIs of budgeted SLOs as its checks evaluated them, by SLO name (`DayCheck.evaluate`)
    evaluated_slis: dict[str, SliResult] = field(default_factory=dict)

    @classmethod
    def of(cls, context: AssetExecutionContext, billing: BillingResource, day: dt.date) -> "LayerDay":
        return cls(context, billing, billing.config, billing.store(), day)

    def warn(self, message: str) -> None:
        """A warning in the run's log: what metadata cannot read never fails the step."""
        self.context.log.warning(message)

    def each_source(self, layer: str, build: Callable[[SourceConfig, Path], T], workdir: Path) -> list[T]:
        """`build(source, folder)` for every source (`sources_in_parallel` at a time, each in its own folder of
        `workdir`); one source's failure is logged and recorded (the `source_failures` check fails naming it)
        and never stops the other sources (invariant 6)."""
        built = []
        for outcome in build_each_source(self.config.sources, build, workdir, self.config.sources_in_parallel):
            name, error = outcome.source.name, outcome.error
            if error is not None:  # this source only; its previous slices stay
                self.context.log.error(f"source {name!r}, {self.day}, {layer}: {type(error).__name__}: {error}")
            else:
                built.append(outcome.value)
            record_layer_outcome(self.store, self.config.lake_url, name, self.day, layer, error)
        return built

    def slice_urls(self, table: str, sources: Iterable[str]) -> dict[str, str]:
        """source -> the url of its published slice of `table` for the day."""
        return {source: slice_url(self.config.lake_url, table, self.day, source) for source in sources}

    def published_schemas(self, table: str, sources: Iterable[str]) -> dict[str, pl.Schema]:
        """source -> the Parquet schema of its published slice of `table` (absent slices left out)."""
        return slice_schemas(self.store, self.slice_urls(table, sources), self.warn)

    def refresh_views(self) -> None:
        """Refresh the DuckDB views when the set of tables changed; a convenience for analysts, so a failure is
        a warning, not a failed day."""
        try:
            refresh_views_if_tables_changed(self.config.lake_url, self.config.duckdb_file, self.store)
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
    """The materialization's metadata, read from the published slices and the state."""


SPINE_OP = "billing_spine_day"  # the step that materializes a day's selected layers and their checks


def _blocked(results: Sequence[AssetCheckResult], blocking: Set[str]) -> list[str]:
    """Names of the `blocking` checks that failed at ERROR: the assets downstream of theirs are not built."""
    return [
        r.check_name or ""
        for r in results
        if r.check_name in blocking and not r.passed and r.severity == AssetCheckSeverity.ERROR
    ]


LAYER_KEY = "billing/layer"  # metadata of a layer's failure: which layer failed inside the one step
ERROR_CLASS_KEY = "billing/error_class"  # and the class of the error it raised


def _built_and_reported(layer: SpineLayer, run: LayerDay) -> dict[str, object]:
    """Build the layer in a scratch directory and report it (its materialization's metadata)."""

    def build_and_report() -> dict[str, object]:
        with scratch_dir() as workdir:
            built = layer.build(run, workdir)
        return layer.report(run, built)

    return _naming_the_asset(layer.name, build_and_report)


def _naming_the_asset(name: str, build: Callable[[], dict[str, object]]) -> dict[str, object]:
    """`build()`; an error that escapes names its asset, so the run-failure alert says `step <asset>: <error>`
    although the day's assets share one step."""
    try:
        return build()
    except Exception as error:
        raise Failure(
            description=f"{type(error).__name__}: {error}",
            metadata={LAYER_KEY: name, ERROR_CLASS_KEY: type(error).__name__},
        ) from error


@dataclass(frozen=True)
class DayPart:
    """An asset the day's step materializes after the spine (the cost anomalies, the error budgets): its spec,
    its check specs, how it is built (returning its materialization's metadata) and how its selected checks
    are evaluated once it is."""

    spec: AssetSpec
    check_specs: tuple[AssetCheckSpec, ...]
    build: Callable[[LayerDay], dict[str, object]]
    checks: Callable[[LayerDay, Set[AssetCheckKey]], list[AssetCheckResult]]


DayEvent = MaterializeResult | AssetMaterialization | AssetCheckResult | AssetCheckEvaluation


def materialize_days(
    layers: Sequence[SpineLayer],
    checks: Sequence[DayCheck],
    parts: Sequence[DayPart],
    context: AssetExecutionContext,
    billing: BillingResource,
) -> Iterator[DayEvent]:
    """Every day of the run in order (one, or a backfill's range in one run): the spine, then the parts.

    In a ranged run a day that fails is logged and the next day goes on, as the next run of a backfill of
    one run per day would; the step fails at the end naming every day that failed (their partitions have no
    materialization, so the backfill shows them failed)."""
    recorder = DayRecorder(context)
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    failed: list[tuple[dt.date, Exception]] = []
    catalogue_days: list[dt.date] = []  # a ranged run's days whose lake catalogue check is due
    for day in days:
        try:
            run = LayerDay.of(context, billing, day)
            if (yield from _materialize_day(layers, checks, parts, run, recorder)):
                catalogue_days.append(day)
        except Exception as error:
            if not recorder.ranged:
                raise
            failed.append((day, error))
            context.log.error(f"{day} failed: {type(error).__name__}: {error}")
    if catalogue_days:
        yield from _catalogue_once(context, billing, recorder, catalogue_days)
    if failed:
        first = failed[0][1]
        raise Failure(
            description=f"{len(failed)} of {len(days)} day(s) failed: "
            + "; ".join(f"{day}: {type(error).__name__}: {error}" for day, error in failed),
            metadata={
                FAILED_DAYS_KEY: ", ".join(day.isoformat() for day, _ in failed),
                **(first.metadata if isinstance(first, Failure) else {ERROR_CLASS_KEY: type(first).__name__}),
            },
        )


FAILED_DAYS_KEY = "billing/failed_days"  # metadata of a ranged run's failure: the days without materializations


def _materialize_day(
    layers: Sequence[SpineLayer],
    checks: Sequence[DayCheck],
    parts: Sequence[DayPart],
    run: LayerDay,
    recorder: DayRecorder,
) -> Generator[DayEvent, None, bool]:
    """The selected layers in build order, each built, reported and checked; then the views, once, and the
    lake catalogue's check, which reads them (in a ranged run, once for all days: returns whether it is
    due for this day); then the selected parts and their checks."""
    context, billing = run.context, run.billing
    selected = context.selected_asset_keys
    selected_checks = context.selected_asset_check_keys
    blocked_by: list[str] = []
    try:
        for layer in layers:
            key = AssetKey(layer.name)
            if blocked_by:  # this layer and its checks wait, as Dagster skips the steps below a failed blocking check
                if key in selected:
                    context.log.error(f"{layer.name} not built for {run.day}: blocking check(s) failed: {blocked_by}")
                continue
            if key in selected:
                yield recorder.materialized(key, run.day, _built_and_reported(layer, run))
            results = [
                check.evaluate(billing, run.day, context.log, run.evaluated_slis)
                for check in checks
                if check.asset == key and check.spec_key in selected_checks
            ]
            yield from (recorder.checked(result, run.day) for result in results)
            blocked_by += _blocked(results, {check.name for check in checks if check.blocking})
    finally:  # once per day, also after a layer failed (the layers before it were published)
        run.refresh_views()  # the views are globs: later slices show up in them by themselves
    catalogue_due = CATALOGUE_CHECK in selected_checks and not blocked_by
    if catalogue_due and not recorder.ranged:
        yield recorder.checked(catalogue_result(billing, context.log), run.day)
    for part in parts:
        name = part.spec.key.to_user_string()
        if blocked_by:
            if part.spec.key in selected:
                context.log.error(f"{name} not built for {run.day}: blocking check(s) failed: {blocked_by}")
            continue
        if part.spec.key in selected:
            yield recorder.materialized(part.spec.key, run.day, _naming_the_asset(name, partial(part.build, run)))
        results = part.checks(run, selected_checks)
        yield from (recorder.checked(result, run.day) for result in results)
        blocked_by += _blocked(results, {spec.name for spec in part.check_specs if spec.blocking})
    return catalogue_due and recorder.ranged


def _catalogue_once(
    context: AssetExecutionContext, billing: BillingResource, recorder: DayRecorder, days: Sequence[dt.date]
) -> Iterator[DayEvent]:
    """A ranged run's `lake_catalogue` check: evaluated once, after its last day, over the lake the run left
    (the views are globs over every day's files, so the last evaluation reads every day's), and recorded for
    each of its days. Evaluating it after every day read the whole lake each day: 2.4 s a day on a year's
    lake of demo size, most of what grew over a year's backfill."""
    result = catalogue_result(billing, context.log)
    note = f" (a backfill run of {len(days)} days: evaluated once after its last day, {days[-1]})"
    result = result._replace(description=(result.description or "") + note)
    for day in days:
        yield recorder.checked(result, day)


def build_spine_asset(
    layers: Sequence[SpineLayer],
    checks: Sequence[DayCheck],
    partitions_def: PartitionsDefinition,
    parts: Sequence[DayPart] = (),
) -> AssetsDefinition:
    """The spine's layers (and the parts after them) as one multi-asset over the given daily partitions:
    each layer grouped in the spine, owned, after its upstream layer, with its checks; any subset of assets
    and checks can run. A backfill of many days runs as one run (`BackfillPolicy.single_run`), its days in
    order in the one step."""
    specs = [
        AssetSpec(
            layer.name,
            description=layer.description,
            group_name=SPINE_GROUP,
            kinds=set(layer.kinds),
            owners=OWNERS,
            deps=list(layer.deps),
            partitions_def=partitions_def,
            skippable=True,  # a layer below a failed blocking check is not built
        )
        for layer in layers
    ]
    specs += [part.spec for part in parts]  # skippable too (`observability_assets`)
    names = {layer.name for layer in layers}
    own_checks = [check for check in checks if check.asset.to_user_string() in names]
    check_specs = [check.spec(partitions_def) for check in own_checks]
    if CATALOGUE_CHECK.asset_key.to_user_string() in names:
        check_specs.append(catalogue_check_spec(partitions_def))
    check_specs += [spec for part in parts for spec in part.check_specs]

    @multi_asset(
        name=SPINE_OP,
        specs=specs,
        check_specs=check_specs,
        partitions_def=partitions_def,
        can_subset=True,
        backfill_policy=BackfillPolicy.single_run(),
        pool=LAKE_POOL,  # limited to 1 in deploy/: a one-run backfill carries no day tag to queue a sensor's run by
    )
    def _materialize(context: AssetExecutionContext, billing: BillingResource) -> Iterator[DayEvent]:
        yield from materialize_days(layers, own_checks, parts, context, billing)

    return _materialize
