"""The demo's instance storage (`platform/instance_storage.py`): Dagster's SQLite files, fewer engines and
connections, and still what the UI relies on (the live run log, the records of another reader)."""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    asset,
    asset_check,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

import billing_pipeline.platform.instance_storage as instance_storage
from billing_pipeline.platform.instance_storage import SqliteEventLogStorageKeptEngines
from billing_pipeline.tools.demo import write_instance_config

DAYS = DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-05")
DAGSTER_DEFAULT_YAML = "storage:\n  sqlite:\n    base_dir: {home}\ntelemetry:\n  enabled: false\n"


# run id -> set by a test's watcher once it has seen the run's first step start; the step waits for it
STEP_START_SEEN: dict[str, threading.Event] = {}
SEEN_WHILE_STEP_RAN: dict[str, bool] = {}


@asset(partitions_def=DAYS)
def day_total(context: AssetExecutionContext) -> int:
    seen = STEP_START_SEEN.get(context.run.run_id)
    if seen is not None:
        SEEN_WHILE_STEP_RAN[context.run.run_id] = seen.wait(timeout=15)
    return len(context.partition_key)


@asset_check(asset=day_total)
def day_total_is_positive() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"rows": 3})


JOB = Definitions(assets=[day_total], asset_checks=[day_total_is_positive]).resolve_implicit_global_asset_job_def()


@pytest.fixture
def demo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    write_instance_config(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _run_day(instance: DagsterInstance, day: str, run_id: str | None = None) -> str:
    result = JOB.execute_in_process(instance=instance, partition_key=day, run_id=run_id)
    assert result.success
    return result.run_id


def _what_the_instance_holds(instance: DagsterInstance) -> dict[str, Any]:
    """Runs, their event types in order, each day's latest materialization and check verdict."""
    runs = sorted(instance.get_runs(), key=lambda run: run.run_id)
    check_key = day_total_is_positive.check_key
    return {
        "runs": [(run.run_id, run.status, run.tags.get("dagster/partition")) for run in runs],
        "events": {run.run_id: [e.dagster_event_type for e in instance.all_logs(run.run_id)] for run in runs},
        "materialized": sorted(instance.get_materialized_partitions(AssetKey("day_total"))),
        "verdicts": sorted(
            (instance.get_run_by_id(record.run_id).tags["dagster/partition"], record.status.value)
            for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
        ),
    }


def test_the_demo_instance_reads_and_writes_the_same_files_as_dagsters_default(demo_home: Path) -> None:
    """Written through the kept engines, read by Dagster's own SQLite storage; then the other way round."""
    with DagsterInstance.get() as ours:
        assert isinstance(ours.event_log_storage, SqliteEventLogStorageKeptEngines)
        _run_day(ours, "2026-01-01")
        _run_day(ours, "2026-01-02")
        held_by_ours = _what_the_instance_holds(ours)

    default_home = demo_home.parent / "default"
    default_home.mkdir()
    (default_home / "dagster.yaml").write_text(DAGSTER_DEFAULT_YAML.format(home=demo_home))
    with DagsterInstance.from_config(str(default_home)) as dagsters:
        assert type(dagsters.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert _what_the_instance_holds(dagsters) == held_by_ours
        assert held_by_ours["materialized"] == ["2026-01-01", "2026-01-02"]
        # (Dagster keeps each run's PLANNED row of the check beside its verdict, with either storage)
        assert [v for v in held_by_ours["verdicts"] if v[1] != "PLANNED"] == [
            ("2026-01-01", "SUCCEEDED"),
            ("2026-01-02", "SUCCEEDED"),
        ]
        _run_day(dagsters, "2026-01-03")
        held_by_dagsters = _what_the_instance_holds(dagsters)

    with DagsterInstance.get() as ours:
        assert _what_the_instance_holds(ours) == held_by_dagsters
        assert held_by_dagsters["materialized"] == ["2026-01-01", "2026-01-02", "2026-01-03"]


@pytest.fixture
def engines_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Counter[str]]]:
    """Counts the engines the storage creates and the database connections each opens, by file name."""
    made: dict[str, Counter[str]] = {"engines": Counter(), "connections": Counter()}
    real_create_engine = instance_storage.create_engine

    def counting_create_engine(url: str, **kwargs: Any) -> sqlalchemy.engine.Engine:
        name = Path(str(url)).name
        made["engines"][name] += 1
        engine = real_create_engine(url, **kwargs)
        sqlalchemy.event.listen(engine, "connect", lambda *_: made["connections"].update([name]))
        return engine

    monkeypatch.setattr(instance_storage, "create_engine", counting_create_engine)
    yield made


def test_one_engine_per_database_and_one_connection_to_the_index(
    demo_home: Path, engines_made: dict[str, Counter[str]]
) -> None:
    with DagsterInstance.get() as instance:
        run_ids = [_run_day(instance, day) for day in ("2026-01-01", "2026-01-02", "2026-01-03")]
        events_per_run = [len(instance.all_logs(run_id)) for run_id in run_ids]

    assert engines_made["engines"] == Counter({"index.db": 1} | {f"{run_id}.db": 1 for run_id in run_ids})
    assert engines_made["connections"]["index.db"] == 1
    # A run's database is still opened per write (and so checkpointed to its file on close): one
    # connection per event at least (the runs' events above were written through them).
    for run_id, events in zip(run_ids, events_per_run, strict=True):
        assert engines_made["connections"][f"{run_id}.db"] >= events > 10


def test_checks_do_not_open_the_index_again_to_ask_for_its_tables(
    demo_home: Path, engines_made: dict[str, Counter[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's event log asks whether the index has the check executions table before every check
    evaluation, through an engine of its own each time; here a table found is remembered, a missing one is not."""
    asked: Counter[str] = Counter()
    dagsters_has_table = SqliteEventLogStorage.has_table

    def counting_has_table(storage: SqliteEventLogStorage, table_name: str) -> bool:
        asked[table_name] += 1
        return dagsters_has_table(storage, table_name)

    monkeypatch.setattr(SqliteEventLogStorage, "has_table", counting_has_table)
    with DagsterInstance.get() as instance:
        for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
            _run_day(instance, day)
        storage = instance.event_log_storage
        verdicts = storage.get_asset_check_execution_history(day_total_is_positive.check_key, limit=10)
        assert [v.status.value for v in verdicts if v.status.value != "PLANNED"] == ["SUCCEEDED"] * 3
        assert asked["asset_check_executions"] == 1  # 3 runs, each with a planned check and its evaluation
        assert max(asked.values()) == 1
        assert storage.supports_asset_checks
        assert not storage.has_table("no_such_table")
        assert not storage.has_table("no_such_table")
    assert asked["asset_check_executions"] == 1
    assert asked["no_such_table"] == 2  # a missing table is asked every time
    assert engines_made["connections"]["index.db"] == 1


def test_the_index_engine_outlives_the_cap_on_kept_engines(
    demo_home: Path, engines_made: dict[str, Counter[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webserver reads more runs than it keeps engines for: the runs' engines make room, not the index's."""
    monkeypatch.setattr(instance_storage, "MAX_KEPT_ENGINES", 2)
    with DagsterInstance.get() as instance:
        run_ids = [_run_day(instance, day) for day in ("2026-01-01", "2026-01-02", "2026-01-03")]
        assert len(instance.event_log_storage._engines) == 2
    assert engines_made["engines"]["index.db"] == 1
    assert engines_made["connections"]["index.db"] == 1
    assert all(engines_made["engines"][f"{run_id}.db"] >= 1 for run_id in run_ids)


def test_the_live_run_log_follows_a_run_written_by_another_instance(demo_home: Path) -> None:
    """The webserver follows a run's log by watching the run's `.db` file; the run writes it through another
    instance. Events must reach the watcher while the run goes on (the step waits until its own start has
    been seen), not only once the run's writer is done with the file."""
    run_id = "5c3a1b4e-0000-4000-8000-000000000001"
    seen: list[str] = []
    STEP_START_SEEN[run_id] = threading.Event()

    def on_event(entry: Any, _cursor: str) -> None:
        seen.append(entry.dagster_event_type.value if entry.dagster_event_type else "log")
        if seen[-1] == "STEP_START":
            STEP_START_SEEN[run_id].set()

    try:
        with DagsterInstance.get() as webserver, DagsterInstance.get() as run_worker:
            _run_day(run_worker, "2026-01-01")  # the index and a run database exist, as in a live instance
            webserver.watch_event_logs(run_id, None, on_event)
            try:
                _run_day(run_worker, "2026-01-02", run_id=run_id)
                written = [
                    e.dagster_event_type.value if e.dagster_event_type else "log" for e in run_worker.all_logs(run_id)
                ]
                deadline = time.monotonic() + 15
                while len(seen) < len(written) and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                webserver.end_watch_event_logs(run_id, on_event)
    finally:
        del STEP_START_SEEN[run_id]

    assert SEEN_WHILE_STEP_RAN.pop(run_id), "the watcher saw nothing of the run while its step ran"
    assert seen == written
