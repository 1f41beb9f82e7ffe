"""Late-arrival sensors, the daily schedule, and invariant 4 (only the changed (day, source) slices re-run)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.schedules import SCHEDULE_NAME
from billing_pipeline.defs.sensors import open_periods, scan_source
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.fingerprint import compute_delivery_days
from partitions import daily_usage_partitions
from resources import BillingResource

from ..conftest import write_config, write_data_export
from ..ops_fixtures import cur2_month_frame, deliver_cur2, month_days, run_day

PERIOD = "2023-11"
NOW = dt.datetime(2023, 12, 3, 12, tzinfo=dt.UTC)
LAYERS = ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")
CHANGED = (dt.date(2023, 11, 7), dt.date(2023, 11, 21))


def _config(tmp_path: Path, start_date: str = "2023-10-01", **extra) -> BillingConfig:
    sources = [{"name": n, "provider": "aws_cur2", "url": str(tmp_path / "landing" / n)} for n in ("alpha", "beta")]
    return load_config(write_config(tmp_path, sources, start_date=start_date, **extra))


def _scan(config: BillingConfig, name: str, cursor: dict | None = None, start: str | None = None):
    partitions = daily_usage_partitions(start or config.start_date)
    return scan_source(
        Store(), config, config.source(name), cursor or {}, NOW, lambda key: partitions.has_partition_key(key)
    )


def _slice_ids(config: BillingConfig) -> dict[tuple[str, str, dt.date], tuple[int, int]]:
    """(layer, source, day) -> (inode, mtime_ns): an atomic rewrite changes both."""
    out = {}
    for layer in LAYERS:
        for source in ("alpha", "beta"):
            for day in month_days(PERIOD):
                stat = os.stat(slice_url(config.lake_url, layer, day, source))
                out[(layer, source, day)] = (stat.st_ino, stat.st_mtime_ns)
    return out


def _restated_cost(day: dt.date, team: str, service: str) -> float:
    base = 10.0 + ("payments", "search", "platform").index(team) + ("AmazonEC2", "AmazonS3", "AmazonRDS").index(service)
    return base + (5.0 if day in CHANGED and team == "search" else 0.0)


def test_a_restatement_of_two_days_reprocesses_only_those_days_and_only_that_source(
    tmp_path: Path, monkeypatch
) -> None:
    config = _config(tmp_path)
    for name in ("alpha", "beta"):
        deliver_cur2(tmp_path / "landing" / name, "exec-1", cur2_month_frame(PERIOD), PERIOD)
    cursors = {}
    for name in ("alpha", "beta"):
        scan = _scan(config, name)
        assert sorted(r.day for r in scan.requests) == month_days(PERIOD)  # nothing built yet: the whole month
        cursors[name] = scan.cursor
    for day in month_days(PERIOD):
        run_day(config, day)
    before = _slice_ids(config)

    # alpha restates the month: same rows, other file names and split, except two days of one team
    deliver_cur2(tmp_path / "landing" / "alpha", "exec-2", cur2_month_frame(PERIOD, _restated_cost), PERIOD, files=3)
    alpha = _scan(config, "alpha", cursors["alpha"])
    beta = _scan(config, "beta", cursors["beta"])
    last = month_days(PERIOD)[-1]  # reconciled before; its month to date sums the changed days
    assert [(r.day, r.tags["billing/trigger"]) for r in alpha.requests] == [
        *((day, "late_arrival") for day in CHANGED),
        (last, "month_to_date"),
    ]
    assert beta.requests == []
    assert all(r.tags["billing/version"] == "exec-2" for r in alpha.requests)
    assert [r.assets for r in alpha.requests] == [(), (), ("reconciliation_deltas",)]  # the month to date alone
    staged: list[str] = []
    original_stage = Store.stage

    def counting_stage(self, url, workdir):
        staged.append(str(url))
        return original_stage(self, url, workdir)

    monkeypatch.setattr(Store, "stage", counting_stage)
    for request in alpha.requests:
        run_day(config, request.day)
    monkeypatch.undo()
    assert not [u for u in staged if "/landing/beta/" in u]  # beta's export files are not even opened
    assert [u for u in staged if "/landing/alpha/" in u]

    after = _slice_ids(config)
    rewritten = {key for key in before if before[key] != after[key]}
    expected = {(layer, "alpha", day) for layer in LAYERS for day in CHANGED}
    expected.add(("reconciliation_deltas", "alpha", last))  # the month to date, not the day's own slices
    assert rewritten == expected  # 9 of 240 slices; beta's slices of the same days untouched
    month = pl.concat(
        pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, "alpha"), columns=["BilledCost"])
        for day in month_days(PERIOD)
    )
    reconciled = pl.read_parquet(slice_url(config.lake_url, "reconciliation_deltas", last, "alpha"))
    assert float(reconciled["month_to_date_total"].sum()) == pytest.approx(float(month["BilledCost"].sum()))
    assert float(reconciled["month_to_date_total"].sum()) == pytest.approx(30 * 108.0 + 2 * 3 * 5.0)
    state = read_state(Store(), config.lake_url, "alpha", CHANGED[0])
    assert state["raw"]["writes"] == 2 and state["raw"]["version"] == "exec-2"
    assert read_state(Store(), config.lake_url, "beta", CHANGED[0])["raw"]["writes"] == 1
    normalized = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", CHANGED[0], "alpha"))
    assert float(normalized["BilledCost"].sum()) == pytest.approx(108.0 + 3 * 5.0)

    # the unchanged days of alpha are recognised as such even if a run is requested for them: only the
    # month to date of November 8 (it sums the restated November 7) is rebuilt, and once only
    run_day(config, dt.date(2023, 11, 8))
    again = _slice_ids(config)
    assert {key for key in after if after[key] != again[key]} == {
        ("reconciliation_deltas", "alpha", dt.date(2023, 11, 8))
    }
    run_day(config, dt.date(2023, 11, 8))
    assert _slice_ids(config) == again
    assert read_state(Store(), config.lake_url, "alpha", dt.date(2023, 11, 8))["raw"]["confirmed_version"] == "exec-2"


def test_the_same_delivery_seen_twice_requests_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    deliver_cur2(tmp_path / "landing" / "alpha", "exec-1", cur2_month_frame(PERIOD), PERIOD)
    first = _scan(config, "alpha")
    assert len(first.requests) == 30
    assert _scan(config, "alpha", first.cursor).requests == []
    for day in month_days(PERIOD):
        run_day(config, day)
    # a lost cursor still requests nothing: the decision is made from the data in the lake
    assert _scan(config, "alpha", {}).requests == []
    # the same rows delivered again as a new version: new cursor position, no changed day
    deliver_cur2(tmp_path / "landing" / "alpha", "exec-2", cur2_month_frame(PERIOD), PERIOD, files=4)
    again = _scan(config, "alpha", first.cursor)
    assert again.requests == [] and again.cursor["periods"][PERIOD]["version"] == "exec-2"


def test_a_manifest_before_its_data_files_requests_nothing_until_they_are_all_there(tmp_path: Path) -> None:
    config = _config(tmp_path)
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", cur2_month_frame(PERIOD), PERIOD)
    cursor = _scan(config, "alpha").cursor
    for day in month_days(PERIOD):
        run_day(config, day)
    restated = cur2_month_frame(PERIOD, _restated_cost)
    late_file = root / "data" / f"BILLING_PERIOD={PERIOD}" / "exec-2" / "part-9.csv.gz"
    write_data_export(
        root,
        "exec-2",
        {"part-1.csv.gz": restated},
        period=PERIOD,
        file_format="csv",
        export_time=(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        extra_uris=[f"s3://origin/alpha/data/BILLING_PERIOD={PERIOD}/exec-2/part-9.csv.gz"],
    )
    waiting = _scan(config, "alpha", cursor)
    assert waiting.requests == [] and waiting.cursor == cursor
    with gzip.open(late_file, "wb") as handle:
        restated.head(0).write_csv(handle)
    complete = _scan(config, "alpha", waiting.cursor)
    assert sorted(r.day for r in complete.requests if r.tags["billing/trigger"] == "late_arrival") == list(CHANGED)


def test_days_outside_the_partition_set_are_filtered_not_fatal(tmp_path: Path) -> None:
    config = _config(tmp_path, start_date="2023-11-10")
    deliver_cur2(tmp_path / "landing" / "alpha", "exec-1", cur2_month_frame(PERIOD), PERIOD)
    scan = _scan(config, "alpha")
    assert [r.day.isoformat() for r in scan.requests] == [d.isoformat() for d in month_days(PERIOD)[9:]]
    assert scan.filtered == [d.isoformat() for d in month_days(PERIOD)[:9]]


def test_only_the_open_billing_periods_are_listed() -> None:
    assert open_periods(dt.date(2024, 1, 15), 2, dt.date(2020, 1, 1)) == ["2024-01", "2023-12"]
    assert open_periods(dt.date(2024, 1, 15), 3, dt.date(2023, 12, 5)) == ["2024-01", "2023-12"]
    assert open_periods(dt.date(2024, 3, 1), 1, dt.date(2020, 1, 1)) == ["2024-03"]


def test_fingerprints_ignore_file_names_and_split_but_see_a_duplicated_row(tmp_path: Path) -> None:
    from billing_pipeline.adapters import adapter_for

    frame = cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 1), dt.date(2023, 11, 2)])
    config = _config(tmp_path)
    source = config.source("alpha")
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "a", frame, PERIOD, files=1)
    deliver_cur2(root, "b", frame.reverse(), PERIOD, files=3)
    write_data_export(root, "c", {"x.csv.gz": pl.concat([frame, frame.head(1)])}, period=PERIOD, file_format="csv")
    deliveries = {d.version: d for d in adapter_for("aws_cur2").discover(Store(), "alpha", str(root), PERIOD, "auto")}
    a, b, c = (compute_delivery_days(Store(), source, deliveries[v]) for v in "abc")
    assert a.days == b.days and a.rows == {"2023-11-01": 9, "2023-11-02": 9}
    assert c.days["2023-11-01"] != a.days["2023-11-01"] and c.days["2023-11-02"] == a.days["2023-11-02"]


def test_the_dagster_sensor_requests_runs_and_keeps_a_json_cursor(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    previous = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    current = today.strftime("%Y-%m")
    days = [d for d in month_days(current) if d <= today + dt.timedelta(days=1)]
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", cur2_month_frame(previous), previous)
    deliver_cur2(root, "exec-1", cur2_month_frame(current, days=days), current)
    config_path = write_config(
        tmp_path,
        [{"name": "alpha", "provider": "aws_cur2", "url": str(root), "lookback_months": 2}],
        start_date="2020-01-01",
        automation={"sensor_interval_seconds": 5},
    )
    defs = build_definitions(config_path)
    sensor = defs.resolve_sensor_def("alpha_late_arrivals")
    assert sensor.default_status == DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 5
    with instance_for_test() as instance:
        context = build_sensor_context(
            instance=instance, resources={"billing": BillingResource(config_path=str(config_path))}
        )
        result = sensor(context)
        keys = sorted(r.partition_key for r in result.run_requests)
        # today (and tomorrow) are not partitions yet: filtered, and the tick does not fail
        assert keys == sorted(
            [d.isoformat() for d in month_days(previous)] + [d.isoformat() for d in days if d < today]
        )
        assert len({r.run_key for r in result.run_requests}) == len(keys)
        cursor = json.loads(result.cursor)
        assert set(cursor["periods"]) == {previous, current}
        again = sensor(
            build_sensor_context(
                instance=instance,
                cursor=result.cursor,
                resources={"billing": BillingResource(config_path=str(config_path))},
            )
        )
        assert list(again.run_requests) == []


def test_the_schedule_materializes_yesterday_utc_and_runs_by_default(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, [{"name": "c", "provider": "aws_cur2", "url": "x"}], start_date="2023-01-01")
    defs = build_definitions(config_path)
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "UTC" and schedule.job_name == JOB_NAME
    context = build_schedule_context(
        scheduled_execution_time=dt.datetime(2023, 11, 2, 6, tzinfo=dt.UTC), repository_def=defs.get_repository_def()
    )
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2023-11-01"


def test_a_second_run_of_an_unchanged_day_rewrites_no_slice(tmp_path: Path) -> None:
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 1)]), PERIOD)
    config_path = write_config(
        tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-11-01"
    )
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    with instance_for_test() as instance:
        for expected in (1, 0):
            assert job.execute_in_process(partition_key="2023-11-01", instance=instance).success
            raw = _latest_raw(instance)
            assert raw.metadata["slices_rewritten"].value == expected
            assert raw.metadata["dagster/row_count"].value == 9


def _latest_raw(instance: DagsterInstance):
    from dagster import AssetKey

    return instance.get_latest_materialization_event(AssetKey("raw_line_items")).asset_materialization
