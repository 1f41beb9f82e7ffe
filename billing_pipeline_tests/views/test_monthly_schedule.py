"""Monthly partitions over the daily ones' days, and the daily refresh of the current and previous month."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dagster import DagsterInstance, RunRequest, build_schedule_context

from billing_pipeline.definitions import build_definitions
from billing_pipeline.views.names import MONTHLY_SCHEDULE
from partitions import daily_usage_partitions, monthly_usage_partitions

from ..conftest import write_config


def test_monthly_partitions_cover_the_daily_ones() -> None:
    assert monthly_usage_partitions("2026-09-15", "2026-11-03").get_partition_keys() == [
        "2026-09-01",
        "2026-10-01",
        "2026-11-01",
    ]
    days = daily_usage_partitions("2026-09-15", "2026-11-03").get_partition_keys()
    assert {d[:7] + "-01" for d in days} == set(
        monthly_usage_partitions("2026-09-15", "2026-11-03").get_partition_keys()
    )


def test_the_schedule_refreshes_the_current_and_previous_month(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, [{"name": "c", "provider": "aws_cur2", "url": str(tmp_path / "l")}], start_date="2026-09-10"
    )
    defs = build_definitions(config)
    schedule = defs.resolve_schedule_def(MONTHLY_SCHEDULE)
    instance = DagsterInstance.ephemeral()

    def context(tick: dt.datetime):
        return build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        )

    def requested(tick: dt.datetime) -> list[str]:
        result = schedule.evaluate_tick(context(tick))
        return sorted(r.partition_key for r in result.run_requests or [] if isinstance(r, RunRequest))

    assert requested(dt.datetime(2026, 11, 15, 8, tzinfo=dt.UTC)) == ["2026-10-01", "2026-11-01"]
    # on the 1st, yesterday's month is the current one: October and September are refreshed
    assert requested(dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)) == ["2026-09-01", "2026-10-01"]
    # the month before start_date is not a partition
    assert requested(dt.datetime(2026, 9, 20, 8, tzinfo=dt.UTC)) == ["2026-09-01"]
    first = schedule.evaluate_tick(context(dt.datetime(2026, 11, 15, 8, tzinfo=dt.UTC)))
    later = schedule.evaluate_tick(context(dt.datetime(2026, 11, 16, 8, tzinfo=dt.UTC)))
    assert {r.run_key for r in first.run_requests or []}.isdisjoint({r.run_key for r in later.run_requests or []})
