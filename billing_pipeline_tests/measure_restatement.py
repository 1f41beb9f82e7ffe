"""Measure invariant 4 on a live `dagster dev`: a restatement that changes 2 of 30 days.

    .venv/bin/python -m billing_pipeline_tests.measure_restatement [--days 30] [--interval 5]

The landing zone starts with version 1 of a 30-day month (the previous month, open for restatement);
the late-arrival sensor ingests it. Then version 2 (same rows, split over other files, two days with
changed costs) is dropped in, and the script reports how many runs the sensor requested, which days,
how many slices of the lake were rewritten, and how long the loop took from the drop to the last
fresh slice (sensor tick + run queue + run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

from billing_pipeline.platform.lake import slice_url

from .conftest import write_config
from .dagster_dev import DagsterDev
from .ops_fixtures import SERVICES, TEAMS, cur2_month_frame, deliver_cur2

LAYERS = ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")


def _slices(lake: Path, days: list[dt.date]) -> dict[tuple[str, str], int]:
    out = {}
    for layer in LAYERS:
        for day in days:
            path = Path(slice_url(str(lake), layer, day, "cur2"))
            if path.exists():
                out[(layer, day.isoformat())] = path.stat().st_mtime_ns
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval", type=int, default=5, help="late-arrival sensor minimum interval (s)")
    args = parser.parse_args()
    first_of_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    start = (first_of_month - dt.timedelta(days=1)).replace(day=1)
    period = start.strftime("%Y-%m")
    days = [start + dt.timedelta(days=i) for i in range(args.days)]
    changed = {days[6], days[20]}

    def restated(day: dt.date, team: str, service: str) -> float:
        return 10.0 + TEAMS.index(team) + SERVICES.index(service) + (4.25 if day in changed else 0.0)

    work = Path(tempfile.mkdtemp(prefix="billing-measure-"))
    root = work / "landing" / "cur2"
    deliver_cur2(root, "exec-1", cur2_month_frame(period, days=days), period)
    config_path = write_config(
        work,
        [{"name": "cur2", "provider": "aws_cur2", "url": str(root)}],
        start_date=start.isoformat(),
        automation={"sensor_interval_seconds": args.interval, "freshness_window_days": 1},
    )
    dev = DagsterDev(work / "dagster_home", config_path, work / "dagster-dev.log")
    report: dict[str, object] = {"workdir": str(work), "period": period, "days_delivered": len(days)}
    try:
        began = time.monotonic()
        dev.start()
        dev.wait_loaded()
        initial = dev.wait_runs_finished({"billing/version": "exec-1"}, expected=len(days), timeout=900)
        report["initial_runs"] = len(initial)
        report["initial_ingest_seconds"] = round(time.monotonic() - began, 1)
        time.sleep(2 * args.interval)
        before = _slices(work / "lake", days)

        dropped = time.time()
        deliver_cur2(root, "exec-2", cur2_month_frame(period, restated, days=days), period, files=3)
        runs = dev.wait_runs_finished({"billing/version": "exec-2"}, expected=len(changed), timeout=300)
        time.sleep(3 * args.interval)  # later ticks must request nothing more
        runs = dev.runs({"billing/version": "exec-2"})
        after = _slices(work / "lake", days)
        rewritten = sorted(
            f"{layer}:{day}" for (layer, day), mtime in after.items() if before.get((layer, day)) != mtime
        )
        report.update(
            {
                "changed_days": sorted(d.isoformat() for d in changed),
                "runs_requested_by_restatement": len(runs),
                "days_reprocessed": sorted(r["tags"]["dagster/partition"] for r in runs),
                "run_statuses": sorted({r["status"] for r in runs}),
                "slices_total": len(after),
                "slices_rewritten": len(rewritten),
                "rewritten": rewritten,
                "drop_to_first_run_created_s": round(min(r["creationTime"] for r in runs) - dropped, 2),
                "drop_to_last_run_finished_s": round(max(r["endTime"] for r in runs) - dropped, 2),
                "run_durations_s": sorted(round(r["endTime"] - r["startTime"], 2) for r in runs),
                "sensor_interval_s": args.interval,
            }
        )
    finally:
        dev.stop()
    print(json.dumps(report, indent=2))
    if os.environ.get("KEEP") is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
