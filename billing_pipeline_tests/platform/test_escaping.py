"""Delivered text made inert for each medium it reaches: Markdown tables (rendered with markdown-it-py,
the CommonMark parser that comes with dagster via rich), Slack mrkdwn, PagerDuty JSON, CSV cells and
SQL literals (run in DuckDB); and an alert built from a lake row whose tag value is hostile."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from billing_pipeline.observability import anomalies
from billing_pipeline.observability.alerts import Alert, anomaly_alerts, pagerduty_payload, send_alerts, slack_payload
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.escaping import (
    CSV_FORMULA_STARTS,
    PAGERDUTY_MAX_BYTES,
    csv_cell,
    csv_safe_frame,
    json_size,
    markdown_cell,
    markdown_table,
    slack_text,
    sql_identifier,
    sql_string,
)
from billing_pipeline.platform.storage import Store

from ..conftest import write_config
from ..http_capture import Receiver

HOSTILE = '<!channel> | =HYPERLINK("http://x")'
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

# Text biased towards what breaks things: markup, separators, entities, line breaks and backslashes.
nasty_text = st.text(
    alphabet=st.sampled_from(list("|\\`*_[]<>()!~&#+-=@:/ \t'\"ab1.;") + list(LINE_BREAKS) + ["\x00", "é", "\u200b"]),
    max_size=60,
) | st.text(max_size=60)


def _unescape_markdown(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell)


def _unescaped_pipes(cell: str) -> int:
    """`|` not preceded by an odd run of backslashes: what GFM tables split a row at."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", cell))


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


# ---- Markdown ---------------------------------------------------------------------------------------------------


@given(nasty_text)
def test_markdown_cell_is_one_literal_line_that_cannot_split_the_row(text: str) -> None:
    cell = markdown_cell(text, limit=None)
    assert _unescaped_pipes(cell) == 0
    assert not any(ch in cell for ch in LINE_BREAKS)
    assert (len(cell) - len(cell.rstrip("\\"))) % 2 == 0  # never a dangling backslash before the closing `|`
    expected = re.sub(f"[{LINE_BREAKS}\x00-\x08\x0e-\x1f\x7f]+", " ", text).replace("\t", " ")
    assert _unescape_markdown(cell) == expected  # nothing lost but the line breaks


@given(nasty_text, st.integers(min_value=1, max_value=20))
def test_markdown_cell_limit_cuts_before_escaping(text: str, limit: int) -> None:
    cell = markdown_cell(text, limit=limit)
    assert len(_unescape_markdown(cell)) <= limit
    assert _unescaped_pipes(cell) == 0 and (len(cell) - len(cell.rstrip("\\"))) % 2 == 0


@settings(max_examples=150)
@given(st.lists(st.tuples(nasty_text, nasty_text), min_size=1, max_size=4))
def test_markdown_table_renders_every_value_as_plain_text_in_its_own_cell(pairs: list[tuple[str, str]]) -> None:
    rows = [{"account": account, "tag value": tag, "rows": 3} for account, tag in pairs]
    html = _render(markdown_table(rows))
    assert html.count("<tr>") == len(rows) + 1
    assert html.count("<td>") == 3 * len(rows)
    for tag in ("<a ", "<img", "<em>", "<strong>", "<code>", "<s>", "<del>", "<script", "<b>"):
        assert tag not in html


def test_markdown_table_of_a_hostile_row() -> None:
    rows = [{"source": "cur2", "BillingAccountId": "[click](http://evil) *x* `y` <b>z</b>", "status": HOSTILE}]
    table = markdown_table(rows)
    assert table.splitlines()[2].count(" | ") == 2  # three cells, the `|` of the value escaped
    html = _render(table)
    assert "<a " not in html and "<b>" not in html and "<em>" not in html and "<code>" not in html
    assert "&lt;!channel&gt; | =HYPERLINK(&quot;http://x&quot;)" in html  # shown as it was delivered
    assert markdown_table([], empty="_nothing_") == "_nothing_"
    assert markdown_cell(12.5) == "12.5" and markdown_cell(None) == "None" and markdown_cell(-3) == "-3"


# ---- Slack -------------------------------------------------------------------------------------------------------


@given(nasty_text, st.one_of(st.none(), st.integers(min_value=0, max_value=40)))
def test_slack_text_has_no_raw_angle_brackets_and_round_trips(text: str, limit: int | None) -> None:
    out = slack_text(text, limit=limit)
    assert "<" not in out and ">" not in out
    assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", out, flags=re.S)  # every & starts one of the entities
    decoded = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    if limit is None:
        assert decoded == text
    else:
        assert len(out) <= limit and text.startswith(decoded)


def _mrkdwn_texts(payload: dict) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if block["type"] == "section":
            texts.append(block["text"]["text"])
    return texts


def test_slack_payload_escapes_titles_and_summaries_and_stays_sized() -> None:
    alert = Alert(key="k", route="page", severity="ERROR", title=f"team {HOSTILE}", summary="<@U123> & " + "<" * 5000)
    payload = slack_payload([alert], group="run 1", dagster_url="http://dagster.example:3000/?a=1&b=2")
    for text in _mrkdwn_texts(payload):
        assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt;" in payload["blocks"][1]["text"]["text"]
    assert len(payload["blocks"][1]["text"]["text"]) <= 2900 and len(payload["text"]) <= 3900
    assert payload["blocks"][-1]["elements"][0]["text"] == "<http://dagster.example:3000/?a=1&amp;b=2|Dagster UI>"


# ---- PagerDuty ---------------------------------------------------------------------------------------------------


def test_pagerduty_payload_is_json_with_the_text_intact_and_sized() -> None:
    small = Alert(key="a", route="page", severity="ERROR", title=HOSTILE, summary=HOSTILE, details={"q": HOSTILE})
    payload = pagerduty_payload([small], "run 1", "key", "http://d")
    assert json.loads(json.dumps(payload))["payload"]["custom_details"]["alerts"][0]["title"] == HOSTILE
    huge = [
        Alert(
            key=str(i),
            route="page",
            severity="ERROR",
            title="t" * 5000,
            summary="s" * 50_000,
            details={"top_rows": "r" * 50_000},
        )
        for i in range(200)
    ]
    payload = pagerduty_payload(huge, "run 1", "key", "http://d")
    assert json_size(payload) < PAGERDUTY_MAX_BYTES
    details = payload["payload"]["custom_details"]
    assert details["alerts_omitted"] > 0 and len(details["alerts"]) + details["alerts_omitted"] == 200
    assert len(details["alerts"][0]["title"]) == 1024 and details["alerts"][0]["title"].endswith("…")


# ---- CSV ---------------------------------------------------------------------------------------------------------


@given(
    st.one_of(
        nasty_text,
        st.sampled_from([f"{c}1+1" for c in CSV_FORMULA_STARTS]),
        st.integers(),
        st.floats(allow_nan=False),
        st.none(),
    )
)
def test_csv_cell_never_starts_a_formula_and_leaves_numbers_alone(value: object) -> None:
    out = csv_cell(value)
    if isinstance(value, str):
        assert isinstance(out, str) and not out.startswith(CSV_FORMULA_STARTS)
        assert out in (value, "'" + value)
    else:
        assert out is value


@settings(max_examples=50)
@given(st.lists(st.tuples(nasty_text, st.floats(allow_nan=False, allow_infinity=False)), max_size=8))
def test_csv_safe_frame_neutralises_text_columns_only(rows: list[tuple[str, float]]) -> None:
    frame = pl.DataFrame(
        {"tag": [r[0] for r in rows], "cost": [r[1] for r in rows]}, schema={"tag": pl.String, "cost": pl.Float64}
    )
    safe = csv_safe_frame(frame)
    assert safe["tag"].to_list() == [csv_cell(r[0]) for r in rows]
    assert safe["cost"].to_list() == frame["cost"].to_list()
    for record in csv.DictReader(io.StringIO(safe.write_csv())):
        assert not record["tag"].startswith(CSV_FORMULA_STARTS)
        float(record["cost"])  # still a number


# ---- SQL ---------------------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40))
def test_sql_literals_and_identifiers_round_trip_in_duckdb(text: str) -> None:
    connection = duckdb.connect()
    try:
        assert connection.execute(f"SELECT {sql_string(text)}").fetchone()[0] == text
        if text.strip():
            connection.execute(f"CREATE TABLE t ({sql_identifier(text)} INTEGER)")
            assert [d[0] for d in connection.execute("SELECT * FROM t").description] == [text]
    finally:
        connection.close()


# ---- an alert from a lake row whose tag value is hostile -----------------------------------------------------------


def _enriched_slice(lake: Path, day: dt.date, team: str, cost: float) -> None:
    folder = lake / "tag_enriched_costs" / f"date={day.isoformat()}" / "source=cur2"
    folder.mkdir(parents=True)
    pl.DataFrame(
        {
            "BilledCost": [cost],
            "ServiceName": ["AmazonEC2"],
            "SubAccountId": ["111111111111"],
            "BillingAccountId": ["111111111111"],
            "x_Source": ["cur2"],
            "x_LineItemId": [f"li-{day}"],
            "ResourceId": ["i-1"],
            "team": [team],
        }
    ).write_parquet(folder / "part-0.parquet")


def test_alert_from_a_hostile_tag_value_is_escaped_in_slack_and_intact_in_pagerduty(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = dt.date(2026, 10, 29)
    for weeks_back, cost in ((2, 100.0), (1, 100.0), (0, 900.0)):  # the team's spend jumps 9x on `day`
        _enriched_slice(tmp_path / "lake", day - dt.timedelta(days=7 * weeks_back), HOSTILE, cost)
    monkeypatch.setenv("ESC_PD_KEY", "routing-key")
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "cur2", "provider": "aws_cur2", "url": str(tmp_path / "landing")}],
            anomalies={"dimensions": ["team"], "route": "page"},
            alerts={
                "ticket": {"kind": "slack", "url": f"{receiver.url}/slack"},
                "page": {"kind": "pagerduty", "url": f"{receiver.url}/pd", "routing_key_env": "ESC_PD_KEY"},
            },
        )
    )
    table = anomalies.detect(config, Store(), day)
    assert table["key"].to_list() == [HOSTILE]
    report = send_alerts(config, Store(), anomaly_alerts(table, config), group="run 1")
    assert not report.errors and len(report.sent) == 1

    (slack,), (page,) = receiver.by_path("/slack"), receiver.by_path("/pd")
    for text in _mrkdwn_texts(slack):
        assert "<!channel>" not in text and "<" not in text and ">" not in text
        assert '&lt;!channel&gt; | =HYPERLINK("http://x")' in text
    alert = page["payload"]["custom_details"]["alerts"][0]
    assert HOSTILE in alert["title"] and HOSTILE in page["payload"]["summary"]  # JSON carries it as text
    assert alert["details"]["query"].endswith(f'"team" = {sql_string(HOSTILE)} ORDER BY abs(BilledCost) DESC')
    connection = duckdb.connect()  # the query shown for the anomaly is valid SQL selecting that tag value
    try:
        connection.execute(
            f"CREATE VIEW tag_enriched_costs AS SELECT * FROM read_parquet("
            f"{sql_string(str(tmp_path / 'lake' / 'tag_enriched_costs' / '*' / '*' / '*.parquet'))},"
            " hive_partitioning = true)"
        )
        assert connection.execute(f"SELECT team FROM ({alert['details']['query']})").fetchall() == [(HOSTILE,)]
    finally:
        connection.close()
    assert csv_cell(HOSTILE.split(" | ")[1]) == '\'=HYPERLINK("http://x")'
