"""End to end through the UI's API: `dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME.

The code location loads, every sensor and the schedule are RUNNING, a week's backfill launched with
`launchPartitionBackfill` completes, then a restated CUR 2.0 version dropped into the landing zone
makes the late-arrival sensor launch runs for the changed days only, their check results appear, and
the alert sensors' messages reach a webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

from billing_pipeline.observability.alerts.outbox import is_routed
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import DAY_ASSETS

from ..conftest import write_config
from ..dagster_dev import DagsterDev
from ..http_capture import Receiver
from ..ops_fixtures import SERVICES, TEAMS, cur2_month_frame, deliver_cur2

SENSOR_INTERVAL = 3


def _period_and_week() -> tuple[str, list[dt.date]]:
    """The previous month (open for restatement, every day of it a partition) and its first week."""
    first_of_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    start = (first_of_month - dt.timedelta(days=1)).replace(day=1)
    return start.strftime("%Y-%m"), [start + dt.timedelta(days=i) for i in range(7)]


def test_backfill_then_restatement_through_dagster_dev(tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    period, week = _period_and_week()
    changed = {week[2], week[4]}

    def restated(day: dt.date, team: str, service: str) -> float:
        return 10.0 + TEAMS.index(team) + SERVICES.index(service) + (7.5 if day in changed else 0.0)

    root = tmp_path / "landing" / "cur2"
    deliver_cur2(root, "exec-1", cur2_month_frame(period, days=week), period)
    monkeypatch.setenv("E2E_PAGERDUTY_KEY", "e2e-routing-key")
    config_path = write_config(
        tmp_path,
        [{"name": "cur2", "provider": "aws_cur2", "url": str(root)}],
        start_date=week[0].isoformat(),
        automation={"sensor_interval_seconds": SENSOR_INTERVAL, "freshness_window_days": 3},
        alerts={
            "ticket": {"kind": "slack", "url": f"{receiver.url}/slack"},
            "page": {"kind": "pagerduty", "url": f"{receiver.url}/pd", "routing_key_env": "E2E_PAGERDUTY_KEY"},
        },
    )
    dev = DagsterDev(tmp_path / "dagster_home", config_path, tmp_path / "dagster-dev.log")
    try:
        dev.start()
        dev.wait_loaded()
        statuses = dev.instigator_statuses()
        assert statuses == {
            "cur2_late_arrivals": "RUNNING",
            "billing_freshness": "RUNNING",
            "billing_alerts_on_success": "RUNNING",
            "billing_alerts_on_failure": "RUNNING",
            "billing_alerts_outbox": "RUNNING",
            "billing_daily_yesterday": "RUNNING",
            "billing_monthly_refresh": "RUNNING",
        }

        # the week as the asset graph's Materialize launches it: one run for the seven days (the day's
        # assets backfill in one run), every day recorded on its own
        backfill_id = dev.launch_asset_backfill(list(DAY_ASSETS), [d.isoformat() for d in week])
        (run,) = dev.wait_runs_finished({"dagster/backfill": backfill_id}, expected=1, timeout=300)
        assert run["status"] == "SUCCESS"
        assert (
            run["tags"]["dagster/asset_partition_range_start"],
            run["tags"]["dagster/asset_partition_range_end"],
        ) == (
            week[0].isoformat(),
            week[-1].isoformat(),
        )
        evaluations = dev.check_evaluations(run["runId"])
        days = [d.isoformat() for d in week]
        assert {e["partition"] for e in evaluations} == set(days)
        per_day = {
            d.isoformat(): {e["checkName"] for e in evaluations if e["partition"] == d.isoformat()} for d in week
        }
        assert len({frozenset(names) for names in per_day.values()}) == 1  # the same checks every day
        assert "freshness_cur2" in per_day[week[0].isoformat()]
        # the alert sensors route that run although it is Dagster's implicit asset job, not billing_daily
        config, routed_by = load_config(config_path), time.monotonic() + 60
        while not is_routed(config.store(), config, run["runId"]):
            assert time.monotonic() < routed_by, "the backfill's run was not routed by the alert sensors"
            time.sleep(1)
        deadline = time.monotonic() + 60
        while dev.backfill_status(backfill_id) not in ("COMPLETED", "COMPLETED_SUCCESS"):
            assert time.monotonic() < deadline, dev.backfill_status(backfill_id)
            time.sleep(1)
        dev.wait_runs_finished(None, expected=None, timeout=120)  # the sensor's own first requests, if any
        time.sleep(2 * SENSOR_INTERVAL)
        dev.wait_runs_finished(None, expected=None, timeout=120)
        lake = Path(tmp_path / "lake")
        before = {d: os.stat(slice_url(str(lake), "normalized_line_items", d, "cur2")).st_mtime_ns for d in week}

        deliver_cur2(root, "exec-2", cur2_month_frame(period, restated, days=week), period, files=3)
        # the changed days, then the week's last day (reconciled before), whose month to date sums them
        everything = dev.wait_runs_finished({"billing/version": "exec-2"}, expected=3, timeout=240)
        restatement = [r for r in everything if r["tags"]["billing/trigger"] == "late_arrival"]
        assert sorted(r["tags"]["dagster/partition"] for r in restatement) == sorted(d.isoformat() for d in changed)
        (refresh,) = [r for r in everything if r["tags"]["billing/trigger"] == "month_to_date"]
        assert refresh["tags"]["dagster/partition"] == week[-1].isoformat() and refresh["status"] == "SUCCESS"
        assert {r["status"] for r in restatement} == {"SUCCESS"}
        for run in restatement:
            evaluations = dev.check_evaluations(run["runId"])
            names = {e["checkName"] for e in evaluations}
            assert {"sli_unallocated_percent", "sli_duplicate_rate", "freshness_cur2", "contract_schema"} <= names
            assert {e["partition"] for e in evaluations} == {run["tags"]["dagster/partition"]}
        after = {d: os.stat(slice_url(str(lake), "normalized_line_items", d, "cur2")).st_mtime_ns for d in week}
        assert {d for d in week if before[d] != after[d]} == changed

        time.sleep(3 * SENSOR_INTERVAL)  # further ticks see the same delivery: nothing more is requested
        assert len(dev.runs({"billing/version": "exec-2"})) == 3

        # the freshness sensor tickets the days after the last one any source delivered (that day is older than
        # the freshness window: the sources ended, nothing is late), and pages nobody for them
        deadline = time.monotonic() + 60
        while (
            not any("freshness_cur2" in json.dumps(m) for m in receiver.by_path("/slack"))
            and time.monotonic() < deadline
        ):
            time.sleep(1)
        assert any("freshness_cur2" in json.dumps(m) for m in receiver.by_path("/slack"))
        assert not any("freshness_cur2" in json.dumps(m) for m in receiver.by_path("/pd"))
    finally:
        dev.stop()
    assert dev.process is not None and dev.process.poll() is not None
