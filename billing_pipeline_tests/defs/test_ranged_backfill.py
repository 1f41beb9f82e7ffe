"""A backfill in one run (`BackfillPolicy.single_run`: the UI's asset backfill, `dagster asset materialize
--partition-range`): its days run in order in the one step and each day is recorded as a run of that day
records it (its own materializations, metadata and check evaluations, each naming its day), with the same
lake; a day that fails leaves the days around it built and recorded, and the run fails naming it. On a
real instance, through the code location's job (nothing mocked)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, Definitions, define_asset_job, in_process_executor, instance_for_test
from dagster._core.storage.event_log.base import AssetRecordsFilter
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.assets import RECONCILED_LAYER, SPINE_LAYERS
from billing_pipeline.defs.checks import spine_day_checks
from billing_pipeline.defs.spine_layer import FAILED_DAYS_KEY, SPINE_OP, LayerDay, build_spine_asset
from billing_pipeline.observability.alerts.model import RUN_FAILURE, alert_key
from billing_pipeline.observability.alerts.runs import events_of_run, outcomes_for_run
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import COST_ANOMALIES, RECONCILED, SLO_BUDGETS, SPINE
from partitions import daily_usage_partitions
from resources import BillingResource

from ..conftest import write_config
from ..ops_fixtures import cur2_month_frame, deliver_cur2

PERIOD = "2023-11"
DAYS = [dt.date(2023, 11, 3), dt.date(2023, 11, 4), dt.date(2023, 11, 5)]
ASSETS = [*SPINE, COST_ANOMALIES, SLO_BUDGETS]


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _cost(day: dt.date, team: str, service: str) -> float:
    """Each day its own spend, so that a day's metadata recorded under another day would show."""
    return 10.0 * day.day + len(team) + len(service) / 10


def _landing_and_config(folder: Path, execution: str = "exec-1", cost=_cost) -> Path:
    root = folder / "landing" / "alpha"
    deliver_cur2(root, execution, cur2_month_frame(PERIOD, cost=cost, days=DAYS), PERIOD)
    return write_config(folder, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01")


def _ranged(first: dt.date, last: dt.date) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}


def _materializations(result) -> dict[tuple[str, str], dict[str, object]]:
    """(asset, day) -> the materialization's metadata values."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            m = event.step_materialization_data.materialization
            out[(m.asset_key.to_user_string(), m.partition)] = {k: v.value for k, v in m.metadata.items()}
    return out


def _evaluations(result) -> dict[tuple[str, str, str], object]:
    """(asset, check, day) -> the evaluation."""
    return {
        (e.asset_key.to_user_string(), e.check_name, e.partition): e
        for e in (
            ev.asset_check_evaluation_data
            for ev in result.all_events
            if ev.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }


def test_a_backfill_in_one_run_records_each_day_as_one_run_per_day_does(tmp_path: Path, instance) -> None:
    per_day_config = _landing_and_config(tmp_path / "per_day")
    ranged_config = _landing_and_config(tmp_path / "ranged")
    job = build_definitions(per_day_config).resolve_job_def(JOB_NAME)
    per_day = [job.execute_in_process(partition_key=d.isoformat(), instance=instance) for d in DAYS]
    with instance_for_test() as other:  # its own instance: the ranged run's records only
        ranged = (
            build_definitions(ranged_config)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(tags=_ranged(DAYS[0], DAYS[-1]), instance=other)
        )
        assert ranged.success
        steps = [e.step_key for e in ranged.all_events if e.event_type_value == "STEP_START"]
        assert steps == [SPINE_OP]  # three days, one step

        # every day's own materializations and metadata, exactly as the runs of one day recorded them
        expected = {k: v for run in per_day for k, v in _materializations(run).items()}
        recorded = _materializations(ranged)
        assert set(recorded) == {(asset, d.isoformat()) for asset in ASSETS for d in DAYS}
        # not compared: timings, the runs' own clock, and the landing files' modification times
        volatile = {"ingestion", "compute", "seconds", "latency", "preview", "attainment", "budget", "burn", "finger"}
        compared = 0
        for key, metadata in expected.items():
            for name, value in metadata.items():
                if not any(word in name for word in volatile):
                    same_folder = str(recorded[key][name]).replace("/ranged/", "/per_day/")
                    assert same_folder == str(value), (key, name)
                    compared += 1
        assert compared > 5 * len(expected)  # 117 values for the 18 materializations

        # every day's check evaluations, each naming its day and the materialization it judged
        per_day_evaluations = {k: v for run in per_day for k, v in _evaluations(run).items()}
        evaluations = _evaluations(ranged)
        assert set(evaluations) == set(per_day_evaluations)
        assert len(evaluations) == 3 * len({(a, c) for a, c, _ in evaluations})
        for (asset, check, day), evaluation in evaluations.items():
            assert evaluation.passed == per_day_evaluations[(asset, check, day)].passed, (asset, check, day)
            latest = other.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[day]), limit=1
            ).records[0]
            assert evaluation.target_materialization_data.storage_id == latest.storage_id, (asset, check, day)
            assert evaluation.target_materialization_data.run_id == ranged.run_id
        # the lake catalogue's check reads the whole lake: evaluated once, after the last day, for every day
        catalogue = {day: e for (_, check, day), e in evaluations.items() if check == "lake_catalogue"}
        assert set(catalogue) == {d.isoformat() for d in DAYS}
        assert all(
            e.passed and f"evaluated once after its last day, {DAYS[-1]}" in e.description for e in catalogue.values()
        )

    # the same lake: every slice of every day holds the same rows (but for where and when they were loaded)
    lakes = (load_config(per_day_config).lake_url, load_config(ranged_config).lake_url)
    for day in DAYS:
        for table in SPINE:
            one, two = (pl.read_parquet(slice_url(lake, table, day, "alpha")) for lake in lakes)
            differing = [c for c in one.columns if not one[c].equals(two[c])]
            assert set(differing) <= {"x_FileUri", "x_IngestedAt"}, (table, day, differing)
            assert one.height == two.height > 0
    days_total = pl.read_parquet(slice_url(lakes[1], RECONCILED, DAYS[-1], "alpha"))
    month_to_date = float(days_total["month_to_date_total"].sum())
    independent = sum(_cost(d, t, s) for d in DAYS for t, s in _teams_and_services())
    assert month_to_date == pytest.approx(independent)  # the last day summed the days the run built before it


def _teams_and_services() -> list[tuple[str, str]]:
    from ..ops_fixtures import SERVICES, TEAMS

    return [(t, s) for t in TEAMS for s in SERVICES]


def test_a_day_that_fails_in_a_backfill_run_leaves_the_days_around_it_built(tmp_path: Path, instance) -> None:
    """On a lake that holds the three days: a restatement is backfilled in one run, and the reconciliation
    of the middle day fails. The first and last days are rebuilt and recorded; the middle day has no
    reconciliation (nor the assets after it) and keeps its previous reconciliation slice; the run fails
    naming that day."""
    config_path = _landing_and_config(tmp_path)
    config = load_config(config_path)
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    assert job.execute_in_process(tags=_ranged(DAYS[0], DAYS[-1]), instance=instance).success
    before = pl.read_parquet(slice_url(config.lake_url, RECONCILED, DAYS[1], "alpha"))

    def restated(day: dt.date, team: str, service: str) -> float:
        return _cost(day, team, service) + 1.0

    deliver_cur2(tmp_path / "landing" / "alpha", "exec-2", cur2_month_frame(PERIOD, cost=restated, days=DAYS), PERIOD)

    def fails_on_the_middle_day(run: LayerDay, workdir: Path):
        if run.day == DAYS[1]:
            raise OSError("the lake refused the write")
        return RECONCILED_LAYER.build(run, workdir)

    layers = [
        dataclasses.replace(RECONCILED_LAYER, build=fails_on_the_middle_day) if x is RECONCILED_LAYER else x
        for x in SPINE_LAYERS
    ]
    partitions = daily_usage_partitions(config.start_date, config.end_date)
    spine = build_spine_asset(layers, spine_day_checks(config), partitions)
    failing = Definitions(
        assets=[spine],
        jobs=[define_asset_job("backfill", executor_def=in_process_executor)],
        resources={"billing": BillingResource(config_path=str(config_path))},
    ).resolve_job_def("backfill")

    result = failing.execute_in_process(tags=_ranged(DAYS[0], DAYS[-1]), instance=instance, raise_on_error=False)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.user_failure_data.description
    assert "1 of 3 day(s) failed" in message and DAYS[1].isoformat() in message and "refused the write" in message
    assert failure.step_failure_data.user_failure_data.metadata[FAILED_DAYS_KEY].value == DAYS[1].isoformat()
    recorded = set(_materializations(result))
    assert {(RECONCILED, DAYS[0].isoformat()), (RECONCILED, DAYS[2].isoformat())} <= recorded
    assert (RECONCILED, DAYS[1].isoformat()) not in recorded
    for day in (DAYS[0], DAYS[2]):  # rebuilt from the restatement
        rebuilt = pl.read_parquet(slice_url(config.lake_url, RECONCILED, day, "alpha"))
        expected = sum(restated(day, t, s) for t, s in _teams_and_services())
        assert float(rebuilt["normalized_total"].sum()) == pytest.approx(expected)
    kept = pl.read_parquet(slice_url(config.lake_url, RECONCILED, DAYS[1], "alpha"))
    assert kept.equals(before)  # the failed day's reconciliation is not lost

    # the alert sensors page the failed day only, and clear an open run failure of the days that were built
    run = instance.get_run_by_id(result.run_id)
    alerts, clears = outcomes_for_run(events_of_run(instance, result.run_id), run, False, config, config.store())
    failures = [a for a in alerts if a.runbook == RUN_FAILURE]
    assert [(a.partition, a.route) for a in failures] == [(DAYS[1].isoformat(), "page")]
    assert "reconciliation_deltas" in failures[0].title and "refused the write" in failures[0].summary
    run_failure_keys = {alert_key(RUN_FAILURE, run.job_name, d.isoformat()): d.isoformat() for d in DAYS}
    cleared = {run_failure_keys[c.key] for c in clears if c.key in run_failure_keys}
    assert cleared == {DAYS[0].isoformat(), DAYS[2].isoformat()}
    assert failures[0].key == alert_key(RUN_FAILURE, run.job_name, DAYS[1].isoformat())
