"""Gather what the dashboards show for one month from the lake: the month's allocated totals (through
`views/month.py`, in the reporting currency when configured), the 12-month trend, the chargeback statements
and the budget forecast the monthly views published, the month's cost anomalies, 30 days of SLO events,
the spine's state documents (deliveries, schema versions, hold-backs, per-layer results), the quarantine
records, the alert state and sample rows of each layer for the debug page's day.

Everything is read here, once; the page modules only turn this data into HTML.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from billing_pipeline.observability.alerts.outbox import load_state
from billing_pipeline.observability.anomalies import ANOMALY_SCHEMA, read_published
from billing_pipeline.observability.error_budgets import read_budgets
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import RAW, SPINE
from billing_pipeline.platform.state import STATE_DIR, period_states, read_document
from billing_pipeline.platform.storage import Store, join, scratch_dir
from billing_pipeline.views.chargeback import chargeback_url
from billing_pipeline.views.forecast import forecast_url
from billing_pipeline.views.month import daily_totals, enriched_files, month_bounds, month_label

log = logging.getLogger(__name__)

TREND_MONTHS = 12
SLI_DAYS = 30
SAMPLE_ROWS = 3


@dataclass(frozen=True)
class DashboardData:
    """One month's data for the three pages, already read."""

    month: dt.date
    reporting_currency: str | None
    owner: str  # the tag policy's owner dimension (team)
    sources: list[str]
    totals: pl.DataFrame  # views/month.daily_totals of the month
    trend: pl.DataFrame  # month (YYYY-MM), provider, currency, billed
    chargeback: pl.DataFrame | None  # the monthly_chargeback table, None before it is built
    forecast: pl.DataFrame | None  # the budget_forecast table, None before it is built
    anomalies: pl.DataFrame  # the month's cost_anomalies rows
    slo: pl.DataFrame  # slo_error_budgets rows of the SLI window
    sli_window: tuple[dt.date, dt.date]
    day_states: list[dict[str, Any]]  # (day, source) state documents of the month
    deliveries: list[dict[str, Any]]  # delivery records of the month's billing period, with `source`
    schemas: list[dict[str, Any]]  # schema records of those deliveries
    quarantine: pl.DataFrame  # quarantine records of the month
    alert_state: dict[str, Any]
    debug_day: dt.date | None
    samples: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)  # layer -> source -> rows
    raw_withheld: bool = False  # `privacy:` is on: raw rows hold people's identifiers in clear, never shown


def last_day_with_data(store: Store, lake_url: str, month: dt.date) -> dt.date | None:
    """The month's last usage day with an allocated slice (the debug page's default day)."""
    days = [day for day, _ in enriched_files(store, lake_url, month)]
    return max(days) if days else None


def _months_back(month: dt.date, count: int) -> list[dt.date]:
    out, current = [], month.replace(day=1)
    for _ in range(count):
        out.append(current)
        current = (current - dt.timedelta(days=1)).replace(day=1)
    return sorted(out)


def amount_columns(reporting: str | None) -> tuple[str, str]:
    """(amount column, currency column) of `daily_totals` the executive figures use: billed cost in the
    reporting currency when configured, else in each billing currency."""
    return ("billed_cost_reporting", "reporting") if reporting else ("billed_cost", "BillingCurrency")


def _by_provider(totals: pl.DataFrame, month: dt.date, reporting: str | None) -> pl.DataFrame:
    amount, currency = amount_columns(reporting)
    currency_expr = pl.lit(reporting) if reporting else pl.col(currency)
    return (
        totals.group_by(
            pl.col("ProviderName").fill_null("(unknown)").alias("provider"), currency_expr.alias("currency")
        )
        .agg(pl.col(amount).sum().alias("billed"))
        .with_columns(pl.lit(month_label(month)).alias("month"))
        .select("month", "provider", "currency", "billed")
    )


def _read_table(store: Store, url: str) -> pl.DataFrame | None:
    return pl.read_parquet(store.read_bytes(url)) if store.exists(url) else None


def _documents(store: Store, folder: str, **extra: str) -> list[dict[str, Any]]:
    """Every JSON document under `folder` (unreadable ones skipped, logged by `read_document`)."""
    out = []
    for info in sorted(store.find(folder), key=lambda f: f.url):
        if info.url.endswith(".json") and (document := read_document(store, info.url)) is not None:
            out.append({**document, **extra})
    return out


def _quarantine_records(store: Store, lake_url: str, month: dt.date, sources: list[str]) -> pl.DataFrame:
    first, last = month_bounds(month)
    frames = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        for source in sources:
            url = quarantine_url(lake_url, "records", day, source)
            if store.exists(url):
                frames.append(pl.read_parquet(store.read_bytes(url)))
    if not frames:
        return pl.DataFrame(
            schema={
                "source": pl.String,
                "usage_date": pl.Date,
                "kind": pl.String,
                "reason": pl.String,
                "rows": pl.Int64,
            }
        )
    return pl.concat(frames, how="diagonal_relaxed")


def _slo_rows(store: Store, lake_url: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    frames = []
    for offset in range((last - first).days + 1):
        table = read_budgets(store, lake_url, first + dt.timedelta(days=offset))
        if table is not None:
            frames.append(
                table.select("date", "sli", "source", "value", "target", "good", "attainment", "budget_left", "alert")
            )
    if not frames:
        return pl.DataFrame(
            schema={
                "date": pl.Date,
                "sli": pl.String,
                "source": pl.String,
                "value": pl.Float64,
                "target": pl.Float64,
                "good": pl.Boolean,
                "attainment": pl.Float64,
                "budget_left": pl.Float64,
                "alert": pl.String,
            }
        )
    return pl.concat(frames, how="vertical_relaxed")


def _samples(
    store: Store, lake_url: str, day: dt.date, sources: list[str], rows: int, layers: tuple[str, ...]
) -> dict[str, dict[str, pl.DataFrame]]:
    out: dict[str, dict[str, pl.DataFrame]] = {}
    with scratch_dir("billing-dashboard-") as workdir:
        for layer in layers:
            for source in sources:
                url = slice_url(lake_url, layer, day, source)
                if store.exists(url):
                    out.setdefault(layer, {})[source] = pl.read_parquet(store.stage(url, workdir), n_rows=rows)
    return out


def gather(
    config: BillingConfig,
    store: Store,
    month: dt.date,
    debug_day: dt.date | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> DashboardData:
    """Read everything the three pages of `month` show. `debug_day` defaults to the month's last day with
    data; a day outside the month is an error."""
    month = month.replace(day=1)
    first, last = month_bounds(month)
    if debug_day is not None and not first <= debug_day <= last:
        raise ValueError(f"dashboards of {month_label(month)}: debug day {debug_day} is not in the month")
    lake = config.lake_url
    reporting = config.reporting.currency if config.reporting else None
    sources = [s.name for s in config.sources]
    with scratch_dir("billing-dashboard-") as workdir:
        totals = daily_totals(config, store, month, workdir)
        trend_parts = [_by_provider(totals, month, reporting)]
        for earlier in _months_back(month, TREND_MONTHS)[:-1]:
            if enriched_files(store, lake, earlier):
                trend_parts.append(_by_provider(daily_totals(config, store, earlier, workdir), earlier, reporting))
    trend = pl.concat(trend_parts, how="vertical_relaxed").sort("month", "provider", "currency")
    data_last = last_day_with_data(store, lake, month)
    sli_last = data_last or last
    sli_first = sli_last - dt.timedelta(days=SLI_DAYS - 1)
    anomaly_frames = [
        table
        for offset in range((last - first).days + 1)
        if not (table := read_published(store, lake, first + dt.timedelta(days=offset))).is_empty()
    ]
    period = month_label(month)
    deliveries = [
        record
        for source in sources
        for record in _documents(
            store, join(lake, STATE_DIR, "deliveries", f"source={source}", f"period={period}"), source=source
        )
    ]
    versions = {(d["source"], d.get("version")) for d in deliveries}
    schemas = [
        record
        for source in sources
        for record in _documents(store, join(lake, STATE_DIR, "schemas", f"source={source}"), source=source)
        if (source, record.get("version")) in versions
    ]
    day_states = [state for source in sources for state in period_states(store, lake, source, period) if state]
    chosen = debug_day or data_last
    # the pages live in the curated lake: with `privacy:` on, raw rows (clear identifiers) stay in the raw lake
    raw_withheld = config.privacy is not None
    sample_layers = tuple(layer for layer in SPINE if not (raw_withheld and layer == RAW))
    return DashboardData(
        month=month,
        reporting_currency=reporting,
        owner=config.tag_policy.owner_dimension,
        sources=sources,
        totals=totals,
        trend=trend,
        chargeback=_read_table(store, chargeback_url(lake, month)),
        forecast=_read_table(store, forecast_url(lake, month)),
        anomalies=pl.concat(anomaly_frames, how="diagonal_relaxed")
        if anomaly_frames
        else pl.DataFrame(schema=ANOMALY_SCHEMA),
        slo=_slo_rows(store, lake, sli_first, sli_last),
        sli_window=(sli_first, sli_last),
        day_states=sorted(day_states, key=lambda s: (str(s.get("date")), str(s.get("source")))),
        deliveries=sorted(deliveries, key=lambda d: (d["source"], str(d.get("first_seen_at")), str(d.get("version")))),
        schemas=sorted(schemas, key=lambda d: (d["source"], str(d.get("delivered_at")), str(d.get("version")))),
        quarantine=_quarantine_records(store, lake, month, sources),
        alert_state=json.loads(json.dumps(load_state(store, lake), default=str)),
        debug_day=chosen,
        samples=_samples(store, lake, chosen, sources, sample_rows, sample_layers) if chosen else {},
        raw_withheld=raw_withheld,
    )
