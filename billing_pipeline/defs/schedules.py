"""The daily schedule: materialize yesterday (UTC) once the day has ended.

Exports keep restating the month for weeks after; the late-arrival sensors pick those up. The schedule
only guarantees that every day is attempted at least once even if no new delivery shows up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    JobDefinition,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.names import JOB

SCHEDULE_NAME = f"{JOB}_yesterday"


def yesterday(scheduled_at: dt.datetime) -> dt.date:
    """The UTC usage day before the tick (a tick at 06:00 UTC on the 2nd materializes the 1st)."""
    return (scheduled_at.astimezone(dt.UTC) - dt.timedelta(days=1)).date()


def build_daily_schedule(
    config: BillingConfig, job: JobDefinition | Any, partitions_def: PartitionsDefinition
) -> ScheduleDefinition:
    """One run a day for yesterday; a day outside the partitions is skipped, and the run key makes a tick
    that is evaluated twice launch one run."""

    @schedule(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=config.automation.schedule_cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Materializes yesterday's partition (UTC) of the whole billing spine.",
    )
    def _yesterday(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        day = yesterday(context.scheduled_execution_time or dt.datetime.now(dt.UTC)).isoformat()
        if not partitions_def.has_partition_key(day):
            return SkipReason(f"{day} is not a partition (before start_date?)")
        key = hashlib.sha256(f"schedule|{day}".encode()).hexdigest()[:40]
        return RunRequest(partition_key=day, run_key=key, tags={"billing/trigger": "schedule"})

    return _yesterday
