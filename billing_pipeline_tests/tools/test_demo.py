"""`make demo`'s launch path and one incident, on a tiny generated month (three days, two sources).

Everything goes through the demo's own functions: the code location is loaded from workspace.yaml as
`dagster dev` loads it, the month is a backfill of `billing_daily` on an instance on disk, and the
"file delivered twice" incident is injected and its day re-run as the demo does it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import DagsterRunStatus, RunsFilter, instance_for_test
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, REPOSITORY_LABEL_TAG

from billing_pipeline.definitions import JOB_NAME
from billing_pipeline.platform.config import CONFIG_ENV_VAR, ConfigError, load_config
from billing_pipeline.tools.demo import (
    DEMO_TAG,
    INCIDENT_TAG,
    billing_daily_launcher,
    demo_incidents,
    generate_clean_month,
    latest_check_outcomes,
    run_incident,
)

from ..conftest import write_config

MONTH = "2026-10"
DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]
INCIDENT_DAY = dt.date(2026, 10, 2)
LOCATION = "billing_pipeline.definitions"  # workspace.yaml's python_module: its default location name


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    work = tmp_path_factory.mktemp("demo")
    landing = work / "landing"
    held = generate_clean_month(landing, MONTH, seed=7, rows_per_day=40, days=len(DAYS), providers=("aws_cur2", "gcp"))
    config_path = write_config(
        work,
        [
            {"name": "cur2_main", "provider": "aws_cur2", "url": str(landing / "aws_cur2" / "cur2-daily")},
            {"name": "gcp_billing", "provider": "gcp", "url": str(landing / "gcp" / "billing-export")},
        ],
        invoices_url=str(landing / "invoices"),
        start_date=DAYS[0],
        end_date=DAYS[-1],
    )
    config = load_config(config_path)
    incident = dataclasses.replace(
        next(i for i in demo_incidents(MONTH) if i.name == "file-delivered-twice"), day=INCIDENT_DAY
    )
    (work / "dagster_home").mkdir()
    module = importlib.import_module("billing_pipeline.definitions")
    saved = module.defs  # the launcher rebuilds the module's definitions for the test's configuration
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CONFIG_ENV_VAR, str(config_path))
        with instance_for_test(temp_dir=str(work / "dagster_home")) as instance:
            with billing_daily_launcher(instance, config) as launcher:
                partitions = launcher.partition_keys()
                backfill_id, month = launcher.backfill(DAYS, title="test month", tags={DEMO_TAG: "clean month"})
                as_of = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
                resent = run_incident(launcher, config, incident, as_of)
                yield SimpleNamespace(
                    instance=instance,
                    launcher=launcher,
                    held=held,
                    partitions=partitions,
                    backfill_id=backfill_id,
                    month=month,
                    incident=incident,
                    resent=resent,
                    latest=latest_check_outcomes(instance, launcher.source_names),
                )
    module.defs = saved


def test_partitions_end_at_the_configured_end_date(demo: SimpleNamespace) -> None:
    assert demo.partitions == DAYS


def test_the_generators_resends_are_held_out_of_the_clean_month(demo: SimpleNamespace) -> None:
    text = "\n".join(demo.held)
    assert "repull" in text  # GCP's window pulled twice
    assert "5 repeated line items" in text and "aws_cur2" in text


def test_the_month_is_a_backfill_whose_runs_carry_the_code_locations_origin(demo: SimpleNamespace) -> None:
    instance = demo.instance
    backfill = instance.get_backfill(demo.backfill_id)
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    assert list(backfill.partition_names) == DAYS
    assert backfill.partition_set_origin.repository_origin.code_location_origin.location_name == LOCATION

    runs = instance.get_runs(filters=RunsFilter(tags={BACKFILL_ID_TAG: demo.backfill_id}))
    assert sorted(r.tags[PARTITION_NAME_TAG] for r in runs) == DAYS
    for run in runs:
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.job_name == JOB_NAME
        origin = run.remote_job_origin
        assert origin is not None and origin.job_name == JOB_NAME
        assert origin.repository_origin.code_location_origin.location_name == LOCATION
        assert run.job_code_origin is not None
        assert run.tags[DEMO_TAG] == "clean month"

    # the filter the job's page and its Runs tab use (dagster_graphql: GraphenePipeline.resolve_runs)
    label = demo.launcher.job.get_remote_origin().repository_origin.get_label()
    on_job_page = instance.get_runs(filters=RunsFilter(job_name=JOB_NAME, tags={REPOSITORY_LABEL_TAG: label}))
    assert {r.run_id for r in on_job_page} == {r.run_id for r in instance.get_runs()}
    assert len(on_job_page) == len(DAYS) + len(demo.resent.runs)


def test_a_file_delivered_twice_fails_exactly_its_checks(demo: SimpleNamespace) -> None:
    resent = demo.resent
    assert resent.files and all(p.name.endswith((".json.gz", ".parquet")) for p in resent.files)
    assert resent.days == [INCIDENT_DAY]  # the late-arrival scan finds the one day the copies changed
    assert [r.success for r in resent.runs] == [True]
    run = demo.instance.get_run_by_id(resent.runs[0].run_id)
    assert run.tags[INCIDENT_TAG] == "file-delivered-twice" and run.remote_job_origin is not None

    before = {c.check for o in demo.month if o.day == INCIDENT_DAY.isoformat() for c in o.failed_checks}
    after = {c.check for c in resent.failed_checks}
    expected = set(demo.incident.expected)
    assert expected == {"contract_duplicates", "sli_duplicate_rate", "slo_budget_duplicate_rate"}
    assert not expected & before  # passed on the clean day
    assert after - before == expected
    for check in resent.failed_checks:
        if check.check in expected:
            assert check.sources == ("gcp_billing",), check.line()
            # every row of the day delivered twice: half of the rows read are copies
            shown = "today 0.5 against the target 0.001 (bad)" if check.check.startswith("slo_budget_") else "50.00%"
            assert shown in check.description, check.line()


def test_the_ui_shows_the_incident_on_its_day_only(demo: SimpleNamespace) -> None:
    red = {(day, check) for (day, _asset, check), outcome in demo.latest.items() if not outcome.passed}
    clean_red = {(o.day, c.check) for o in demo.month for c in o.failed_checks}
    incident_red = {(INCIDENT_DAY.isoformat(), check) for check in demo.incident.expected}
    assert red == clean_red | incident_red


def test_end_date_is_the_last_partition_and_never_before_the_start(tmp_path: Path) -> None:
    from partitions import daily_usage_partitions

    keys = daily_usage_partitions("2026-10-01", "2026-10-31").get_partition_keys()
    assert (len(keys), keys[0], keys[-1]) == (31, "2026-10-01", "2026-10-31")
    source = [{"name": "cur2", "provider": "aws_cur2", "url": str(tmp_path)}]
    with pytest.raises(ConfigError, match="end_date 2026-09-30 is before start_date 2026-10-01"):
        load_config(write_config(tmp_path, source, start_date="2026-10-01", end_date="2026-09-30"))


def test_an_instance_written_by_the_demo_before_it_moved_is_still_its_own(tmp_path) -> None:
    """The demo resets only its own instance; one whose dagster.yaml an older demo wrote is its own too."""
    from billing_pipeline.tools.demo import LEGACY_DEMO_INSTANCE_MARK, is_demo_instance

    (tmp_path / "dagster.yaml").write_text(f"{LEGACY_DEMO_INSTANCE_MARK}: `make demo` rewrites this file\n")
    assert is_demo_instance(tmp_path)
    (tmp_path / "dagster.yaml").write_text("run_monitoring: {enabled: true}\n")  # a user's own
    assert not is_demo_instance(tmp_path)
