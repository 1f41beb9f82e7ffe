"""The executive page: the month's total and the 12-month trend per provider (reporting currency when
configured, else per billing currency), the top 10 teams of the chargeback, the unallocated share, the
forecast against the budget, and the month's cost anomalies with the rows that drove them.

Key figures are also plain text with stable ids and `data-*` attributes holding the exact amount:
`exec-total-<ccy>`, `exec-unallocated-<ccy>`, `exec-forecast-<ccy>`, and the tables `exec-providers`,
`exec-top-teams` (rows with `data-key`, `data-amount`, `data-currency`).
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from billing_pipeline.views.dashboards.layout import (
    esc,
    figure,
    kpi,
    kpis,
    money_text,
    page,
    percent_text,
    section,
    table,
)
from billing_pipeline.views.dashboards.reader import TREND_MONTHS, DashboardData, amount_columns
from billing_pipeline.views.month import month_label

TOP_TEAMS = 10
UNSPLIT_LABEL = "(unsplit)"
UNALLOCATED_LABEL = "(unallocated)"


def _per_currency(data: DashboardData) -> pl.DataFrame:
    """The month's totals with one `amount` and `currency` column (reporting currency, else billing)."""
    amount, currency = amount_columns(data.reporting_currency)
    currency_expr = pl.lit(data.reporting_currency) if data.reporting_currency else pl.col(currency)
    return data.totals.with_columns(pl.col(amount).alias("amount"), currency_expr.alias("currency"))


def month_totals(data: DashboardData) -> pl.DataFrame:
    """currency, total, unallocated (billed cost without an owner), unallocated_percent."""
    rows = _per_currency(data)
    out = rows.group_by("currency").agg(
        pl.col("amount").sum().alias("total"),
        pl.col("amount").filter(pl.col(data.owner).is_null()).sum().alias("unallocated"),
    )
    return out.with_columns(
        pl.when(pl.col("total") != 0)
        .then(pl.col("unallocated").cast(pl.Float64) * 100 / pl.col("total").cast(pl.Float64))
        .otherwise(None)
        .alias("unallocated_percent")
    ).sort("currency")


def provider_totals(data: DashboardData) -> pl.DataFrame:
    rows = _per_currency(data)
    return (
        rows.group_by(pl.col("ProviderName").fill_null("(unknown)").alias("provider"), "currency")
        .agg(pl.col("amount").sum().alias("total"))
        .sort("currency", "total", "provider", descending=[False, True, False])
    )


def top_teams(data: DashboardData, limit: int = TOP_TEAMS) -> pl.DataFrame:
    """team, currency, total (what the chargeback charges each team, shares included), the largest first,
    `limit` per currency."""
    if data.chargeback is None or data.chargeback.is_empty():
        return pl.DataFrame(schema={"team": pl.String, "currency": pl.String, "total": pl.Float64})
    amount, currency = (
        ("billed_cost_reporting", "reporting_currency")
        if data.reporting_currency
        else ("billed_cost", "billing_currency")
    )
    return (
        data.chargeback.group_by(
            pl.col(data.owner).fill_null(UNSPLIT_LABEL).alias("team"), pl.col(currency).alias("currency")
        )
        .agg(pl.col(amount).sum().alias("total"))
        .sort("currency", "total", "team", descending=[False, True, False])
        .group_by("currency", maintain_order=True)
        .head(limit)
    )


def _float(value: object) -> float:
    return float(value) if value is not None else 0.0


def _trend_figure(data: DashboardData) -> str:
    fig = go.Figure()
    for (provider, currency), part in data.trend.sort("month").group_by("provider", "currency", maintain_order=True):
        name = provider if data.reporting_currency else f"{provider} ({currency})"
        fig.add_bar(x=part["month"].to_list(), y=[_float(v) for v in part["billed"]], name=name)
    unit = data.reporting_currency or "billing currency"
    fig.update_layout(
        barmode="stack",
        title=f"Billed cost per provider, last {TREND_MONTHS} months ({unit})",
        xaxis={"type": "category"},
    )
    return figure(fig, "exec-trend-chart")


def _daily_figure(data: DashboardData) -> str:
    rows = _per_currency(data)
    daily = rows.group_by("date", "currency").agg(pl.col("amount").sum()).sort("date", "currency")
    fig = go.Figure()
    for (currency,), part in daily.group_by("currency", maintain_order=True):
        fig.add_scatter(
            x=[d.isoformat() for d in part["date"]],
            y=[_float(v) for v in part["amount"]],
            mode="lines+markers",
            name=f"billed ({currency})",
        )
    if not data.anomalies.is_empty():
        fig.add_scatter(
            x=[d.isoformat() for d in data.anomalies["usage_date"]],
            y=data.anomalies["spend"].to_list(),
            mode="markers",
            marker={"symbol": "x", "size": 12, "color": "#b42318"},
            name="anomaly (spend of the flagged key)",
            text=data.anomalies["message"].to_list(),
        )
    fig.update_layout(title=f"Daily billed cost, {month_label(data.month)}")
    return figure(fig, "exec-daily-chart")


def _teams_figure(teams: pl.DataFrame) -> str:
    fig = go.Figure()
    for (currency,), part in teams.group_by("currency", maintain_order=True):
        fig.add_bar(
            x=[_float(v) for v in part["total"]][::-1],
            y=part["team"].to_list()[::-1],
            orientation="h",
            name=currency,
        )
    fig.update_layout(title="Top teams (chargeback, shared costs included)")
    return figure(fig, "exec-teams-chart")


def _forecast_section(data: DashboardData) -> str:
    table_ = data.forecast
    if table_ is None or table_.is_empty():
        return section(
            "Forecast against budget",
            '<p class="note" id="exec-forecast-none">no budget_forecast table for this month yet</p>',
            section_id="exec-forecast",
        )
    ordered = table_.sort(
        pl.col("scope") != "total", "currency", pl.col("forecast").cast(pl.Float64), descending=[False, False, True]
    )
    totals = ordered.filter(pl.col("scope") == "total")
    figures = [
        kpi(
            f"exec-forecast-{row['currency'].lower()}",
            f"Month-end forecast ({row['currency']}), budget {money_text(row['budget'])}",
            f"{money_text(row['forecast'], row['currency'])} ({row['status']})",
            {"amount": row["forecast"], "budget": row["budget"], "status": row["status"]},
        )
        for row in totals.iter_rows(named=True)
    ]
    fig = go.Figure()
    labels = [f"{r['team'] or 'total'} ({r['currency']})" for r in ordered.iter_rows(named=True)]
    forecasts = [_float(v) for v in ordered["forecast"]]
    fig.add_bar(
        x=labels,
        y=forecasts,
        name="forecast",
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [_float(h) - f for h, f in zip(ordered["forecast_high"], forecasts, strict=True)],
            "arrayminus": [f - _float(lo) for lo, f in zip(ordered["forecast_low"], forecasts, strict=True)],
        },
    )
    fig.add_bar(x=labels, y=[_float(v) for v in ordered["month_to_date"]], name="month to date")
    with_budget = ordered.filter(pl.col("budget").is_not_null())
    if not with_budget.is_empty():
        fig.add_scatter(
            x=[f"{r['team'] or 'total'} ({r['currency']})" for r in with_budget.iter_rows(named=True)],
            y=[_float(v) for v in with_budget["budget"]],
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 30, "line": {"width": 3}, "color": "#b42318"},
            name="budget",
        )
    fig.update_layout(title="Month-end forecast (10th-90th percentile interval) against budget", barmode="group")
    rows = [
        {
            "scope": r["scope"],
            "team": r["team"] or "total",
            "month to date": money_text(r["month_to_date"], r["currency"]),
            "forecast": money_text(r["forecast"], r["currency"]),
            "interval": f"{money_text(r['forecast_low'])} to {money_text(r['forecast_high'])}",
            "budget": money_text(r["budget"], r["currency"]) if r["budget"] is not None else "-",
            "budget %": percent_text(r["budget_percent"], 1) if r["budget_percent"] is not None else "-",
            "status": r["status"],
        }
        for r in ordered.iter_rows(named=True)
    ]
    return section(
        "Forecast against budget",
        kpis(figures),
        figure(fig, "exec-forecast-chart"),
        table(rows, "exec-forecast-table"),
        section_id="exec-forecast",
    )


def _anomalies_section(data: DashboardData) -> str:
    frame = data.anomalies.sort("usage_date", "kind", "dimension", "key")
    rows = [
        {
            "day": r["usage_date"].isoformat() if r["usage_date"] else "-",
            "kind": r["kind"],
            "dimension": r["dimension"],
            "key": r["key"],
            "spend": f"{_float(r['spend']):,.2f}",
            "baseline": f"{_float(r['baseline']):,.2f}",
            "change": f"{_float(r['delta']):+,.2f}",
            "what happened": r["message"],
            "drivers (largest rows)": r["top_rows"],
        }
        for r in frame.iter_rows(named=True)
    ]
    return section(
        f"Anomalies of the month ({len(rows)})",
        '<p class="note">Amounts of the flagged key in its billing currency; the drivers are the rows that weigh '
        "most (the query in the cost_anomalies table lists them all).</p>",
        table(rows, "exec-anomalies", empty="no anomaly flagged this month"),
        section_id="exec-anomalies-section",
    )


def render(data: DashboardData) -> str:
    """The executive page of `data.month` as one self-contained HTML document."""
    label = month_label(data.month)
    unit = data.reporting_currency or "billing currency"
    totals = month_totals(data)
    headline = []
    for r in totals.iter_rows(named=True):
        code = r["currency"].lower()
        headline.append(
            kpi(
                f"exec-total-{code}",
                f"Billed cost, {label} ({r['currency']})",
                money_text(r["total"], r["currency"]),
                {"amount": r["total"], "currency": r["currency"]},
            )
        )
        headline.append(
            kpi(
                f"exec-unallocated-{code}",
                f"Unallocated ({r['currency']})",
                percent_text(r["unallocated_percent"]),
                {"percent": r["unallocated_percent"], "amount": r["unallocated"]},
            )
        )
    providers = provider_totals(data)
    teams = top_teams(data)
    body = [
        section(
            f"Month total ({unit})",
            kpis(headline) if headline else '<p class="note">no allocated cost in this month</p>',
            table(
                [
                    {"provider": r["provider"], "billed": money_text(r["total"], r["currency"])}
                    for r in providers.iter_rows(named=True)
                ],
                "exec-providers",
                row_data=[
                    {"key": r["provider"], "amount": r["total"], "currency": r["currency"]}
                    for r in providers.iter_rows(named=True)
                ],
                empty="no provider billed this month",
            ),
            *([_trend_figure(data), _daily_figure(data)] if not data.totals.is_empty() else []),
            section_id="exec-month",
        ),
        section(
            f"Top {TOP_TEAMS} teams ({unit})",
            '<p class="note">What the chargeback charges each team: direct spend plus its share of taxes, support, '
            f"unused commitments and unallocated cost; {esc(UNSPLIT_LABEL)} is a pool no team could take.</p>",
            *([_teams_figure(teams)] if not teams.is_empty() else []),
            table(
                [
                    {"team": r["team"], "charged": money_text(r["total"], r["currency"])}
                    for r in teams.iter_rows(named=True)
                ],
                "exec-top-teams",
                row_data=[
                    {"key": r["team"], "amount": r["total"], "currency": r["currency"]}
                    for r in teams.iter_rows(named=True)
                ],
                empty="no monthly_chargeback table for this month yet",
            ),
            section_id="exec-teams",
        ),
        _forecast_section(data),
        _anomalies_section(data),
    ]
    currency_note = (
        f"reporting currency {data.reporting_currency}"
        if data.reporting_currency
        else "billing currency of each line (no reporting currency configured)"
    )
    return page(
        f"Cloud spend, {label}: executive summary",
        f"Billed cost in the {currency_note}; usage days {month_label(data.month)}-01 to the last day with data.",
        body,
        {"month": label, "sources": ", ".join(data.sources), "page": "executive"},
    )
