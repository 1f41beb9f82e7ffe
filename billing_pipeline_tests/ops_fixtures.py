"""Small synthetic CUR 2.0 months for the operations tests (sensors, invariant 4, SLIs, anomalies).

Rows are made here rather than taken from the public sample because these tests need a whole month
of days, several teams and services, and restatements that change chosen days only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.enrich import build_enriched_slice_if_stale
from billing_pipeline.spine.guard import DeliveryIncompleteError
from billing_pipeline.spine.normalize import build_normalized_slice_if_stale
from billing_pipeline.spine.raw import build_raw_slice_if_changed
from billing_pipeline.spine.reconcile import invoices_digest, publish_reconciliation_if_stale, read_invoices

from .conftest import write_data_export

TEAMS = ("payments", "search", "platform")
SERVICES = ("AmazonEC2", "AmazonS3", "AmazonRDS")


def month_days(period: str) -> list[dt.date]:
    year, month = (int(p) for p in period.split("-"))
    first = dt.date(year, month, 1)
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return [first + dt.timedelta(days=i) for i in range((following - first).days)]


def cur2_rows(
    day: dt.date, cost: Callable[[dt.date, str, str], float] | None = None, account: str = "111111111111"
) -> list[dict[str, str]]:
    """One row per (team, service) for the day; `cost(day, team, service)` sets the unblended cost."""
    cost = cost or (lambda d, t, s: 10.0 + TEAMS.index(t) + SERVICES.index(s))
    start = f"{day.isoformat()}T00:00:00Z"
    end = f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:00Z"
    next_month = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    rows = []
    for team in TEAMS:
        for service in SERVICES:
            rows.append(
                {
                    "identity_line_item_id": f"{day}-{team}-{service}",
                    "identity_time_interval": f"{start}/{end}",
                    "bill_payer_account_id": account,
                    "line_item_usage_account_id": account,
                    "line_item_currency_code": "USD",
                    "line_item_line_item_type": "Usage",
                    "line_item_product_code": service,
                    "line_item_usage_start_date": start,
                    "line_item_usage_end_date": end,
                    "bill_billing_period_start_date": f"{day.replace(day=1).isoformat()}T00:00:00Z",
                    "bill_billing_period_end_date": f"{next_month.isoformat()}T00:00:00Z",
                    "line_item_unblended_cost": repr(round(cost(day, team, service), 6)),
                    "resource_tags_user_team": team,
                }
            )
    return rows


def cur2_month_frame(
    period: str,
    cost: Callable[[dt.date, str, str], float] | None = None,
    days: list[dt.date] | None = None,
    account: str = "111111111111",
) -> pl.DataFrame:
    rows = [r for d in (days or month_days(period)) for r in cur2_rows(d, cost, account)]
    return pl.DataFrame(rows)


def deliver_cur2(root: Path, execution_id: str, frame: pl.DataFrame, period: str, files: int = 2) -> None:
    """One CUR 2.0 delivery of `frame`, split over `files` CSV files (row order shuffled by the split)."""
    parts = {f"part-{i}.csv.gz": frame.gather_every(files, offset=i) for i in range(files)}
    write_data_export(
        root,
        execution_id,
        parts,
        period=period,
        file_format="csv",
        export_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def run_day(config: BillingConfig, day: dt.date, store: Store | None = None) -> None:
    """What `billing_daily` does for a day, through the same skip-aware builders the assets call."""
    store = store or config.store()
    with scratch_dir() as workdir:
        for source in config.sources:
            try:
                build_raw_slice_if_changed(source, day, store, config.lake_url, workdir)
            except DeliveryIncompleteError:  # held back: the asset logs it, the publish_guard check fails
                pass
        for source in config.sources:
            try:
                build_normalized_slice_if_stale(source, day, store, config.lake_url, workdir)
            except DeliveryIncompleteError:  # the raw slice is missing: the asset logs it, the slice is kept
                pass
        for source in config.sources:
            build_enriched_slice_if_stale(source, day, store, config.lake_url, config.tag_policy, workdir)
        invoices = read_invoices(store, config.invoices_url, workdir)
        digest = invoices_digest(store, config.invoices_url)
        for source in config.sources:
            publish_reconciliation_if_stale(source, day, store, config, invoices, digest, workdir)
