"""The billing calendar: billing periods are calendar months (`YYYY-MM`), partitions are usage days."""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.adapters import Adapter, Delivery


def period_of(day: dt.date) -> str:
    return day.strftime("%Y-%m")


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """First and last day of a billing period."""
    year, month = (int(part) for part in period.split("-"))
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return dt.date(year, month, 1), following - dt.timedelta(days=1)


def days_of_period(period: str) -> list[dt.date]:
    first, last = period_bounds(period)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def period_closed(day: dt.date) -> bool:
    """A billing period (calendar month) is judged against its invoice from its last day's partition on;
    before that the month-to-date delta is information only (`month_in_progress`)."""
    return day == period_bounds(period_of(day))[1]


def open_periods(today: dt.date, lookback_months: int, start_date: dt.date) -> list[str]:
    """`YYYY-MM` of the months still open for restatement, newest first, none before `start_date`."""
    periods = []
    year, month = today.year, today.month
    for _ in range(lookback_months):
        if (year, month) < (start_date.year, start_date.month):
            break
        periods.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return periods


def is_period_scoped(adapter: Adapter, delivery: Delivery) -> bool:
    """A manifest-described delivery holds one billing period: rows dated outside it are bad rows.

    GCP is not (its files hold every usage month, invoiced by `invoice.month`), nor are plain folders.
    """
    return delivery.manifest_uri is not None and not getattr(adapter, "bills_by_invoice_month", False)


def partition_day(start: pl.Expr, billing_period: str, scoped: bool) -> pl.Expr:
    """The usage day a raw row is published under: its own, or (unparseable, or outside a scoped
    delivery's period) the period's first day, where the row is quarantined with its reason."""
    first, last = period_bounds(billing_period)
    date = start.dt.date()
    if scoped:
        date = pl.when(date.is_between(first, last)).then(date)
    return date.fill_null(first)
