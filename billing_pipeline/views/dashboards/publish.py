"""Write the month's three pages to `<lake>/reports/YYYY-MM/` through the Store (atomic locally, one PUT
on s3:// and gs:// lakes), beside the chargeback CSV the `monthly_chargeback` asset writes there."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store, join
from billing_pipeline.views.chargeback import report_csv_url
from billing_pipeline.views.dashboards import debug, executive, oncall
from billing_pipeline.views.dashboards.reader import DashboardData, gather
from billing_pipeline.views.month import month_label
from billing_pipeline.views.names import REPORTS

PAGES = {"executive": executive.render, "oncall": oncall.render, "debug": debug.render}


def page_url(lake_url: str, month: dt.date, name: str) -> str:
    return join(lake_url, REPORTS, month_label(month), f"{name}.html")


@dataclass(frozen=True)
class PublishedDashboards:
    """Where the pages went (page name -> URL), the chargeback CSV beside them, and the data shown."""

    urls: dict[str, str]
    csv_url: str
    data: DashboardData


def render_pages(data: DashboardData) -> dict[str, str]:
    """Page name -> HTML."""
    return {name: render(data) for name, render in PAGES.items()}


def publish_dashboards(
    config: BillingConfig, store: Store, month: dt.date, debug_day: dt.date | None = None
) -> PublishedDashboards:
    """Gather the month from the lake, render the three pages and write them."""
    data = gather(config, store, month, debug_day)
    urls = {}
    for name, html in render_pages(data).items():
        url = page_url(config.lake_url, data.month, name)
        store.write_bytes(url, html.encode("utf-8"))
        urls[name] = url
    return PublishedDashboards(urls, report_csv_url(config.lake_url, data.month), data)
