"""Partition definitions shared by code locations: one partition per UTC usage day, and per month."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition


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


def _first_of_next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def monthly_usage_partitions(
    start_date: dt.date | str, end_date: dt.date | str | None = None
) -> MonthlyPartitionsDefinition:
    """Monthly partitions keyed `YYYY-MM-01` over the same usage days as `daily_usage_partitions`.

    The first is the month of `start_date`. The current month is a partition while it runs (its
    statements are refreshed daily until it closes); with `end_date`, the last is `end_date`'s month.
    """
    end = None if end_date is None else _first_of_next_month(_date(end_date)).isoformat()
    return MonthlyPartitionsDefinition(
        start_date=_date(start_date).replace(day=1).isoformat(),
        end_date=end,
        timezone="UTC",
        end_offset=1,
        fmt="%Y-%m-%d",
    )


__all__ = ["daily_usage_partitions", "monthly_usage_partitions"]
