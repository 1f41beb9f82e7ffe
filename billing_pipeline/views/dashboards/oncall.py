"""The on-call page: the SLIs over the last 30 days against their targets, the delivery latency
histogram, the backlog, held-back and quarantined deliveries, and the open alerts.

Sources: `slo_error_budgets` (each (SLI, source) verdict per day: value, target, good, and the budget
state), the spine's (day, source) state documents (delivery and ingestion times, hold-backs), the
quarantine records, and the alert state (`<lake>/_state/alerts/state.json`).
"""

from __future__ import annotations

import datetime as dt
import math

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from billing_pipeline.views.dashboards.layout import figure, kpi, kpis, page, section, table
from billing_pipeline.views.dashboards.reader import DashboardData
from billing_pipeline.views.month import month_label

COLUMNS = 3


def _hours_between(start: object, end: object) -> float | None:
    try:
        a = dt.datetime.fromisoformat(str(start))
        b = dt.datetime.fromisoformat(str(end))
    except ValueError:
        return None
    return (b - a).total_seconds() / 3600


def delivery_latencies(data: DashboardData) -> pl.DataFrame:
    """Per (day, source) the day was built from a delivery: hours from the provider's delivery time to the
    pipeline's first ingestion of it."""
    rows = []
    for state in data.day_states:
        raw = state.get("raw") or {}
        if raw.get("delivered_at") and raw.get("ingested_at"):
            hours = _hours_between(raw["delivered_at"], raw["ingested_at"])
            if hours is not None:
                rows.append({"date": str(state.get("date")), "source": str(state.get("source")), "hours": hours})
    return pl.DataFrame(rows, schema={"date": pl.String, "source": pl.String, "hours": pl.Float64})


def sli_summary(data: DashboardData) -> pl.DataFrame:
    """Per SLI over the window: target, evaluations, bad ones, and the last day's worst alert and budget."""
    if data.slo.is_empty():
        return pl.DataFrame()
    last = data.slo.filter(pl.col("date") == pl.col("date").max())
    alert_rank = pl.col("alert").replace_strict({"none": 0, "ticket": 1, "page": 2}, default=0)
    latest = last.group_by("sli").agg(
        pl.col("alert").sort_by(alert_rank).last().alias("alert"),
        pl.col("budget_left").min().alias("budget_left"),
    )
    return (
        data.slo.filter(pl.col("good").is_not_null())
        .group_by("sli")
        .agg(
            pl.col("target").last().alias("target"),
            pl.len().alias("evaluations"),
            (~pl.col("good")).sum().alias("bad"),
        )
        .join(latest, on="sli", how="left")
        .sort("sli")
    )


def _sli_figure(data: DashboardData) -> str:
    slo = data.slo.filter(pl.col("value").is_not_null()).sort("sli", "source", "date")
    names = sorted(slo["sli"].unique().to_list())
    rows = math.ceil(len(names) / COLUMNS)
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=names, vertical_spacing=0.08)
    sources = sorted(slo["source"].unique().to_list())
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    for index, name in enumerate(names):
        row, col = index // COLUMNS + 1, index % COLUMNS + 1
        part = slo.filter(pl.col("sli") == name)
        for source_index, source in enumerate(sources):
            mine = part.filter(pl.col("source") == source)
            if mine.is_empty():
                continue
            fig.add_scatter(
                x=[d.isoformat() for d in mine["date"]],
                y=mine["value"].to_list(),
                mode="lines+markers",
                name=source,
                legendgroup=source,
                showlegend=index == 0,
                line={"color": palette[source_index % len(palette)]},
                marker={"size": 4},
                row=row,
                col=col,
            )
        targets = part.group_by("date").agg(pl.col("target").max()).sort("date")
        fig.add_scatter(
            x=[d.isoformat() for d in targets["date"]],
            y=targets["target"].to_list(),
            mode="lines",
            name="target",
            legendgroup="target",
            showlegend=index == 0,
            line={"color": "#b42318", "dash": "dash"},
            row=row,
            col=col,
        )
    first, last = data.sli_window
    fig.update_layout(title=f"SLIs per source, {first} to {last}, against their targets (dashed)")
    return figure(fig, "oncall-sli-chart", height=260 * rows + 120)


def _latency_figure(latencies: pl.DataFrame) -> str:
    fig = go.Figure()
    for (source,), part in latencies.sort("source").group_by("source", maintain_order=True):
        fig.add_histogram(x=part["hours"].to_list(), name=source, nbinsx=24)
    fig.update_layout(
        barmode="stack",
        title="Delivery latency: provider delivery to first ingestion, per (day, source)",
        xaxis_title="hours",
        yaxis_title="(day, source) slices",
    )
    return figure(fig, "oncall-latency-chart")


def _backlog_figure(data: DashboardData) -> str | None:
    backlog = data.slo.filter(pl.col("sli") == "backfill_backlog").sort("date", "source")
    if backlog.is_empty():
        return None
    fig = go.Figure()
    for (source,), part in backlog.group_by("source", maintain_order=True):
        fig.add_bar(x=[d.isoformat() for d in part["date"]], y=part["value"].to_list(), name=source)
    fig.update_layout(title="Backfill backlog (M6): hours of data pending, per day and source", barmode="group")
    return figure(fig, "oncall-backlog-chart")


def held_back(data: DashboardData) -> list[dict[str, object]]:
    """Hold-backs recorded in the state (still held), then the month's quarantine records."""
    rows: list[dict[str, object]] = []
    for state in data.day_states:
        if hold := state.get("held_back"):
            rows.append(
                {
                    "day": state.get("date"),
                    "source": state.get("source"),
                    "what": f"held back ({hold.get('kind', '?')})",
                    "version": hold.get("version"),
                    "since": hold.get("at"),
                    "reason": hold.get("reason"),
                }
            )
    for r in data.quarantine.sort("usage_date", "source").iter_rows(named=True):
        rows.append(
            {
                "day": r["usage_date"].isoformat() if r.get("usage_date") else "-",
                "source": r.get("source"),
                "what": f"quarantined ({r.get('kind')}, {r.get('rows') or 0} rows)",
                "version": r.get("export_version"),
                "since": r.get("detected_at"),
                "reason": r.get("reason"),
            }
        )
    return rows


def open_alerts(data: DashboardData) -> list[dict[str, object]]:
    """Open incidents of the alert state, then the SLOs burning on the window's last day (page or ticket)."""
    rows: list[dict[str, object]] = []
    for incident_id, incident in sorted(data.alert_state.get("incidents", {}).items()):
        for key, entry in sorted((incident.get("open") or {}).items()):
            rows.append(
                {
                    "from": "alert state",
                    "route": incident.get("route"),
                    "incident": incident_id,
                    "what": entry.get("title") or key,
                    "partition": entry.get("partition"),
                    "since": entry.get("since"),
                }
            )
    if not data.slo.is_empty():
        last = data.slo.filter((pl.col("date") == pl.col("date").max()) & (pl.col("alert") != "none"))
        for r in last.sort("alert", "sli", "source", descending=[True, False, False]).iter_rows(named=True):
            rows.append(
                {
                    "from": "error budget",
                    "route": r["alert"],
                    "incident": f"slo_budget_{r['sli']}",
                    "what": f"source '{r['source']}': {r['sli']} burning, {r['budget_left']:.0%} of the budget left",
                    "partition": r["date"].isoformat(),
                    "since": "-",
                }
            )
    return rows


def render(data: DashboardData) -> str:
    """The on-call page of `data.month` as one self-contained HTML document."""
    first, last = data.sli_window
    summary = sli_summary(data)
    latencies = delivery_latencies(data)
    holds = held_back(data)
    alerts = open_alerts(data)
    bad = int(summary["bad"].sum()) if not summary.is_empty() else 0
    figures = kpis(
        [
            kpi("oncall-bad-evaluations", f"Bad SLI evaluations, {first} to {last}", str(bad), {"count": bad}),
            kpi("oncall-held-back", "Held-back or quarantined deliveries", str(len(holds)), {"count": len(holds)}),
            kpi("oncall-open-alerts", "Open alerts", str(len(alerts)), {"count": len(alerts)}),
            kpi(
                "oncall-latency-p50",
                "Median delivery latency (hours)",
                f"{latencies['hours'].median():.1f}" if not latencies.is_empty() else "-",
                {"hours": latencies["hours"].median() if not latencies.is_empty() else ""},
            ),
        ]
    )
    sli_rows = [
        {
            "SLI": r["sli"],
            "target": "none" if r["target"] is None or math.isinf(r["target"]) else r["target"],
            "evaluations": r["evaluations"],
            "bad": r["bad"],
            "alert (last day)": r["alert"],
            "budget left (last day)": "no budget"
            if math.isinf(r["budget_left"] or 0)
            else f"{(r['budget_left'] or 0):.0%}",
        }
        for r in summary.iter_rows(named=True)
    ]
    backlog = _backlog_figure(data)
    body = [
        figures,
        section(
            "SLIs, last 30 days",
            *([_sli_figure(data)] if not data.slo.filter(pl.col("value").is_not_null()).is_empty() else []),
            table(sli_rows, "oncall-sli-table", empty="no slo_error_budgets table in the window"),
            section_id="oncall-slis",
        ),
        section(
            "Delivery latency",
            _latency_figure(latencies) if not latencies.is_empty() else '<p class="note">no delivery recorded</p>',
            section_id="oncall-latency",
        ),
        section(
            "Backlog", backlog or '<p class="note">no backlog evaluated in the window</p>', section_id="oncall-backlog"
        ),
        section(
            "Held-back and quarantined deliveries",
            table(holds, "oncall-held-table", empty="nothing held back or quarantined this month"),
            section_id="oncall-held",
        ),
        section("Open alerts", table(alerts, "oncall-alerts-table", empty="no open alert"), section_id="oncall-alerts"),
    ]
    return page(
        f"Billing pipeline on call, {month_label(data.month)}",
        f"SLIs from slo_error_budgets over {first} to {last}; deliveries from the spine's state.",
        body,
        {"month": month_label(data.month), "sources": ", ".join(data.sources), "page": "oncall"},
    )
