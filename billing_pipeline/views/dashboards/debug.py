"""The debug page: per source the deliveries seen (version, files, rows, when), the schema versions and
their changes, quarantine reasons with counts, duplicate rates, and sample rows of each layer for one day
(`debug_day`: the asset's config, by default the month's last day with data).

Sources: the spine's state documents under `<lake>/_state/` (delivery records, schema records, per-(day,
source) results of each layer), the quarantine records, and the day's published slices.
"""

from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go
import polars as pl

from billing_pipeline.platform.names import ENRICHED, NORMALIZED, RAW, RECONCILED
from billing_pipeline.views.dashboards.layout import esc, figure, kpi, kpis, page, section, table
from billing_pipeline.views.dashboards.reader import DashboardData
from billing_pipeline.views.month import month_label

# Where each layer's row count is in a (day, source) state document: section, then the key in it.
LAYER_ROWS = {
    RAW: ("raw", None),
    NORMALIZED: ("normalized", "result"),
    ENRICHED: ("enriched", "result"),
    RECONCILED: ("reconciliation", "result"),
}


def _files(record: dict, schema: dict | None) -> int:
    if schema and schema.get("files"):
        return len(schema["files"])
    fingerprint = str(record.get("delivery_fingerprint") or "")
    return fingerprint.count("|") + 1 if fingerprint else 0


def deliveries(data: DashboardData) -> list[dict[str, object]]:
    """One row per delivery of the month's billing period each source's state recorded."""
    schemas = {(s["source"], s.get("version")): s for s in data.schemas}
    rows = []
    for record in data.deliveries:
        schema = schemas.get((record["source"], record.get("version")))
        rows.append(
            {
                "source": record["source"],
                "version": record.get("version"),
                "files": _files(record, schema),
                "rows": sum(int(v) for v in (record.get("rows") or {}).values()),
                "days": len(record.get("rows") or {}),
                "delivered at": (schema or {}).get("delivered_at", "-"),
                "first seen": record.get("first_seen_at") or "-",
                "error": record.get("error") or "",
            }
        )
    return rows


def schema_changes(data: DashboardData) -> list[dict[str, object]]:
    return [
        {
            "source": s["source"],
            "version": s.get("version"),
            "delivered at": s.get("delivered_at"),
            "previous version": s.get("previous_version") or "(first seen)",
            "columns": len(s.get("columns") or {}),
            "added": ", ".join(s.get("additive") or []) or "-",
            "removed": ", ".join(s.get("removed") or []) or "-",
            "breaking": "; ".join(str(b) for b in s.get("breaking") or []) or "-",
        }
        for s in data.schemas
    ]


def quarantine_reasons(data: DashboardData) -> list[dict[str, object]]:
    """Row reasons the normalized builds recorded (rows per reason), then file and delivery records."""
    rows: Counter[tuple[str, str, str]] = Counter()
    for state in data.day_states:
        result = (state.get("normalized") or {}).get("result") or {}
        for reason, count in sorted((result.get("reasons") or {}).items()):
            rows[(str(state.get("source")), "row", str(reason))] += int(count)
    records: Counter[tuple[str, str, str]] = Counter()
    for r in data.quarantine.iter_rows(named=True):
        records[(str(r.get("source")), str(r.get("kind")), str(r.get("reason")))] += 1
    out = [
        {"source": s, "kind": k, "reason": reason, "count": n, "counted in": "rows"}
        for (s, k, reason), n in sorted(rows.items())
    ]
    out += [
        {"source": s, "kind": k, "reason": reason, "count": n, "counted in": "records"}
        for (s, k, reason), n in sorted(records.items())
    ]
    return out


def duplicate_rates(data: DashboardData) -> pl.DataFrame:
    """Per (day, source): duplicate rows dropped / rows delivered, from the normalized build's result."""
    rows = []
    for state in data.day_states:
        result = (state.get("normalized") or {}).get("result") or {}
        delivered = int(result.get("raw_rows") or 0)
        if delivered:
            duplicates = int(result.get("duplicate_rows") or 0)
            rows.append(
                {
                    "date": str(state.get("date")),
                    "source": str(state.get("source")),
                    "duplicates": duplicates,
                    "rate": duplicates / delivered,
                }
            )
    return pl.DataFrame(
        rows, schema={"date": pl.String, "source": pl.String, "duplicates": pl.Int64, "rate": pl.Float64}
    )


def layer_rows(data: DashboardData) -> list[dict[str, object]]:
    """Rows of each layer for the debug day, per source, as the builds recorded them."""
    day = data.debug_day.isoformat() if data.debug_day else None
    out = []
    for state in data.day_states:
        if str(state.get("date")) != day:
            continue
        for layer, (name, nested) in LAYER_ROWS.items():
            part = state.get(name) or {}
            part = part.get(nested) or {} if nested else part
            if "rows" in part:
                out.append({"layer": layer, "source": str(state.get("source")), "rows": int(part["rows"])})
    return out


def _deliveries_figure(rows: list[dict[str, object]]) -> str:
    fig = go.Figure()
    for source in sorted({str(r["source"]) for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        fig.add_scatter(
            x=[str(r["delivered at"] if r["delivered at"] != "-" else r["first seen"]) for r in mine],
            y=[r["rows"] for r in mine],
            mode="markers",
            marker={"size": 11},
            name=source,
            text=[f"version {r['version']}, {r['files']} file(s)" for r in mine],
        )
    fig.update_layout(
        title="Deliveries seen: rows of the period per delivery, by the provider's delivery time", yaxis_title="rows"
    )
    return figure(fig, "debug-deliveries-chart")


def _duplicates_figure(rates: pl.DataFrame) -> str:
    fig = go.Figure()
    for (source,), part in rates.sort("source", "date").group_by("source", maintain_order=True):
        fig.add_scatter(x=part["date"].to_list(), y=(part["rate"] * 100).to_list(), mode="lines+markers", name=source)
    fig.update_layout(
        title="Duplicate rate per day and source (% of delivered rows dropped as duplicates)", yaxis_title="%"
    )
    return figure(fig, "debug-duplicates-chart")


def _reasons_figure(reasons: list[dict[str, object]]) -> str:
    fig = go.Figure()
    fig.add_bar(
        x=[int(r["count"]) for r in reasons],  # type: ignore[call-overload]
        y=[f"{r['source']}: {str(r['reason'])[:60]}" for r in reasons],
        orientation="h",
        name="count",
    )
    fig.update_layout(title="Quarantine reasons", yaxis={"automargin": True})
    return figure(fig, "debug-quarantine-chart", height=max(300, 60 + 40 * len(reasons)))


def _layers_figure(rows: list[dict[str, object]], day: str) -> str:
    fig = go.Figure()
    for source in sorted({str(r["source"]) for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        fig.add_bar(x=[r["layer"] for r in mine], y=[r["rows"] for r in mine], name=source)
    fig.update_layout(title=f"Rows per layer and source, {day}", barmode="group")
    return figure(fig, "debug-layers-chart")


def _samples(data: DashboardData) -> list[str]:
    parts = []
    for layer in LAYER_ROWS:
        by_source = data.samples.get(layer) or {}
        if layer == RAW and data.raw_withheld:
            parts.append(
                f'<p class="note" id="debug-samples-{esc(layer)}-withheld">{esc(layer)}: rows not shown, '
                "privacy is configured and the raw layer keeps people's identifiers in clear "
                "(read it in the raw lake)</p>"
            )
            continue
        blocks = []
        for source, frame in sorted(by_source.items()):
            blocks.append(f"<h3>{esc(layer)}: {esc(source)} ({frame.height} row(s))</h3>")
            blocks.append(
                table(
                    [
                        {k: (None if v is None else str(v)) for k, v in row.items()}
                        for row in frame.iter_rows(named=True)
                    ],
                    f"debug-sample-{layer}-{source}",
                    empty="no row",
                )
            )
        if not blocks:
            parts.append(f'<p class="note">{esc(layer)}: no slice on this day</p>')
            continue
        summary = f"{layer}: sample rows of {len(by_source)} source(s)"
        parts.append(
            f'<details id="debug-samples-{esc(layer)}"><summary>{esc(summary)}</summary>{"".join(blocks)}</details>'
        )
    return parts


def render(data: DashboardData) -> str:
    """The debug page of `data.month` as one self-contained HTML document."""
    day = data.debug_day.isoformat() if data.debug_day else "-"
    delivered = deliveries(data)
    schemas = schema_changes(data)
    reasons = quarantine_reasons(data)
    rates = duplicate_rates(data)
    layers = layer_rows(data)
    worst = rates.sort("rate", descending=True).head(1)
    body = [
        kpis(
            [
                kpi("debug-day", "Chosen day (sample rows)", day, {"day": day}),
                kpi("debug-deliveries", "Deliveries seen this period", str(len(delivered)), {"count": len(delivered)}),
                kpi("debug-schema-versions", "Schema versions", str(len(schemas)), {"count": len(schemas)}),
                kpi(
                    "debug-worst-duplicate-rate",
                    "Worst duplicate rate",
                    f"{worst['rate'][0] * 100:.2f} % ({worst['source'][0]}, {worst['date'][0]})"
                    if not worst.is_empty()
                    else "-",
                    {"rate": worst["rate"][0] if not worst.is_empty() else ""},
                ),
            ]
        ),
        section(
            "Deliveries per source",
            _deliveries_figure(delivered) if delivered else "",
            table(delivered, "debug-deliveries-table", empty="no delivery recorded for this billing period"),
            section_id="debug-deliveries-section",
        ),
        section(
            "Schema versions and changes",
            table(schemas, "debug-schemas-table", empty="no schema recorded"),
            section_id="debug-schemas",
        ),
        section(
            "Quarantine reasons",
            _reasons_figure(reasons) if reasons else "",
            table(reasons, "debug-quarantine-table", empty="nothing quarantined this month"),
            section_id="debug-quarantine",
        ),
        section(
            "Duplicate rates",
            _duplicates_figure(rates) if not rates.is_empty() else '<p class="note">no normalized build recorded</p>',
            table(
                [r for r in rates.sort("date", "source").to_dicts() if r["duplicates"]],
                "debug-duplicates-table",
                empty="no duplicate row dropped this month",
            ),
            section_id="debug-duplicates",
        ),
        section(
            f"Each layer on {day}",
            _layers_figure(layers, day) if layers else "",
            *_samples(data),
            section_id="debug-layers",
        ),
    ]
    return page(
        f"Billing pipeline debug, {month_label(data.month)}",
        f"Deliveries, schemas, quarantine and duplicates of the month; sample rows of {day}.",
        body,
        {"month": month_label(data.month), "day": day, "sources": ", ".join(data.sources), "page": "debug"},
    )
