"""What the three pages share: escaping, the page skeleton with plotly.js inline, figures, tables and key
figures with stable ids.

Every value put into HTML goes through `html.escape` (tag values, account ids, file names and reasons come
from whoever writes the exports). Pages are deterministic: figures get stable div ids, nothing depends on
the clock or on dict order, so two renders of the same data are the same bytes.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

CELL_LIMIT = 160  # characters of one table cell (a raw row's cells can be long); the title holds the rest
PLOT_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 16px 24px; color: #1f2933; background: #fff; }
h1 { font-size: 1.6em; margin: 0.2em 0; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #d9e2ec; }
h3 { font-size: 1.0em; margin-top: 1.2em; }
.subtitle { color: #52606d; margin-bottom: 1em; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.kpi { border: 1px solid #d9e2ec; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.kpi .label { color: #52606d; font-size: 0.8em; } .kpi .value { font-size: 1.35em; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { border: 1px solid #d9e2ec; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
details td { white-space: nowrap; }
.note { color: #52606d; font-size: 0.85em; }
.bad { color: #b42318; font-weight: 600; } .good { color: #027a48; }
footer { color: #829ab1; font-size: 0.8em; margin-top: 2em; }
"""


def esc(value: object) -> str:
    """Text for HTML (element content and quoted attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


def money_text(value: object, currency: str | None = None) -> str:
    """An amount for people: rounded half to even to 2 decimals, thousands separators, the currency code."""
    if value is None:
        return "-"
    amount = Decimal(str(value)).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    return f"{amount:,.2f}" + (f" {currency}" if currency else "")


def percent_text(value: float | Decimal | None, decimals: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{decimals}f} %"


def kpi(element_id: str, label: str, text: str, data: Mapping[str, object] | None = None) -> str:
    """A key figure as plain text, with a stable id and `data-*` attributes (the exact value) that a reader,
    or the browser test, finds without parsing the chart."""
    attributes = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in sorted((data or {}).items()))
    return (
        f'<div class="kpi"><div class="label">{esc(label)}</div>'
        f'<div class="value" id="{esc(element_id)}"{attributes}>{esc(text)}</div></div>'
    )


def kpis(items: Sequence[str]) -> str:
    return f'<div class="kpis">{"".join(items)}</div>'


def _cell(value: object) -> str:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return f'<td class="num">{esc(value)}</td>'
    text = "" if value is None else str(value)
    if len(text) > CELL_LIMIT:
        return f'<td title="{esc(text)}">{esc(text[: CELL_LIMIT - 1])}…</td>'
    return f"<td>{esc(text)}</td>"


def table(
    rows: Sequence[Mapping[str, object]],
    table_id: str,
    empty: str = "none",
    columns: Sequence[str] | None = None,
    row_data: Sequence[Mapping[str, object]] | None = None,
) -> str:
    """An HTML table of `rows` (every cell escaped), or the `empty` note. `row_data` adds `data-*` attributes
    to each row (exact values for a reader)."""
    if not rows:
        return f'<p class="note" id="{esc(table_id)}">{esc(empty)}</p>'
    names = list(columns or rows[0].keys())
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    body = []
    for index, row in enumerate(rows):
        extra = row_data[index] if row_data else {}
        attributes = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in sorted(extra.items()))
        body.append(f"<tr{attributes}>" + "".join(_cell(row.get(n)) for n in names) + "</tr>")
    return (
        f'<div class="scroll"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def figure(fig: go.Figure, div_id: str, height: int = 380) -> str:
    """A plotly figure as a div (plotly.js is in the page's head once), with a stable id."""
    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


@cache
def _plotly_js() -> str:
    return get_plotlyjs()


def page(title: str, subtitle: str, body: Sequence[str], generated_from: Mapping[str, object]) -> str:
    """A whole self-contained page: plotly.js inline in the head (no network needed), the sections, and a
    footer saying what the page was built from (no wall-clock time, so the page is deterministic)."""
    footer = "; ".join(f"{esc(k)}: {esc(v)}" for k, v in generated_from.items())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        f'<script type="text/javascript">{_plotly_js()}</script></head>'
        f'<body><h1>{esc(title)}</h1><div class="subtitle">{esc(subtitle)}</div>'
        + "\n".join(body)
        + f"<footer>{footer}</footer></body></html>\n"
    )


def section(title: str, *parts: str, section_id: str | None = None) -> str:
    attribute = f' id="{esc(section_id)}"' if section_id else ""
    return f"<section{attribute}><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def json_attribute(value: object) -> str:
    """A small JSON document for a `data-*` attribute (escaped by `kpi` / `table`)."""
    return json.dumps(value, sort_keys=True, default=str)


def day_text(day: dt.date | None) -> str:
    return day.isoformat() if day else "-"
