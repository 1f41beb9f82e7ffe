"""The `dashboards` asset and its pages without a browser: where they are written and reported, the debug
page's day, determinism, per-billing-currency figures without a reporting currency, an s3:// lake, and the
demo's monthly step. (The browser test opens the pages: `test_dashboards_browser.py`.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import re
import shutil
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import AssetKey, instance_for_test

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.config import CONFIG_ENV_VAR, load_config
from billing_pipeline.platform.privacy_config import PrivacyConfig
from billing_pipeline.platform.storage import Store
from billing_pipeline.tools.demo import build_monthly_views, dashboard_report
from billing_pipeline.views.dashboards import executive, oncall
from billing_pipeline.views.dashboards.publish import PAGES, publish_dashboards, render_pages
from billing_pipeline.views.dashboards.reader import gather
from billing_pipeline.views.names import DASHBOARDS, MONTHLY_JOB

from ...s3 import s3_client, upload_tree
from ..conftest import DAYS, MONTH
from . import lake_sql
from .conftest import BUDGETS, QUIET, REPORTING, dashboard_config_path

LAST = MONTH + dt.timedelta(days=DAYS - 1)


def _copy(dashboard_month: SimpleNamespace, folder: Path, **extra: object) -> Path:
    """A config over a copy of the month's lake (a test that writes pages does not touch the shared one)."""
    landing = Path(dashboard_month.config.sources[0].url).parents[1]
    path = dashboard_config_path(folder, landing, **extra)
    shutil.copytree(dashboard_month.config.lake_url, folder / "lake")
    return path


def _data_attribute(html: str, element_id: str, name: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*\bdata-{name}="([^"]*)"', html)
    assert match, f"no #{element_id} with data-{name}"
    return match.group(1)


def test_the_asset_writes_three_pages_beside_the_csv_and_reports_their_paths(dashboard_month: SimpleNamespace) -> None:
    metadata = dashboard_month.metadata
    reports = Path(dashboard_month.config.lake_url) / "reports" / "2026-10"
    assert dashboard_month.partition == MONTH.isoformat()
    for name in ("executive", "oncall", "debug"):
        assert metadata[f"{name}_path"].value == str(reports / f"{name}.html")
        assert (reports / f"{name}.html").read_text().startswith("<!DOCTYPE html>")
    assert metadata["chargeback_csv_path"].value == str(reports / "chargeback.csv")
    assert (reports / "chargeback.csv").exists()
    assert metadata["debug_day"].value == LAST.isoformat()  # default: the month's last day with data
    assert metadata["reporting_currency"].value == "USD"


def test_pages_are_deterministic(dashboard_month: SimpleNamespace) -> None:
    """Re-reading the lake in this process renders the same bytes the asset wrote in its run."""
    pages = render_pages(gather(dashboard_month.config, dashboard_month.store, MONTH))
    for name, html in pages.items():
        assert Path(dashboard_month.urls[name]).read_text() == html, name


def test_the_debug_day_is_run_config_and_must_be_in_the_month(dashboard_month: SimpleNamespace, tmp_path: Path) -> None:
    path = _copy(dashboard_month, tmp_path, reporting=REPORTING, budgets=BUDGETS)
    chosen = MONTH + dt.timedelta(days=1)
    job = build_definitions(path).resolve_job_def(MONTHLY_JOB)
    run_config = {**QUIET, "ops": {DASHBOARDS: {"config": {"debug_day": chosen.isoformat()}}}}
    with instance_for_test() as instance:
        assert job.execute_in_process(partition_key=MONTH.isoformat(), instance=instance, run_config=run_config).success
        metadata = instance.get_latest_materialization_event(AssetKey(DASHBOARDS)).asset_materialization.metadata
    assert metadata["debug_day"].value == chosen.isoformat()
    debug = (tmp_path / "lake" / "reports" / "2026-10" / "debug.html").read_text()
    assert _data_attribute(debug, "debug-day", "day") == chosen.isoformat()
    assert f"raw_line_items: sample rows of {len(dashboard_month.config.sources)} source(s)" in debug
    config = load_config(path)
    with pytest.raises(ValueError, match=r"dashboards of 2026-10: debug day 2026-11-01 is not in the month"):
        gather(config, Store(), MONTH, dt.date(2026, 11, 1))


def test_without_a_reporting_currency_the_totals_stay_per_billing_currency(dashboard_month: SimpleNamespace) -> None:
    lake = Path(dashboard_month.config.lake_url)
    config = dashboard_month.config.model_copy(update={"reporting": None})
    html = executive.render(gather(config, dashboard_month.store, MONTH))
    expected = lake_sql.billing_currency_totals(lake, MONTH, LAST)
    assert set(expected) == {"USD", "EUR"}
    for currency, total in expected.items():
        assert Decimal(_data_attribute(html, f"exec-total-{currency.lower()}", "amount")) == total, currency
    assert "reporting currency" not in html.split("<body>")[1].split("</div>")[1]  # the subtitle says billing


def test_pages_are_written_to_an_s3_lake(dashboard_month: SimpleNamespace, s3_endpoint: str, tmp_path: Path) -> None:
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="lake")
    upload_tree(client, Path(dashboard_month.config.lake_url), "lake", "lake")
    config = dashboard_month.config.model_copy(
        update={"lake_url": "s3://lake/lake", "storage_options": {"endpoint_url": s3_endpoint}}
    )
    published = publish_dashboards(config, Store(config.storage_options), MONTH)
    assert published.urls == {name: f"s3://lake/lake/reports/2026-10/{name}.html" for name in PAGES}
    local = render_pages(gather(dashboard_month.config, dashboard_month.store, MONTH))
    for name in PAGES:
        body = client.get_object(Bucket="lake", Key=f"lake/reports/2026-10/{name}.html")["Body"].read().decode()
        # the same page as from the local lake, except where it names the lake's own paths
        assert len(body) > 1_000_000 and body.count("js-plotly-plot") == local[name].count("js-plotly-plot"), name
    executive_page = client.get_object(Bucket="lake", Key="lake/reports/2026-10/executive.html")["Body"].read().decode()
    assert _data_attribute(executive_page, "exec-total-usd", "amount") == _data_attribute(
        local["executive"], "exec-total-usd", "amount"
    )


def test_the_demo_builds_the_month_and_ends_with_the_pages_and_the_csv(
    dashboard_month: SimpleNamespace, tmp_path: Path
) -> None:
    path = _copy(dashboard_month, tmp_path, reporting=REPORTING, budgets=BUDGETS)
    module = importlib.import_module("billing_pipeline.definitions")
    saved = module.defs
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv(CONFIG_ENV_VAR, str(path))
            (tmp_path / "home").mkdir()
            with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
                for page in (tmp_path / "lake" / "reports" / "2026-10").glob("*.html"):
                    page.unlink()
                assert build_monthly_views(instance, "2026-10")
                assert instance.get_latest_materialization_event(AssetKey(DASHBOARDS)) is not None
    finally:
        module.defs = saved
    report = dashboard_report(load_config(path), "2026-10").strip().splitlines()
    paths = [line.split()[-1] for line in report[1:]]
    reports = tmp_path / "lake" / "reports" / "2026-10"
    assert paths == [str(reports / f"{name}.html") for name in PAGES] + [str(reports / "chargeback.csv")]
    assert all(Path(p).exists() for p in paths)


def test_open_alerts_come_from_the_alert_state(dashboard_month: SimpleNamespace) -> None:
    data = gather(dashboard_month.config, dashboard_month.store, MONTH)
    incident = {
        "cause": "publish_guard",
        "route": "page",
        "open": {
            "k1": {"title": "publish_guard failed for <aws_cur2>", "partition": "2026-10-02", "since": "2026-10-03"},
            "k2": {"title": "publish_guard failed", "partition": "2026-10-03", "since": "2026-10-04"},
        },
    }
    quiet = dataclasses.replace(data, alert_state={"incidents": {"inc-1": incident}}, slo=data.slo.clear())
    html = oncall.render(quiet)
    assert _data_attribute(html, "oncall-open-alerts", "count") == "2"
    assert "publish_guard failed for &lt;aws_cur2&gt;" in html and "<aws_cur2>" not in html


def test_with_privacy_on_the_debug_page_shows_no_raw_row(dashboard_month: SimpleNamespace) -> None:
    """The pages live in the curated lake, where pseudonymized identifiers must never appear in clear: the raw
    layer's sample rows (delivered as they are) are withheld, the curated layers' still shown."""
    clear = gather(dashboard_month.config, dashboard_month.store, MONTH)
    private_config = dashboard_month.config.model_copy(update={"privacy": PrivacyConfig()})
    private = gather(private_config, dashboard_month.store, MONTH)
    assert "raw_line_items" in clear.samples and not clear.raw_withheld
    assert "raw_line_items" not in private.samples and private.raw_withheld
    assert private.samples.keys() == clear.samples.keys() - {"raw_line_items"}
    html = render_pages(private)["debug"]
    assert 'id="debug-samples-raw_line_items-withheld"' in html
    assert 'id="debug-sample-raw_line_items-' not in html
