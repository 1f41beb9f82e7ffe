"""The spine as one multi-asset step that can be subset: a day of `billing_daily` runs the four layers and
their checks in one step, a single layer can still be re-run on its own, and a blocking check still stops
the layers below it. On a real instance, through the code location's job (nothing mocked)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.assets import SPINE_LAYERS
from billing_pipeline.defs.checks import SPINE_KEYS, anomaly_day_checks, spine_day_checks
from billing_pipeline.defs.observability_assets import cost_anomalies_part, slo_part
from billing_pipeline.defs.spine_layer import SPINE_OP, build_spine_asset
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.lake_views import refresh_views_if_tables_changed
from billing_pipeline.platform.names import COST_ANOMALIES, ENRICHED, NORMALIZED, RAW, RECONCILED, SLO_BUDGETS, SPINE
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store
from partitions import daily_usage_partitions
from resources import BillingResource

from ..conftest import write_config
from ..ops_fixtures import cur2_month_frame, deliver_cur2

PERIOD = "2023-11"
DAY = dt.date(2023, 11, 3)


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _setup(tmp_path: Path, frame: pl.DataFrame, **extra) -> Path:
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", frame, PERIOD)
    return write_config(
        tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01", **extra
    )


def _run(config_path: Path, instance, selection: list[AssetKey] | None = None):
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    return job.execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, raise_on_error=False, asset_selection=selection
    )


def _materialize_day_asset(asset, config_path: Path, instance):
    """`DAY` through a day's multi-asset built by the test (a check made blocking, a failing part)."""
    return materialize(
        [asset],
        partition_key=DAY.isoformat(),
        instance=instance,
        resources={"billing": BillingResource(config_path=str(config_path))},
        raise_on_error=False,
    )


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}


def _evaluated(result) -> dict[tuple[str, str], str | None]:
    """(asset, check) -> the partition its evaluation recorded."""
    return {
        (e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name): (
            e.event_specific_data.partition
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_a_day_runs_the_four_layers_and_their_checks_in_one_step(tmp_path: Path, instance) -> None:
    frame = cur2_month_frame(PERIOD, days=[DAY])
    config_path = _setup(tmp_path, frame)
    result = _run(config_path, instance)
    assert result.success
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    # no step per layer, none per check, none for the assets after the spine: the spine's checks
    # (`lake_catalogue` too, after the step refreshed the views it reads), then the cost anomalies and the
    # error budgets with theirs, all in one step
    assert steps == {SPINE_OP}, steps
    # a non-blocking check's verdict is an evaluation without a step output (one event less each)
    outputs = [e.step_key for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert outputs == [SPINE_OP] * 6, outputs
    assert set(SPINE) | {COST_ANOMALIES, SLO_BUDGETS} == _materialized(result)
    graph = build_definitions(config_path).resolve_asset_graph()
    spine_checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys if k.asset_key in SPINE_KEYS}
    evaluated = _evaluated(result)
    assert spine_checks <= set(evaluated)
    assert {evaluated[k] for k in spine_checks} == {DAY.isoformat()}  # every evaluation records its day
    config = load_config(config_path)
    normalized_rows = pl.read_parquet(slice_url(config.lake_url, NORMALIZED, DAY, "alpha")).height
    assert normalized_rows == frame.height  # the delivered rows, none lost in the one step
    views = duckdb.connect(config.duckdb_file, read_only=True).sql("SELECT view_name FROM duckdb_views()").fetchall()
    assert set(SPINE) <= {name for (name,) in views}  # the views, refreshed once at the end of the step


def test_one_layer_rebuilds_alone_from_the_raw_slice_and_leaves_the_others_untouched(tmp_path: Path, instance) -> None:
    frame = cur2_month_frame(PERIOD, days=[DAY])
    config_path = _setup(tmp_path, frame)
    assert _run(config_path, instance).success
    config = load_config(config_path)
    urls = {table: Path(slice_url(config.lake_url, table, DAY, "alpha")) for table in SPINE}
    before = {table: url.stat().st_mtime_ns for table, url in urls.items()}
    urls[NORMALIZED].unlink()  # a slice removed by hand: the next normalized run must rebuild it
    writes_before = read_state(Store(), config.lake_url, "alpha", DAY)["normalized"]["writes"]

    result = _run(config_path, instance, selection=[AssetKey(NORMALIZED)])

    assert result.success
    assert _materialized(result) == {NORMALIZED}
    assert {asset for asset, _ in _evaluated(result)} == {NORMALIZED}  # only the selected layer's checks
    assert pl.read_parquet(urls[NORMALIZED]).height == frame.height  # rebuilt from the raw slice
    state = read_state(Store(), config.lake_url, "alpha", DAY)
    assert state["normalized"]["writes"] == writes_before + 1
    for table in (RAW, ENRICHED, RECONCILED):
        assert urls[table].stat().st_mtime_ns == before[table], table  # neither read-and-rewritten nor removed


def test_a_failed_blocking_check_stops_the_layers_below_it_in_the_step(tmp_path: Path, instance) -> None:
    """No shipped check is blocking (one source's defect must not stop the others), but a blocking check
    keeps Dagster's meaning inside the one step: the layers below it are not built, nor checked."""
    frame = cur2_month_frame(PERIOD, days=[DAY])
    config_path = _setup(tmp_path, pl.concat([frame, frame]))  # the whole delivery twice: the contract fails
    config = load_config(config_path)
    checks = [c._replace(blocking=True) if c.name == "contract_duplicates" else c for c in spine_day_checks(config)]
    spine = build_spine_asset(SPINE_LAYERS, checks, daily_usage_partitions(config.start_date, config.end_date))
    result = _materialize_day_asset(spine, config_path, instance)
    materialized = _materialized(result)
    assert {RAW, NORMALIZED} <= materialized
    assert not materialized & {ENRICHED, RECONCILED}
    assert not Path(slice_url(config.lake_url, ENRICHED, DAY, "alpha")).exists()
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not evaluations["contract_duplicates"].passed and evaluations["contract_duplicates"].blocking
    assert "sli_unallocated_percent" not in evaluations  # the enriched layer's checks wait for their layer
    # a blocking check keeps its step output (the input by which Dagster holds back the steps below its
    # asset); the non-blocking checks' evaluations have none
    outputs = {
        e.event_specific_data.step_output_handle.output_name for e in result.all_events if e.is_successful_output
    }
    assert "normalized_line_items_contract_duplicates" in outputs
    assert not any(name.endswith("sli_duplicate_rate") for name in outputs)


def test_the_views_are_created_again_only_when_a_table_appears_or_the_database_changed(
    tmp_path: Path, instance
) -> None:
    config_path = _setup(tmp_path, cur2_month_frame(PERIOD, days=[DAY]))
    assert _run(config_path, instance).success  # the run created the views of the tables it wrote
    config = load_config(config_path)
    store, database = Store(), Path(config.duckdb_file)
    assert not refresh_views_if_tables_changed(config.lake_url, config.duckdb_file, store)  # nothing new
    assert _run(config_path, instance).success  # the same day again: a closed month re-run, audited
    assert Path(config.lake_url, "audit_log").is_dir()  # the audit log's table appeared: views created again
    modified = database.stat().st_mtime_ns
    assert _run(config_path, instance).success  # once more: no table appeared, the catalogue is kept
    assert database.stat().st_mtime_ns == modified

    duplicates = Path(quarantine_url(config.lake_url, "duplicates", DAY, "alpha"))
    duplicates.parent.mkdir(parents=True)
    pl.DataFrame({"BilledCost": [1.5]}).write_parquet(duplicates)  # the lake's first quarantined duplicate
    assert refresh_views_if_tables_changed(config.lake_url, config.duckdb_file, store)
    with duckdb.connect(config.duckdb_file, read_only=True) as connection:
        assert connection.sql("SELECT sum(BilledCost) FROM quarantine_duplicates").fetchall() == [(1.5,)]

    database.unlink()  # a catalogue deleted (or replaced) since: created again
    assert refresh_views_if_tables_changed(config.lake_url, config.duckdb_file, store)
    with duckdb.connect(config.duckdb_file, read_only=True) as connection:
        views = {name for (name,) in connection.sql("SELECT view_name FROM duckdb_views()").fetchall()}
    assert set(SPINE) | {"quarantine_duplicates"} <= views


def test_an_asset_after_the_spine_that_raises_is_named_by_the_failure(tmp_path: Path, instance) -> None:
    """The cost anomalies and error budgets share the spine's step: a failure of one of them names it (the
    run-failure alert says `step cost_anomalies: ...`), the spine before it is built, the budgets after it wait."""
    config_path = _setup(tmp_path, cur2_month_frame(PERIOD, days=[DAY]))
    config = load_config(config_path)
    partitions = daily_usage_partitions(config.start_date, config.end_date)

    def unreadable_history(run) -> dict[str, object]:
        raise OSError(f"history of {run.day} unreadable")

    anomalies = cost_anomalies_part(partitions, anomaly_day_checks(config))
    parts = (dataclasses.replace(anomalies, build=unreadable_history), slo_part(config, partitions))
    day = build_spine_asset(SPINE_LAYERS, spine_day_checks(config), partitions, parts)
    result = _materialize_day_asset(day, config_path, instance)
    assert not result.success
    assert _materialized(result) == set(SPINE)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data
    assert failure.user_failure_data.metadata["billing/layer"].value == COST_ANOMALIES
    assert "history of 2023-11-03 unreadable" in failure.user_failure_data.description
