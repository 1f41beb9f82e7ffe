"""The code location's graph against a checked-in snapshot, so that any change to it is a visible diff.

The snapshot is the shipped `billing.yaml` loaded by `build_definitions`: asset keys with their group,
owners, kinds, deps and daily partitions; the job and its selection; every asset check name per asset;
every sensor and schedule with its default status. Nothing runs: the test only reads the definitions.

After an intended change to the graph, rewrite the snapshot and commit it with the change:
`BILLING_UPDATE_SNAPSHOT=1 python -m pytest billing_pipeline_tests/defs/test_code_location_snapshot.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import DailyPartitionsDefinition, Definitions, PartitionsDefinition

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.names import JOB

REPOSITORY = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("code_location_snapshot.json")
UPDATE_ENV_VAR = "BILLING_UPDATE_SNAPSHOT"


def partitions_snapshot(partitions_def: PartitionsDefinition | None) -> dict[str, Any] | None:
    """A daily partitions definition as plain values; anything else by its type, so a swap shows."""
    if partitions_def is None:
        return None
    if not isinstance(partitions_def, DailyPartitionsDefinition):
        return {"type": type(partitions_def).__name__}
    return {
        "type": "daily",
        "start": partitions_def.start.date().isoformat(),
        "end_exclusive": partitions_def.end.date().isoformat() if partitions_def.end else None,
        "timezone": partitions_def.timezone,
        "fmt": partitions_def.fmt,
        "end_offset": partitions_def.end_offset,
    }


def assets_snapshot(defs: Definitions) -> dict[str, Any]:
    checks: dict[str, list[str]] = {}
    for check_key in defs.resolve_asset_graph().asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    return {
        spec.key.to_user_string(): {
            "group": spec.group_name,
            "owners": sorted(spec.owners),
            "kinds": sorted(spec.kinds),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "partitions": partitions_snapshot(spec.partitions_def),
            "checks": sorted(checks.get(spec.key.to_user_string(), [])),
        }
        for spec in sorted(defs.resolve_all_asset_specs(), key=lambda spec: spec.key.to_user_string())
    }


def code_location_snapshot(defs: Definitions) -> dict[str, Any]:
    """The graph as plain JSON values, sorted wherever the order carries no meaning."""
    job = defs.resolve_job_def(JOB)
    return {
        "assets": assets_snapshot(defs),
        # what a backfill of the assets from the UI (or `dagster asset materialize`) runs on
        "asset_job_executor": defs.resolve_implicit_global_asset_job_def().executor_def.name,
        "jobs": {
            job.name: {
                "selection": sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys),
                "executor": job.executor_def.name,
                "partitions": partitions_snapshot(job.partitions_def),
            }
        },
        "sensors": {
            sensor.name: {
                "default_status": sensor.default_status.value,
                "type": sensor.sensor_type.value,
                "jobs": sorted(target.job_name for target in sensor.targets),
                "minimum_interval_seconds": sensor.minimum_interval_seconds,
            }
            for sensor in sorted(defs.sensors or [], key=lambda sensor: sensor.name)
        },
        "schedules": {
            schedule.name: {
                "default_status": schedule.default_status.value,
                "cron_schedule": schedule.cron_schedule,
                "timezone": schedule.execution_timezone,
                "job": schedule.job_name,
            }
            for schedule in sorted(defs.schedules or [], key=lambda schedule: schedule.name)
        },
    }


def test_the_code_location_matches_its_snapshot() -> None:
    actual = code_location_snapshot(build_definitions(REPOSITORY / "billing.yaml"))
    if os.environ.get(UPDATE_ENV_VAR):
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected, (
        f"the code location changed; if that is intended, rerun with {UPDATE_ENV_VAR}=1 and commit {SNAPSHOT.name}"
    )


def test_the_snapshot_names_every_spine_asset_and_its_check() -> None:
    """A guard on the snapshot itself: an empty or truncated file must not pass as the expected graph."""
    expected = json.loads(SNAPSHOT.read_text())
    assert set(expected["assets"]) >= {
        "raw_line_items",
        "normalized_line_items",
        "tag_enriched_costs",
        "reconciliation_deltas",
        "slo_error_budgets",
    }
    assert "publish_guard" in expected["assets"]["raw_line_items"]["checks"]
    daily = sorted(name for name, spec in expected["assets"].items() if spec["partitions"]["type"] == "daily")
    assert expected["jobs"][JOB]["selection"] == daily  # the monthly views have a job of their own
    assert expected["schedules"]["billing_daily_yesterday"]["default_status"] == "RUNNING"
