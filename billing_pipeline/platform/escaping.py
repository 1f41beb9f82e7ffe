"""Escaping of delivered text for each place it is shown: Markdown metadata in the Dagster UI, Slack
messages, PagerDuty events, CSV files opened in a spreadsheet, and SQL text shown or run in DuckDB.

Tag values, account ids, export versions and file names come from whoever writes the billing exports.
Shown unescaped, a tag value `a | b` splits a Markdown table row, `<!channel>` pings a whole Slack
channel, `<http://evil|invoice>` is a disguised link, and `=HYPERLINK(...)` runs as a formula when a
CSV is opened. Each function here makes a value inert for one medium only: escape at the point of
output, for the medium written to, never earlier.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

# ---- Markdown (Dagster metadata rendered with MetadataValue.md) --------------------------------------------

# Characters with an inline meaning in CommonMark / GitHub-flavoured Markdown or HTML: emphasis, code,
# links and images, raw HTML and entities, strikethrough, and `|` (a table cell boundary). CommonMark
# lets any ASCII punctuation be backslash-escaped, so a backslash makes each one literal.
_MARKDOWN_INLINE = frozenset("\\`*_[]<>|~&!")
# At the start of a line these begin a heading, a list item, a block quote or a setext underline.
_MARKDOWN_LEADING = frozenset("#+-=>")
# Every character that ends a line for a Markdown parser or a browser (U+2028/9 for some), and the
# other control characters, which have no business in a cell.
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")

MARKDOWN_CELL_LIMIT = 300


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def markdown_cell(value: object, limit: int | None = MARKDOWN_CELL_LIMIT) -> str:
    """One table cell of delivered text: shown literally, on one line, never splitting the row.

    Numbers, dates and None keep their plain text (nothing in them can be markup). Text is cut to
    `limit` characters *before* escaping, so a cut never leaves a dangling backslash that would escape
    the cell's closing `|`.
    """
    if value is None or _is_number(value) or isinstance(value, (bool, dt.date, dt.datetime)):
        return str(value)
    text = _LINE_BREAKS.sub(" ", str(value)).replace("\t", " ")
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    out = []
    for index, char in enumerate(text):
        if char in _MARKDOWN_INLINE or (index == 0 and char in _MARKDOWN_LEADING):
            out.append("\\")
        out.append(char)
    return "".join(out)


def markdown_table(
    rows: Sequence[Mapping[str, object]], empty: str = "_no rows_", limit: int | None = MARKDOWN_CELL_LIMIT
) -> str:
    """A Markdown table whose header and cells are escaped with `markdown_cell` (`empty` if no rows)."""
    if not rows:
        return empty
    header = list(rows[0])
    lines = ["| " + " | ".join(markdown_cell(h, limit) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(row.get(h), limit) for h in header) + " |" for row in rows]
    return "\n".join(lines)


# ---- Slack mrkdwn -----------------------------------------------------------------------------------------------

_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def slack_text(value: object, limit: int | None = None) -> str:
    """Text for a Slack `mrkdwn` field or a message's `text`: `&`, `<` and `>` become entities.

    Those three are the only control characters of Slack's message format: with them escaped a value
    cannot mention (`<!channel>`, `<!here>`, `<@U123>`) or link (`<http://x|label>`). The result is at
    most `limit` characters and never ends inside an entity.
    """
    out: list[str] = []
    size = 0
    for char in str(value):
        piece = _SLACK_ENTITIES.get(char, char)
        if limit is not None and size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


# ---- PagerDuty Events API v2 -------------------------------------------------------------------------------

PAGERDUTY_MAX_BYTES = 512 * 1024  # the Events API rejects a larger event


def json_size(document: Any) -> int:
    """Bytes of `document` as it is POSTed (UTF-8 JSON): PagerDuty needs no escaping beyond JSON's own,
    but it refuses an event over 512 KB, so what goes in is measured."""
    return len(json.dumps(document, default=str).encode())


def clip(value: object, limit: int) -> str:
    """Text cut to `limit` characters, marked with an ellipsis when cut."""
    text = str(value)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


# ---- CSV opened in a spreadsheet -----------------------------------------------------------------------------

# A cell starting with one of these is a formula (or a DDE call) in Excel, LibreOffice or Google Sheets;
# full-width forms included, which some spreadsheets normalise.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: text starting with a formula character gets a leading `'`.

    Only text is touched: numbers (and other non-text values) are returned as they are, so they stay
    numbers in the spreadsheet.
    """
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe_frame(frame: Any) -> Any:
    """`csv_cell` over every text column of a polars DataFrame, before `write_csv`."""
    import polars as pl

    text_columns = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.slice(0, 1).is_in(CSV_FORMULA_STARTS))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text_columns
    )


# ---- SQL text ----------------------------------------------------------------------------------------------------


def sql_string(value: object) -> str:
    """A DuckDB / ANSI string literal: quoted, with every `'` doubled. For text that cannot be a bound
    parameter (a view's DDL, a query printed for a human to run)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A quoted identifier (column name from configuration): quoted, with every `"` doubled."""
    return '"' + name.replace('"', '""') + '"'
