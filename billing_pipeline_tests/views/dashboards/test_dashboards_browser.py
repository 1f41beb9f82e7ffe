"""The three pages in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`) opens each
page by file:// (offline: nothing is fetched), with no console error, every chart drawn with data, and the
key figures equal to the lake's, read independently with DuckDB (`lake_sql.py`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from billing_pipeline.tools.screenshots import browser_paths, headless_chromium, open_page
from billing_pipeline.views.dashboards import executive
from billing_pipeline.views.dashboards.reader import gather

from ..conftest import DAYS, MONTH
from . import lake_sql

pytestmark = pytest.mark.skipif(
    browser_paths() is None,
    reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
)

FIRST, LAST = MONTH, MONTH + dt.timedelta(days=DAYS - 1)
CHARTS = {
    "executive": {"exec-trend-chart", "exec-daily-chart", "exec-teams-chart", "exec-forecast-chart"},
    "oncall": {"oncall-sli-chart", "oncall-latency-chart", "oncall-backlog-chart"},
    "debug": {"debug-deliveries-chart", "debug-duplicates-chart", "debug-layers-chart"},
}
CHART_DATA = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({
  id: p.id,
  points: (p.data || []).map(t => Math.max((t.x || []).length, (t.y || []).length)),
}));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as driver:
        yield driver


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _attribute(driver: Any, element_id: str, name: str) -> str:
    return driver.find_element("id", element_id).get_attribute(f"data-{name}")


def _text(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _shown_amount(text: str) -> Decimal:
    """`174,067.30 USD` -> Decimal('174067.30')."""
    return Decimal(text.split()[0].replace(",", ""))


def _table_rows(driver: Any, table_id: str) -> list[dict[str, str]]:
    rows = driver.find_elements("css selector", f"#{table_id} tbody tr")
    return [
        {name: row.get_attribute(f"data-{name}") for name in ("key", "amount", "currency")}
        | {"shown": row.find_elements("tag name", "td")[-1].text}
        for row in rows
    ]


@pytest.mark.parametrize("page", sorted(CHARTS))
def test_each_page_opens_offline_without_console_errors_and_every_chart_has_data(
    browser: Any, dashboard_month: SimpleNamespace, page: str
) -> None:
    path = Path(dashboard_month.urls[page])
    browser.get_log("browser")  # drop what an earlier page logged
    open_page(browser, path)
    assert _console_errors(browser) == []
    charts = browser.execute_script(CHART_DATA)
    assert {c["id"] for c in charts} == CHARTS[page]
    for chart in charts:
        assert chart["points"], f"{page}: chart {chart['id']} has no trace"
        assert all(n > 0 for n in chart["points"]), f"{page}: chart {chart['id']} has an empty trace {chart['points']}"
    html = path.read_text()
    assert "<script src=" not in html and "<link" not in html  # nothing to fetch: it opens offline


def test_executive_figures_equal_the_lakes_read_with_duckdb(browser: Any, dashboard_month: SimpleNamespace) -> None:
    lake = Path(dashboard_month.config.lake_url)
    assert lake_sql.currencies(lake, FIRST, LAST) == {"USD", "EUR"}  # both convert: EUR at each day's ECB rate
    open_page(browser, Path(dashboard_month.urls["executive"]))

    total = lake_sql.usd_total(lake, FIRST, LAST)
    assert float(_attribute(browser, "exec-total-usd", "amount")) == pytest.approx(total, abs=1e-6)
    assert abs(_shown_amount(_text(browser, "exec-total-usd")) - Decimal(f"{total:.6f}")) <= Decimal("0.005")

    providers = lake_sql.usd_by_provider(lake, FIRST, LAST)
    shown = _table_rows(browser, "exec-providers")
    assert {r["key"] for r in shown} == set(providers)
    for row in shown:
        assert row["currency"] == "USD"
        assert float(row["amount"]) == pytest.approx(providers[row["key"]], abs=1e-6), row["key"]
        assert abs(_shown_amount(row["shown"]) - Decimal(f"{providers[row['key']]:.6f}")) <= Decimal("0.005")

    teams = lake_sql.top_teams_usd(lake, "2026-10")
    shown_teams = _table_rows(browser, "exec-top-teams")
    assert [r["key"] for r in shown_teams] == [team for team, _ in teams]
    for row, (_, usd) in zip(shown_teams, teams, strict=True):
        assert float(row["amount"]) == pytest.approx(usd, abs=1e-6)

    unallocated = lake_sql.unallocated_percent(lake, FIRST, LAST)
    assert unallocated > 0  # the test policy leaves most accounts without an owner: a real share to compare
    assert float(_attribute(browser, "exec-unallocated-usd", "percent")) == pytest.approx(unallocated, abs=1e-9)
    assert _text(browser, "exec-unallocated-usd") == f"{unallocated:.2f} %"


def test_oncall_and_debug_counts_equal_the_lakes(browser: Any, dashboard_month: SimpleNamespace) -> None:
    lake = Path(dashboard_month.config.lake_url)
    open_page(browser, Path(dashboard_month.urls["oncall"]))
    first, last = LAST - dt.timedelta(days=29), LAST  # 30 days ending at the last day with data
    bad = lake_sql.bad_sli_evaluations(lake, first, last)
    assert int(_attribute(browser, "oncall-bad-evaluations", "count")) == bad
    open_page(browser, Path(dashboard_month.urls["debug"]))
    assert int(_attribute(browser, "debug-deliveries", "count")) == lake_sql.delivery_records(lake, "2026-10")
    assert _text(browser, "debug-day") == LAST.isoformat()


def test_values_from_the_exports_are_shown_as_text_never_run(
    browser: Any, dashboard_month: SimpleNamespace, tmp_path: Path
) -> None:
    data = gather(dashboard_month.config, dashboard_month.store, MONTH)
    evil_team = '<img src=x onerror="window.__pwned = 1">'
    evil_message = "</script><script>window.__pwned = 2</script>"
    chargeback = data.chargeback.with_columns(pl.lit(evil_team).alias("team"))
    anomaly = pl.DataFrame(
        {"usage_date": [FIRST], "kind": ["spend_anomaly"], "dimension": ["team"], "key": [evil_team]}
    ).with_columns(
        pl.lit(10.0).alias("spend"),
        pl.lit(1.0).alias("baseline"),
        pl.lit(9.0).alias("delta"),
        pl.lit(evil_message).alias("message"),
        pl.lit(evil_message).alias("top_rows"),
    )
    page = tmp_path / "evil.html"
    page.write_text(executive.render(dataclasses.replace(data, chargeback=chargeback, anomalies=anomaly)))
    browser.get_log("browser")
    open_page(browser, page)
    assert browser.execute_script("return window.__pwned === undefined")
    assert _console_errors(browser) == []
    assert [r["key"] for r in _table_rows(browser, "exec-top-teams")] == [evil_team]
    assert evil_message in _text(browser, "exec-anomalies")
