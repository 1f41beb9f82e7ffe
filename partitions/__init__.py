"""Partition definitions shared by code locations: one partition per UTC usage day."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition


def daily_usage_partitions(start_date: dt.date | str) -> DailyPartitionsDefinition:
    """Daily partitions keyed `YYYY-MM-DD` (UTC usage day); today is not a partition until it ends."""
    start = start_date.isoformat() if isinstance(start_date, dt.date) else start_date
    return DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=0, fmt="%Y-%m-%d")


__all__ = ["daily_usage_partitions"]
