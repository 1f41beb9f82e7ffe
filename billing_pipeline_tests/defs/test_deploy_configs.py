"""The deployment files in `deploy/` pass Dagster's own config checks, and a typo in them does not.

Each `dagster.*.yaml` is validated against the instance schema (`dagster_instance_config`, what
`DagsterInstance` runs at start-up) and every `module` / `class` entry's `config` against that
class's own `config_type()` (the instance schema takes those as permissive, so a misspelled launcher
key would otherwise only fail in the daemon); so is the `dagster.yaml` that `make demo` writes. Every
instance config turns run monitoring on. `deploy/billing.s3.yaml` loads with `load_config` and builds
the code location without touching the network.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster._serdes import ConfigurableClass, class_from_code_pointer
from dagster_postgres import DagsterPostgresStorage

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.instance_storage import SqliteEventLogStorageKeptEngines
from billing_pipeline.platform.names import LAKE_POOL
from billing_pipeline.tools.demo import demo_instance_yaml, write_instance_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTANCE_CONFIGS = ("dagster.local.yaml", "dagster.k8s.yaml")


def validate_instance_file(directory: Path, filename: str) -> Mapping[str, Any]:
    """Raise `DagsterInvalidConfigError` unless `directory/filename` is a valid dagster.yaml."""
    value, _ = dagster_instance_config(str(directory), config_filename=filename)
    for key, entry in value.items():
        if isinstance(entry, Mapping) and {"module", "class"} <= set(entry):
            cls = class_from_code_pointer(entry["module"], entry["class"])
            assert issubclass(cls, ConfigurableClass), f"{key}: {cls} is not a ConfigurableClass"
            result = validate_config(cls.config_type(), entry.get("config") or {})
            if not result.success:
                raise DagsterInvalidConfigError(
                    f"Errors in {filename} `{key}` ({entry['module']}.{entry['class']})", result.errors, entry
                )
    postgres = (value.get("storage") or {}).get("postgres")
    if postgres is not None:
        result = validate_config(DagsterPostgresStorage.config_type(), postgres)
        if not result.success:
            raise DagsterInvalidConfigError(f"Errors in {filename} `storage.postgres`", result.errors, postgres)
    return value


@pytest.mark.parametrize("filename", INSTANCE_CONFIGS)
def test_shipped_instance_config_is_valid(filename: str) -> None:
    value = validate_instance_file(DEPLOY, filename)
    limits = value["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    # a backfill's days one at a time: a day reads the days before it (month to date, error budgets)
    assert {"key": "dagster/backfill", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    # a sensor's runs of one source in order: the month-to-date day after the changed days it sums
    assert {"key": "billing/source", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    assert value["run_coordinator"]["class"] == "QueuedRunCoordinator"
    monitoring = value["run_monitoring"]
    assert monitoring["enabled"] is True and monitoring["max_resume_run_attempts"] == 0
    assert 0 < monitoring["start_timeout_seconds"] <= 600 and 0 < monitoring["cancel_timeout_seconds"] <= 600


def test_k8s_config_names_the_k8s_launcher_postgres_and_s3_logs() -> None:
    value = validate_instance_file(DEPLOY, "dagster.k8s.yaml")
    assert (value["run_launcher"]["module"], value["run_launcher"]["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert value["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert value["compute_logs"]["class"] == "S3ComputeLogManager"
    assert value["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}  # one writer of a day


def test_local_config_builds_an_instance_with_the_run_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(DEPLOY / "dagster.local.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        settings = instance.get_concurrency_config().run_queue_config
        assert settings.max_concurrent_runs == 2
        assert settings.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": "dagster/backfill", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": "billing/source", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ]
        _assert_monitors_dead_runs(instance)
        _assert_one_writer_of_the_lake(instance)


def _assert_one_writer_of_the_lake(instance: DagsterInstance) -> None:
    """The pool of the step that writes a day's slices is limited to one, at op granularity (so a run
    executed by the CLI waits too), and that step is in it."""
    pools = instance.get_concurrency_config().pool_config
    assert (pools.pool_granularity, pools.default_pool_limit) == (PoolGranularity.OP, 1)
    graph = build_definitions(DEPLOY.parent / "billing.yaml").resolve_job_def(JOB_NAME).graph
    assert {node.definition.pool for node in graph.nodes} == {LAKE_POOL}


def _assert_monitors_dead_runs(instance: DagsterInstance) -> None:
    """Run monitoring on, with a max runtime: the local launcher cannot check a run's process, so a STARTED
    run whose process died is only ever failed by that limit (test_killed_runs.py shows it)."""
    assert instance.run_monitoring_enabled
    assert "MONITORING" in instance.get_required_daemon_types()
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert not instance.run_launcher.supports_check_run_worker_health
    assert 15 * 60 <= instance.run_monitoring_max_runtime_seconds <= 4 * 3600  # well above a day's run
    assert 0 < instance.run_monitoring_poll_interval_seconds <= 120


def test_demo_instance_config_is_valid_monitors_runs_and_keeps_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_instance_config(tmp_path)
    value = validate_instance_file(tmp_path, path.name)
    local = yaml.safe_load((DEPLOY / "dagster.local.yaml").read_text())
    assert value["run_monitoring"] == local["run_monitoring"]
    # the storage of deploy/dagster.local.yaml, its folder written out (not read from DAGSTER_HOME)
    assert value["storage"] == local["storage"] | {
        "custom": local["storage"]["custom"] | {"config": {"base_dir": str(tmp_path.resolve())}}
    }
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        _assert_monitors_dead_runs(instance)
        assert isinstance(instance.event_log_storage, SqliteEventLogStorageKeptEngines)
    # Dagster's default layout: the run, event-log and schedule databases where `storage: sqlite` puts them
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.db")} >= {
        "history/runs.db",
        "history/runs/index.db",
        "schedules/schedules.db",
    }


def test_demo_rewrites_only_its_own_or_an_empty_instance_config(tmp_path: Path) -> None:
    path = tmp_path / "dagster.yaml"
    path.touch()  # what earlier versions of the demo left
    assert write_instance_config(tmp_path).read_text() == demo_instance_yaml(tmp_path)
    path.write_text(demo_instance_yaml(tmp_path).replace("3600", "7200"))  # edited, but still ours
    assert write_instance_config(tmp_path).read_text() == demo_instance_yaml(tmp_path)
    own = "telemetry:\n  enabled: false\n"
    path.write_text(own)
    assert write_instance_config(tmp_path).read_text() == own


def _broken_copy(tmp_path: Path, filename: str, mutate) -> str:
    document = yaml.safe_load((DEPLOY / filename).read_text())
    mutate(document)
    (tmp_path / filename).write_text(yaml.safe_dump(document))
    return filename


@pytest.mark.parametrize(
    ("filename", "mutate", "expected"),
    [
        # a top-level typo: caught by the instance schema
        ("dagster.local.yaml", lambda d: d.update(concurency=d.pop("concurrency")), "concurency"),
        # a typo inside a class's config: the instance schema lets it through, the class's own does not
        ("dagster.k8s.yaml", lambda d: d["run_launcher"]["config"].update(job_namespac="x"), "job_namespac"),
        ("dagster.k8s.yaml", lambda d: d["compute_logs"]["config"].update(buckets="x"), "buckets"),
        ("dagster.k8s.yaml", lambda d: d["storage"]["postgres"]["postgres_db"].update(hostnam="x"), "hostnam"),
        (
            "dagster.local.yaml",
            lambda d: d["concurrency"]["runs"].update(max_concurrent_runs="two"),
            "max_concurrent_runs",
        ),
        # the run queue configured twice
        ("dagster.local.yaml", lambda d: d["run_coordinator"]["config"].update(max_concurrent_runs=3), "incompatible"),
    ],
)
def test_broken_copy_fails_validation(tmp_path: Path, filename: str, mutate, expected: str) -> None:
    broken = _broken_copy(tmp_path, filename, mutate)
    with pytest.raises(DagsterInvalidConfigError) as raised:
        validate_instance_file(tmp_path, broken)
    assert expected in str(raised.value) + "".join(str(e.message) for e in raised.value.errors)


def test_s3_billing_config_loads_and_builds_the_code_location() -> None:
    config = load_config(DEPLOY / "billing.s3.yaml")
    assert config.lake_url.startswith("s3://")
    assert all(source.url.startswith("s3://") for source in config.sources)
    assert config.duckdb_file is None  # no catalogue file for an object-store lake
    defs = build_definitions(DEPLOY / "billing.s3.yaml")
    assert defs.resolve_job_def(JOB_NAME).name == JOB_NAME


def test_k8s_postgres_storage_connects_through_psycopg2(monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster-postgres 0.29 writes `NOTIFY run_events, %(id)s`, which only psycopg2 accepts (psycopg 3 sends it
    as a server-side parameter: a syntax error on the first event), and SQLAlchemy 2.1 made psycopg 3 the
    driver of a plain `postgresql://` URL. The URL the shipped config builds must name psycopg2."""
    from dagster._config import process_config
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy import create_engine

    value = validate_instance_file(DEPLOY, "dagster.k8s.yaml")
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(name, "x")
    resolved = process_config(DagsterPostgresStorage.config_type(), value["storage"]["postgres"]).value
    engine = create_engine(pg_url_from_config(resolved))  # no connection yet: the dialect and its driver
    assert engine.dialect.driver == "psycopg2"
