"""SLI checks M1-M10 and freshness, run inside `billing_daily` on a real instance, and the freshness sensor.

The values of each SLI against independently computed numbers are in `test_slis.py`; here: the checks'
metadata, severities, per-source descriptions, and that one source's fault never stops the others."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, build_sensor_context, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.alert_sensors import FRESHNESS_SENSOR
from billing_pipeline.observability import slis
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.ops_config import BUDGETED_SLIS, ErrorBudgetConfig
from billing_pipeline.platform.state import read_state, write_state
from billing_pipeline.platform.storage import Store
from resources import BillingResource

from ..conftest import write_config, write_data_export
from ..ops_fixtures import cur2_month_frame, deliver_cur2, run_day

PERIOD = "2023-11"
DAY = "2023-11-03"
SLI_KEYS = {
    "publish_guard": "sli/publish_guard",
    "source_failures": "sli/source_failures",
    "sli_export_success_rate": "sli/export_success_rate",
    "sli_export_latency": "sli/export_latency_hours",
    "sli_backfill_backlog": "sli/backfill_backlog",
    "contract_schema": "sli/schema_failures",
    "sli_access_violations": "sli/access_violations",
    "sli_duplicate_rate": "sli/duplicate_rate",
    "sli_quarantine_rate": "sli/quarantine_rate",
    "contract_duplicates": "sli/duplicate_rate",
    "sli_unallocated_percent": "sli/unallocated_percent",
    "sli_unallocated_jump": "sli/unallocated_jump_points",
    "sli_cost_anomalies": "sli/cost_anomalies",
    "sli_reconciliation_delta": "sli/reconciliation_delta",
    "sli_ingestion_cost": "sli/ingestion_",  # M5: its key names what it measures (prefix checked)
    "freshness_alpha": "sli/availability_latency_hours",
}


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def _evaluations(result) -> dict[str, object]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def _run(tmp_path: Path, frame: pl.DataFrame, instance: DagsterInstance, **extra):
    root = tmp_path / "landing" / "alpha"
    write_data_export(
        root,
        "exec-1",
        {"part-1.csv.gz": frame},
        period=PERIOD,
        file_format="csv",
        export_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    config_path = write_config(
        tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01", **extra
    )
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    return job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False), config_path


def test_every_sli_is_a_partitioned_check_with_one_stable_numeric_key(tmp_path: Path, instance) -> None:
    result, _ = _run(tmp_path, cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 3)]), instance)
    assert result.success
    evaluations = _evaluations(result)
    budget_checks = {f"slo_budget_{name}" for name in BUDGETED_SLIS}
    assert set(evaluations) == set(SLI_KEYS) | budget_checks | {"lake_catalogue"}
    catalogue = evaluations.pop("lake_catalogue")  # not an SLI: no sli/ key, no route
    assert catalogue.passed and catalogue.partition == DAY
    assert catalogue.metadata["catalogue/views"].value == catalogue.metadata["catalogue/file_views"].value > 0
    for name in budget_checks:  # each SLO's budget: attainment and budget left, plotted per partition
        assert evaluations[name].partition == DAY and evaluations[name].passed, name
        if name == "slo_budget_reconciliation_delta":  # the month is open: M7 judged nothing yet
            assert "no evaluation" in evaluations[name].metadata["summary"].value
            continue
        assert evaluations[name].metadata["slo/attainment"].value == 1.0, name
    for name, key in SLI_KEYS.items():
        evaluation = evaluations[name]
        assert evaluation.partition == DAY, name
        if key.endswith("_"):
            key = next(k for k in evaluation.metadata if k.startswith(key) and k.count("/") == 1)
        assert isinstance(evaluation.metadata[key].value, float), name
        assert evaluation.metadata["alert/route"].value in ("page", "ticket", "none"), name
    assert all(e.passed for e in evaluations.values()), {
        n: e.metadata["summary"] for n, e in evaluations.items() if not e.passed
    }
    assert evaluations["sli_ingestion_cost"].metadata["sli/ingestion_bytes_read"].value > 0
    assert evaluations["sli_ingestion_cost"].metadata["sli/ingestion_bytes_stored"].value > 0
    # the check history is kept per partition in the instance
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [__import__("dagster").AssetCheckKey(AssetKey("tag_enriched_costs"), "sli_unallocated_percent")]
    )
    assert list(record.values())[0].event.dagster_event.event_specific_data.partition == DAY


def test_a_delivery_read_twice_fails_the_duplicate_contract_at_error_without_stopping_the_day(
    tmp_path: Path, instance
) -> None:
    frame = cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 3)])
    result, _ = _run(tmp_path, pl.concat([frame, frame]), instance)
    evaluations = _evaluations(result)
    contract = evaluations["contract_duplicates"]
    assert not contract.passed and contract.severity == AssetCheckSeverity.ERROR and not contract.blocking
    assert contract.metadata["sli/duplicate_rate"].value == pytest.approx(0.5)
    assert contract.metadata["sli/duplicate_rate/alpha"].value == pytest.approx(0.5)
    assert "source 'alpha'" in contract.description
    assert not evaluations["sli_duplicate_rate"].passed
    # not blocking (a blocking check would stop every source's downstream, invariant 6): the day goes on,
    # the copies dropped, never counted
    assert result.success
    assert instance.get_latest_materialization_event(AssetKey("tag_enriched_costs")) is not None


def test_untagged_spend_fails_the_unallocated_sli_with_its_configured_severity(tmp_path: Path, instance) -> None:
    frame = cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 3)]).drop("resource_tags_user_team")
    result, _ = _run(tmp_path, frame, instance, slo={"unallocated_percent": {"target": 50, "severity": "ERROR"}})
    check = _evaluations(result)["sli_unallocated_percent"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["sli/unallocated_percent"].value == pytest.approx(100.0)
    assert check.metadata["slo/unallocated_percent"].value == 50.0
    assert result.success  # a WARN/ERROR SLI that is not blocking never stops the spine


def test_a_drifted_file_fails_the_schema_contract(tmp_path: Path, instance) -> None:
    good = cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 3)])
    drifted = good.drop("line_item_usage_start_date")
    root = tmp_path / "landing" / "alpha"
    write_data_export(
        root, "exec-1", {"part-1.csv.gz": good, "part-2.csv.gz": drifted}, period=PERIOD, file_format="csv"
    )
    config_path = write_config(
        tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01"
    )
    result = (
        build_definitions(config_path)
        .resolve_job_def(JOB_NAME)
        .execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
    )
    # A column the adapter needs is gone: the raw step holds the source's day back (SchemaDriftError, issue 4)
    # with a `schema_change` record naming the column and the delivery, instead of publishing it short;
    # M9 counts it and the publish guard fails at ERROR for that source.
    lake = load_config(config_path).lake_url
    records = pl.read_parquet(quarantine_url(lake, "records", dt.date.fromisoformat(DAY), "alpha"))
    (reason,) = records.filter(pl.col("kind") == "schema_change")["reason"].to_list()
    assert reason.startswith("breaking: ") and "'line_item_usage_start_date'" in reason and "part-2.csv.gz" in reason
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not evaluations["contract_schema"].passed
    assert evaluations["contract_schema"].metadata["sli/schema_failures"].value == 1.0
    assert not evaluations["publish_guard"].passed
    assert not (Path(lake) / "normalized_line_items" / f"date={DAY}" / "source=alpha").exists()


def test_a_second_source_is_still_published_when_the_first_drifts(tmp_path: Path, instance) -> None:
    """M9 through `billing_daily`: the drifted source fails the schema contract naming it; the other source's
    normalized, enriched and reconciliation slices are built with its full cost, and its checks run."""
    day = dt.date.fromisoformat(DAY)
    good = cur2_month_frame(PERIOD, days=[day])
    write_data_export(
        tmp_path / "landing" / "drifts",
        "exec-1",
        {"part-1.csv.gz": good, "part-2.csv.gz": good.drop("line_item_usage_start_date")},
        period=PERIOD,
        file_format="csv",
    )
    beta = cur2_month_frame(PERIOD, lambda d, t, s: 7.25, days=[day], account="222222222222")
    write_data_export(
        tmp_path / "landing" / "steady", "exec-1", {"part-1.csv.gz": beta}, period=PERIOD, file_format="csv"
    )
    config_path = write_config(
        tmp_path,
        [{"name": n, "provider": "aws_cur2", "url": str(tmp_path / "landing" / n)} for n in ("drifts", "steady")],
        start_date="2023-10-01",
    )
    result = (
        build_definitions(config_path)
        .resolve_job_def(JOB_NAME)
        .execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
    )
    assert result.success
    evaluations = _evaluations(result)
    schema = evaluations["contract_schema"]
    assert not schema.passed and schema.severity == AssetCheckSeverity.ERROR
    assert schema.metadata["sli/schema_failures/drifts"].value == 1.0
    assert schema.metadata["sli/schema_failures/steady"].value == 0.0
    assert "source 'drifts'" in schema.description and "source 'steady'" not in schema.description
    lake = Path(load_config(config_path).lake_url)
    for table in ("normalized_line_items", "tag_enriched_costs", "reconciliation_deltas"):
        assert (lake / table / f"date={DAY}" / "source=steady").exists(), table
        assert not (lake / table / f"date={DAY}" / "source=drifts").exists(), table
    published = pl.read_parquet(lake / "normalized_line_items" / f"date={DAY}" / "source=steady")
    assert published["BilledCost"].sum() == Decimal("7.25") * 9  # the 9 delivered rows of 7.25
    # the checks of the day ran for the steady source (none skipped); it fails none of them
    assert evaluations["sli_unallocated_percent"].metadata["sli/unallocated_percent/steady"].value == 0.0
    assert evaluations["sli_quarantine_rate"].passed and evaluations["source_failures"].passed
    assert "drifts" not in evaluations["sli_reconciliation_delta"].description


def test_denied_reads_are_counted_as_access_violations(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", cur2_month_frame(PERIOD, days=[dt.date(2023, 11, 3)]), PERIOD, files=2)
    config = load_config(write_config(tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}]))
    original = Store.stage

    def deny(self, url, workdir):
        if url.endswith("part-1.csv.gz"):
            raise PermissionError(f"403 Forbidden: AccessDenied reading {url}")
        return original(self, url, workdir)

    monkeypatch.setattr(Store, "stage", deny)
    run_day(config, dt.date(2023, 11, 3))
    now = dt.datetime.now(dt.UTC)
    denied = slis.access_violations(config, Store(), dt.date(2023, 11, 3), now)
    assert denied.value == 1.0 and not denied.passed and denied.target.severity == "ERROR"
    # M10 has no error budget: its budget check pages on the first denied read
    assert ErrorBudgetConfig().objective_of("access_violations") == 1.0
    assert slis.schema_failures(config, Store(), dt.date(2023, 11, 3), now).value == 0.0  # not a schema problem


def test_freshness_is_partition_aware_a_backfilled_old_day_does_not_make_yesterday_fresh(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [
                {"name": "alpha", "provider": "aws_cur2", "url": "x"},
                {"name": "slow", "provider": "aws_cur2", "url": "y", "expected_latency_hours": 72},
            ],
        )
    )
    store = Store()
    now = dt.datetime(2024, 3, 10, 12, tzinfo=dt.UTC)
    old, missing = dt.date(2024, 2, 20), dt.date(2024, 3, 8)
    write_state(store, config.lake_url, "alpha", old, {"raw": {"first_available_at": now.isoformat()}})
    stale = slis.freshness(config, store, missing, now, config.source("alpha"))
    assert not stale.passed and stale.value == pytest.approx(36.0)  # 36 h after the day ended, SLA 24 h
    assert slis.freshness(config, store, missing, now, config.source("slow")).passed  # 72 h SLA not over yet
    late = now - dt.timedelta(hours=6)
    write_state(store, config.lake_url, "alpha", missing, {"raw": {"first_available_at": late.isoformat()}})
    assert not slis.freshness(config, store, missing, now, config.source("alpha")).passed  # arrived after 30 h
    on_time = dt.datetime(2024, 3, 9, 20, tzinfo=dt.UTC)
    state = read_state(store, config.lake_url, "alpha", missing)
    state["raw"]["first_available_at"] = on_time.isoformat()
    write_state(store, config.lake_url, "alpha", missing, state)
    assert slis.freshness(config, store, missing, now, config.source("alpha")).passed


def _publish_raw(config_path: Path, source: str, day: dt.date) -> None:
    """A raw slice of `source` for `day` in the lake, available an hour after the day ended."""
    lake = load_config(config_path).lake_url
    url = slice_url(lake, "raw_line_items", day, source)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"x": [1]}).write_parquet(url)
    available = dt.datetime.combine(day, dt.time(1), tzinfo=dt.UTC) + dt.timedelta(days=1)
    write_state(Store(), lake, source, day, {"raw": {"first_available_at": available.isoformat(), "rows": 1}})


def test_the_freshness_sensor_fails_missing_days_once_per_partition(tmp_path: Path, instance) -> None:
    config_path = write_config(
        tmp_path,
        [
            {"name": "alpha", "provider": "aws_cur2", "url": str(tmp_path / "none")},
            {"name": "beta", "provider": "aws_cur2", "url": str(tmp_path / "none")},
        ],
        start_date="2020-01-01",
        automation={"freshness_window_days": 3},
    )
    today = dt.datetime.now(dt.UTC).date()
    _publish_raw(config_path, "beta", today - dt.timedelta(days=2))  # beta delivered the day before yesterday
    _publish_raw(config_path, "beta", today - dt.timedelta(days=3))
    defs = build_definitions(config_path)
    sensor = defs.resolve_sensor_def(FRESHNESS_SENSOR)
    resources = {"billing": BillingResource(config_path=str(config_path))}
    result = sensor(build_sensor_context(instance=instance, resources=resources))
    # yesterday's 24 h SLA runs until the end of today: only the two days before are overdue, and only alpha
    # misses them; beta delivered them, so alpha's absence is an incident: ERROR
    expected = {(today - dt.timedelta(days=k)).isoformat() for k in (2, 3)}
    assert {e.partition for e in result.asset_events} == expected
    assert all(
        e.check_name == "freshness_alpha" and not e.passed and e.severity == AssetCheckSeverity.ERROR
        for e in result.asset_events
    )
    assert all(e.metadata["alert/route"].value == "page" for e in result.asset_events)
    again = sensor(build_sensor_context(instance=instance, cursor=result.cursor, resources=resources))
    assert list(again.asset_events) == []


@pytest.mark.parametrize(
    ("last_back", "severity", "route"), [(10, AssetCheckSeverity.WARN, "ticket"), (4, AssetCheckSeverity.ERROR, "page")]
)
def test_the_freshness_sensor_warns_after_the_last_day_any_source_delivered_long_ago(
    tmp_path: Path, instance, last_back: int, severity: AssetCheckSeverity, route: str
) -> None:
    """Days after the last day any source delivered, that day older than the freshness window (the sources end
    before them, as in a demo month), fail at WARN with a ticket; a recent stop of every source still pages."""
    config_path = write_config(
        tmp_path,
        [{"name": "alpha", "provider": "aws_cur2", "url": str(tmp_path / "none")}],
        start_date="2020-01-01",
        automation={"freshness_window_days": 5},
    )
    today = dt.datetime.now(dt.UTC).date()
    last = today - dt.timedelta(days=last_back)
    _publish_raw(config_path, "alpha", last)  # the last day delivered
    sensor = build_definitions(config_path).resolve_sensor_def(FRESHNESS_SENSOR)
    resources = {"billing": BillingResource(config_path=str(config_path))}
    result = sensor(build_sensor_context(instance=instance, resources=resources))
    overdue = {(today - dt.timedelta(days=k)).isoformat() for k in (2, 3, 4, 5) if k != last_back}
    assert {e.partition for e in result.asset_events} == overdue
    for event in result.asset_events:
        assert not event.passed and event.severity == severity
        assert event.metadata["alert/route"].value == route
        if route == "ticket":
            assert event.metadata["last_delivered_day"].value == last.isoformat()
            assert "no source has delivered" in event.description


def test_cost_anomalies_is_an_asset_after_the_allocation_and_before_the_budgets(tmp_path: Path) -> None:
    """M8 in a straight line: the asset writes the day's anomaly table, the check on it only reads, and the
    budgets (which evaluate M8 again) run after it."""
    defs = build_definitions(write_config(tmp_path, [{"name": "c", "provider": "aws_cur2", "url": "x"}]))
    graph = defs.resolve_asset_graph()
    anomalies_key = AssetKey("cost_anomalies")
    assert graph.get(anomalies_key).parent_keys == {AssetKey("tag_enriched_costs")}
    assert anomalies_key in graph.get(AssetKey("slo_error_budgets")).parent_keys
    assert {k.asset_key for k in graph.asset_check_keys if k.name == "sli_cost_anomalies"} == {anomalies_key}
    job = defs.resolve_job_def(JOB_NAME)
    assert anomalies_key in job.asset_layer.executable_asset_keys
