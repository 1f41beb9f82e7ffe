"""The spine as Dagster runs it: `billing_daily` on a real instance on disk, metadata in the event log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions

from ..conftest import legacy_cur_landing, sample_as_cur2_frame, write_config, write_data_export

DAY = "2023-11-01"


@pytest.fixture
def instance():
    """A real SQLite instance in a temporary DAGSTER_HOME on disk."""
    with instance_for_test() as instance:
        yield instance


def _latest(instance: DagsterInstance, asset: str):
    event = instance.get_latest_materialization_event(AssetKey(asset))
    assert event is not None, asset
    return event.asset_materialization


def test_billing_daily_materializes_the_spine_with_metadata(tmp_path: Path, instance: DagsterInstance) -> None:
    report = legacy_cur_landing(tmp_path / "landing")
    config_path = write_config(
        tmp_path, [{"name": "cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01"
    )
    defs = build_definitions(config_path)
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key=DAY, instance=instance)
    assert result.success

    raw = _latest(instance, "raw_line_items")
    normalized = _latest(instance, "normalized_line_items")
    enriched = _latest(instance, "tag_enriched_costs")
    reconciliation = _latest(instance, "reconciliation_deltas")
    assert raw.partition == DAY
    rows = normalized.metadata["dagster/row_count"].value
    assert rows == raw.metadata["dagster/row_count"].value > 0
    for key in ("billed_cost_usd", "effective_cost_usd", "duplicate_cost_usd", "duplicate_rows", "quarantined_rows"):
        assert isinstance(normalized.metadata[key].value, (int, float)), key
    assert "| source |" in normalized.metadata["preview"].value
    columns = {c.name for c in normalized.metadata["dagster/column_schema"].value.columns}
    assert {"BilledCost", "EffectiveCost", "ChargePeriodStart", "x_Source"} <= columns
    assert enriched.metadata["unallocated_percent_usd"].value == pytest.approx(100.0)
    assert reconciliation.metadata["conservation_breaks"].value == 0

    lake = Path(tmp_path / "lake")
    with duckdb.connect(str(lake / "lake.duckdb"), read_only=True) as connection:
        total = connection.execute(
            "SELECT sum(BilledCost) FROM normalized_line_items WHERE date = DATE '2023-11-01'"
        ).fetchone()[0]
    assert float(total) == pytest.approx(normalized.metadata["billed_cost_usd"].value)


def test_every_asset_is_described_grouped_owned_and_kinded(tmp_path: Path) -> None:
    defs = build_definitions(write_config(tmp_path, [{"name": "c", "provider": "aws_cur2", "url": "x"}]))
    specs = list(defs.resolve_all_asset_specs())
    groups = {s.key.path[-1]: s.group_name for s in specs}
    assert groups == {
        "raw_line_items": "billing_spine",
        "normalized_line_items": "billing_spine",
        "tag_enriched_costs": "billing_spine",
        "reconciliation_deltas": "billing_spine",
        "cost_anomalies": "billing_slos",
        "slo_error_budgets": "billing_slos",
        "monthly_chargeback": "billing_views",
        "unit_costs": "billing_views",
        "budget_forecast": "billing_views",
        "dashboards": "billing_views",
    }
    for spec in specs:
        assert spec.description and spec.owners and spec.kinds


def test_an_incomplete_delivery_fails_its_sources_guard_naming_source_and_file(
    tmp_path: Path, instance: DagsterInstance
) -> None:
    """Invariant 5 and 6: the held-back source fails the ERROR `publish_guard` check naming source and
    file; the other source of the day is built and checked as usual."""
    root = tmp_path / "landing" / "cur2-export"
    write_data_export(
        root,
        "exec-1",
        {"part-1.snappy.parquet": sample_as_cur2_frame()},
        extra_uris=["s3://b/cur2-export/data/BILLING_PERIOD=2023-11/exec-1/part-7.snappy.parquet"],
    )
    healthy = tmp_path / "landing" / "healthy"
    write_data_export(healthy, "exec-1", {"part-1.snappy.parquet": sample_as_cur2_frame()})
    config_path = write_config(
        tmp_path,
        [
            {"name": "cur2_main", "provider": "aws_cur2", "url": str(root)},
            {"name": "cur2_other", "provider": "aws_cur2", "url": str(healthy)},
        ],
        start_date="2023-11-01",
    )
    result = (
        build_definitions(config_path)
        .resolve_job_def(JOB_NAME)
        .execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
    )
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    guard = evaluations["publish_guard"]
    assert not guard.passed and guard.severity == AssetCheckSeverity.ERROR
    message = guard.description or ""
    assert "cur2_main" in message and "part-7.snappy.parquet" in message and "held back" in message
    assert "cur2_other" not in message
    lake = tmp_path / "lake"
    assert not (lake / "normalized_line_items" / f"date={DAY}" / "source=cur2_main").exists()
    assert (lake / "normalized_line_items" / f"date={DAY}" / "source=cur2_other" / "part-0.parquet").exists()


def test_the_workspace_loads_with_the_dagster_cli(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, [{"name": "c", "provider": "aws_cur2", "url": "x"}])
    repo = Path(__file__).resolve().parents[2]
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=180,
        env={**__import__("os").environ, "BILLING_CONFIG": str(config_path)},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Validation successful" in completed.stdout + completed.stderr
    warnings = [line for line in completed.stderr.splitlines() if "Warning" in line]
    # the CLI's own notice that `dg check defs` supersedes this command is the only warning allowed
    assert all("SupersessionWarning" in line for line in warnings), completed.stderr


def test_a_source_failing_a_later_layer_never_stops_the_others(tmp_path: Path, instance: DagsterInstance) -> None:
    """Invariant 6 past the raw layer: one source's normalized build fails (its published raw slice is
    damaged on disk); the other source is normalized, allocated and reconciled, and `source_failures`
    fails at ERROR naming the broken source and layer."""
    roots = {name: tmp_path / "landing" / name for name in ("broken", "healthy")}
    for root in roots.values():
        write_data_export(root, "exec-1", {"part-1.snappy.parquet": sample_as_cur2_frame()})
    config_path = write_config(
        tmp_path,
        [{"name": n, "provider": "aws_cur2", "url": str(r)} for n, r in roots.items()],
        start_date="2023-11-01",
    )
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    assert job.execute_in_process(partition_key=DAY, instance=instance).success
    lake = tmp_path / "lake"
    raw = lake / "raw_line_items" / f"date={DAY}" / "source=broken" / "part-0.parquet"
    raw.write_bytes(raw.read_bytes()[:200])  # the published slice is damaged after the fact
    (lake / "normalized_line_items" / f"date={DAY}" / "source=healthy" / "part-0.parquet").unlink()

    result = job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
    evaluations = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    failures = evaluations["source_failures"]
    assert not failures.passed and failures.severity == AssetCheckSeverity.ERROR
    assert "'broken', normalized" in (failures.description or "") and "healthy" not in (failures.description or "")
    assert (lake / "normalized_line_items" / f"date={DAY}" / "source=healthy" / "part-0.parquet").exists()
    assert (lake / "reconciliation_deltas" / f"date={DAY}" / "source=healthy" / "part-0.parquet").exists()
