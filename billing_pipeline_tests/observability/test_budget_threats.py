"""An SLO's burn-rate alert names the cost budgets (at warn / over) that its burning sources' spend feeds."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.defs.observability_assets import budget_result, burning_sources
from billing_pipeline.observability import error_budgets
from billing_pipeline.observability.alerts import check_outcome
from billing_pipeline.observability.alerts.model import Alert
from billing_pipeline.observability.alerts.payloads import alert_entry
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.storage import scratch_dir
from billing_pipeline.views.forecast import publish_forecast, threatened_budgets

from ..conftest import write_config

MONTH = dt.date(2023, 11, 1)
DAY = dt.date(2023, 11, 3)
# source -> team -> daily effective cost over Nov 1-3: forecasts of 30 x the daily spend
SPEND = {"alpha": {"web": Decimal(100), "ops": Decimal(1)}, "beta": {"data": Decimal(100)}}
BUDGETS = {"currency": "USD", "total": 1000, "teams": {"web": 1000, "ops": 1000, "data": 1000}}


def _lake(tmp_path: Path) -> BillingConfig:
    """Three days of allocated rows per source and team, and the month's forecast written from them."""
    sources = [{"name": name, "provider": "aws_cur2", "url": str(tmp_path / name)} for name in SPEND]
    config = load_config(write_config(tmp_path, sources, start_date="2023-11-01", budgets=BUDGETS))
    store = config.store()
    with scratch_dir() as workdir:
        for day in (MONTH, MONTH + dt.timedelta(days=1), DAY):
            for source, teams in SPEND.items():
                rows = pl.DataFrame(
                    {
                        "BillingCurrency": ["USD"] * len(teams),
                        "ServiceName": ["Amazon EC2"] * len(teams),
                        "ChargeCategory": ["Usage"] * len(teams),
                        "team": list(teams),
                        "BilledCost": [float(v) for v in teams.values()],
                        "EffectiveCost": [float(v) for v in teams.values()],
                    }
                )
                store.write_parquet(rows, slice_url(config.lake_url, "tag_enriched_costs", day, source), workdir)
    published = publish_forecast(config, store, MONTH, env={}, poster=lambda *_: 200)
    statuses = {row["team"] or "total": row["status"] for row in published.table.iter_rows(named=True)}
    # web and data forecast 3000 against 1000 (over); ops 30 (ok); the total 6030 (over)
    assert statuses == {"web": "over", "data": "over", "ops": "ok", "total": "over"}
    return config


def test_a_burning_source_threatens_the_total_and_the_teams_at_warn_or_over_it_feeds(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    store = config.store()
    threats = threatened_budgets(config, store, DAY, ["alpha"])
    # alpha feeds web (over) and ops (ok: not threatened); data spends only in beta
    assert {(t["scope"], t["team"], t["status"]) for t in threats} == {("total", "", "over"), ("team", "web", "over")}
    web = next(t for t in threats if t["team"] == "web")
    assert Decimal(web["forecast"]) == Decimal(100) * 30 and Decimal(web["budget"]) == Decimal(1000)
    assert web["budget_percent"] == "300" and web["month"] == "2023-11" and web["currency"] == "USD"
    everywhere = threatened_budgets(config, store, DAY, ["*"])  # a pipeline-wide SLI: every budget at risk
    assert {t["team"] for t in everywhere} == {"", "web", "data"}
    assert threatened_budgets(config, store, DAY, []) == []
    assert threatened_budgets(config, store, dt.date(2023, 12, 1), ["alpha"]) == []  # no forecast that month


def test_the_slo_burn_alert_payload_names_the_budget_it_threatens(tmp_path: Path) -> None:
    config = _lake(tmp_path)
    history = {DAY - dt.timedelta(days=age): age > 1 for age in range(28)}  # the last two days bad: a fast burn
    events = pl.DataFrame(
        [
            {"date": day, "sli": "export_success_rate", "source": "alpha", "value": 0.0, "target": 1.0, "good": good}
            for day, good in sorted(history.items())
        ],
        schema=error_budgets.EVENT_SCHEMA,
    )
    table = error_budgets.budgets(config, DAY, events)
    assert burning_sources("export_success_rate", table) == ["alpha"]
    threats = threatened_budgets(config, config.store(), DAY, burning_sources("export_success_rate", table))
    result = budget_result(config, "export_success_rate", table, threats)
    assert not result.passed
    assert "threatens the budget(s) of team web 2023-11: forecast 3,000.00 USD against a budget of 1,000.00" in (
        result.description
    )
    alert = check_outcome(
        "slo_error_budgets",
        "slo_budget_export_success_rate",
        DAY.isoformat(),
        result.passed,
        result.severity.value,
        result.metadata,
        config,
        result.description,
    )
    assert isinstance(alert, Alert)
    payload = alert_entry(alert)
    named = {(b["scope"], b["team"], b["status"]) for b in payload["details"]["threatened_budgets"]}
    assert named == {("total", "", "over"), ("team", "web", "over")}
    assert "team web" in payload["summary"]
    # within its error budget, the same SLI names no budget (nothing burns)
    clean = error_budgets.budgets(config, DAY, events.with_columns(good=pl.lit(True)))
    assert burning_sources("export_success_rate", clean) == []
    quiet = budget_result(config, "export_success_rate", clean, threats)
    assert quiet.passed and "budget/threatened" not in quiet.metadata and "threatens" not in quiet.description
    assert json.loads(result.metadata["budget/threatened"].value) == threats
