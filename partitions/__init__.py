"""Partition definitions shared by code locations: one partition per UTC usage day."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition


def _date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def daily_usage_partitions(
    start_date: dt.date | str, end_date: dt.date | str | None = None
) -> DailyPartitionsDefinition:
    """Daily partitions keyed `YYYY-MM-DD` (UTC usage day) from `start_date`.

    Without `end_date` they run up to yesterday: today is not a partition until it ends. With it, the
    last partition is `end_date` (inclusive), or yesterday if that is earlier: a landing zone that
    covers a fixed period (a demo, a migration of past exports) shows no days it has no data for.
    """
    end = None if end_date is None else (_date(end_date) + dt.timedelta(days=1)).isoformat()
    return DailyPartitionsDefinition(
        start_date=_date(start_date).isoformat(), end_date=end, timezone="UTC", end_offset=0, fmt="%Y-%m-%d"
    )


__all__ = ["daily_usage_partitions"]
