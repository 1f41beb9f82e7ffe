"""`budget_forecast`: the forecast arithmetic against an independent plain-Python computation (hypothesis),
the 80 % / 100 % thresholds exactly at the boundary, a month without budgets, the alerts sent once, and a
`billing_monthly` run on the generator's data."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store
from billing_pipeline.views.forecast import (
    BUDGET_FORECAST,
    BudgetCurrencyError,
    forecast_table,
    forecast_url,
    publish_forecast,
)
from billing_pipeline.views.names import MONTHLY_JOB

from .conftest import FX_RATES, MONTH, ConfigFactory

REPORTING = {"reporting": {"currency": "USD", "fx_rates_url": str(FX_RATES)}}
SYNTHETIC_MONTH = dt.date(2027, 2, 1)  # 28 days, Monday 1 February


def _config(**extra: Any) -> BillingConfig:
    return BillingConfig.model_validate(
        {
            "lake_url": "/nonexistent/lake",
            "start_date": "2020-01-01",
            "invoices_url": "/nonexistent/invoices",
            "sources": [{"name": "focus", "provider": "focus", "url": "/nonexistent/focus"}],
            "tag_policy": {"owner_dimension": "team", "dimensions": {"team": {"keys": ["team"]}}},
            **extra,
        }
    )


def _totals(rows: list[tuple[dt.date, str, str | None, Decimal]], currency: str = "USD") -> pl.DataFrame:
    """A `daily_totals`-shaped frame: (date, cost_kind, team, amount) with billed = effective = amount."""
    return pl.DataFrame(
        {
            "date": [r[0] for r in rows],
            "cost_kind": [r[1] for r in rows],
            "team": [r[2] for r in rows],
            "BillingCurrency": [currency] * len(rows),
            "billed_cost": [r[3] for r in rows],
            "effective_cost": [r[3] for r in rows],
        },
        schema={
            "date": pl.Date,
            "cost_kind": pl.String,
            "team": pl.String,
            "BillingCurrency": pl.String,
            "billed_cost": MONEY,
            "effective_cost": MONEY,
        },
    ).with_columns(pl.lit(None, dtype=MONEY).alias(c) for c in ("billed_cost_reporting", "effective_cost_reporting"))


# ---- the arithmetic, recomputed in plain Python -------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _expected(series: list[float], first: dt.date, last: dt.date) -> tuple[float, float, float, float]:
    """(month to date, forecast, low, high) of one key's daily spend from `first` on, the month ending `last`."""
    days = [first + dt.timedelta(days=n) for n in range(len(series))]
    by_weekday: dict[int, list[float]] = defaultdict(list)
    for day, spend in zip(days, series, strict=True):
        by_weekday[day.weekday()].append(spend)
    mean = sum(series) / len(series)
    weekday_mean = {w: sum(v) / len(v) for w, v in by_weekday.items()}
    residuals = [
        spend - (weekday_mean[day.weekday()] if len(by_weekday[day.weekday()]) >= 2 else mean)
        for day, spend in zip(days, series, strict=True)
    ]
    remaining = [days[-1] + dt.timedelta(days=n) for n in range(1, (last - days[-1]).days + 1)]
    forecast = sum(series) + sum(weekday_mean.get(day.weekday(), mean) for day in remaining)
    low = forecast + len(remaining) * _quantile(residuals, 0.1)
    high = forecast + len(remaining) * _quantile(residuals, 0.9)
    return sum(series), forecast, low, high


amounts = st.decimals(min_value=-50, max_value=1000, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    observed=st.integers(min_value=1, max_value=28),
    web=st.lists(st.one_of(st.none(), amounts), min_size=28, max_size=28),
    unallocated=st.lists(amounts, min_size=28, max_size=28),
)
def test_the_forecast_matches_a_plain_python_computation(
    observed: int, web: list[Decimal | None], unallocated: list[Decimal]
) -> None:
    days = [SYNTHETIC_MONTH + dt.timedelta(days=n) for n in range(observed)]
    rows = [(d, "direct", "web", a) for d, a in zip(days, web, strict=False) if a is not None]
    rows += [(d, "unallocated", None, a) for d, a in zip(days, unallocated, strict=False)]
    table = forecast_table(_config(), _totals(rows), SYNTHETIC_MONTH)
    last = dt.date(2027, 2, 28)
    web_series = [float(a or 0) for a in web[:observed]]
    total_series = [w + float(u) for w, u in zip(web_series, unallocated[:observed], strict=True)]
    expected = {"total": _expected(total_series, SYNTHETIC_MONTH, last)}
    if any(a is not None for a in web[:observed]):
        expected["web"] = _expected(web_series, SYNTHETIC_MONTH, last)
    got = {
        row["team"] or "total": tuple(
            float(row[c]) for c in ("month_to_date", "forecast", "forecast_low", "forecast_high")
        )
        for row in table.iter_rows(named=True)
    }
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-9, abs=1e-6), key
    assert set(table["days_observed"]) == {observed} and set(table["days_remaining"]) == {28 - observed}
    assert set(table["status"]) == {"no_budget"}


def test_a_weekday_not_seen_yet_takes_the_daily_mean_and_a_closed_month_is_its_actual() -> None:
    # Monday 1 to Wednesday 3 February: 10, 20, 30; Thursday to Sunday take the mean, 20
    rows = [(SYNTHETIC_MONTH + dt.timedelta(days=n), "direct", "web", Decimal(10 * (n + 1))) for n in range(3)]
    table = forecast_table(_config(), _totals(rows), SYNTHETIC_MONTH).filter(pl.col("team") == "web")
    # 25 days left: 3 x (Mon, Tue, Wed) at 10 + 20 + 30 and the other 16 at 20
    assert table["forecast"][0] == Decimal(60 + 3 * 60 + 16 * 20)
    whole = [(SYNTHETIC_MONTH + dt.timedelta(days=n), "direct", "web", Decimal(n)) for n in range(28)]
    closed = forecast_table(_config(), _totals(whole), SYNTHETIC_MONTH).filter(pl.col("team") == "web")
    assert closed["forecast"][0] == closed["forecast_low"][0] == closed["forecast_high"][0] == Decimal(sum(range(28)))


# ---- the thresholds, exactly at the boundary -----------------------------------------------------------------------

FLAT = [(SYNTHETIC_MONTH + dt.timedelta(days=n), "direct", "web", Decimal(10)) for n in range(14)]  # forecast 280


@pytest.mark.parametrize(
    ("budget", "status"),
    [
        (Decimal(280), "over"),  # forecast = 100 % of the budget
        (Decimal("280.000000000000000001"), "warn"),  # a hair under 100 %
        (Decimal(350), "warn"),  # forecast = 80 % of the budget
        (Decimal("350.000000000000000001"), "ok"),  # a hair under 80 %
        (Decimal(100), "over"),
    ],
)
def test_warn_at_80_and_over_at_100_percent_exactly(budget: Decimal, status: str) -> None:
    config = _config(budgets={"currency": "USD", "teams": {"web": str(budget)}, "total": str(budget)})
    table = forecast_table(config, _totals(FLAT), SYNTHETIC_MONTH)
    assert table["forecast"].to_list() == [Decimal(280), Decimal(280)]
    assert table["status"].to_list() == [status, status]


def test_percentages_are_configurable_and_a_budgeted_team_without_spend_has_a_row() -> None:
    config = _config(budgets={"teams": {"web": 400, "data": {"amount": 5, "route": "page"}}, "warn_percent": 70})
    table = forecast_table(config, _totals(FLAT), SYNTHETIC_MONTH)
    statuses = {row["team"]: (row["status"], row["forecast"]) for row in table.iter_rows(named=True)}
    assert statuses == {"web": ("warn", Decimal(280)), "data": ("ok", Decimal(0)), None: ("no_budget", Decimal(280))}


def test_the_budget_currency_is_the_reporting_one_or_the_only_billing_one() -> None:
    with pytest.raises(BudgetCurrencyError, match="differs from reporting.currency USD"):
        forecast_table(_config(budgets={"currency": "EUR", "total": 1}, **REPORTING), _totals(FLAT), SYNTHETIC_MONTH)
    two = pl.concat([_totals(FLAT), _totals(FLAT, currency="EUR")])
    with pytest.raises(BudgetCurrencyError, match=r"billed in \['EUR', 'USD'\]"):
        forecast_table(_config(budgets={"total": 1}), two, SYNTHETIC_MONTH)
    table = forecast_table(_config(budgets={"total": 1000, "currency": "EUR"}), two, SYNTHETIC_MONTH)
    totals = {row["currency"]: row["status"] for row in table.filter(pl.col("scope") == "total").iter_rows(named=True)}
    assert totals == {"EUR": "ok", "USD": "no_budget"}  # a budget covers spend in its own currency only
    with pytest.raises(ValueError, match="warn_percent 90 is above over_percent 85"):
        _config(budgets={"warn_percent": 90, "over_percent": 85})


# ---- on the generator's month -------------------------------------------------------------------------------------


def test_a_month_without_budgets_still_materializes_as_no_budget(views_config: ConfigFactory) -> None:
    config = views_config(**REPORTING)
    published = publish_forecast(config, Store(), MONTH)
    assert published.url == forecast_url(config.lake_url, MONTH) and Path(published.url).exists()
    written = pl.read_parquet(published.url)
    assert written.height > 1 and set(written["status"]) == {"no_budget"}
    assert set(written["currency"]) == {"USD"} and written["as_of"].max() == MONTH.replace(day=4)
    assert published.alerts == [] and published.report is None


def _budgets_over_and_warn(table: pl.DataFrame) -> dict[str, Any]:
    """Budgets that put the largest team over and the second at warn (90 %)."""
    teams = table.filter(pl.col("scope") == "team").sort("forecast", descending=True)
    first, second = teams["team"][0], teams["team"][1]
    return {
        "teams": {
            first: {"amount": str(teams["forecast"][0] / 2)},
            second: {"amount": str(teams["forecast"][1] / Decimal("0.9")), "route": "page"},
        },
        "total": str(table.filter(pl.col("scope") == "total")["forecast"][0] * 10),
    }


def test_a_team_at_warn_or_over_is_alerted_once(views_config: ConfigFactory) -> None:
    plain = publish_forecast(views_config(**REPORTING), Store(), MONTH).table
    budgets = _budgets_over_and_warn(plain)
    alerts = {
        "ticket": {"kind": "slack", "url": "http://127.0.0.1:9/slack"},
        "page": {"kind": "pagerduty", "url": "http://127.0.0.1:9/pd", "routing_key_env": "PAGERDUTY_ROUTING_KEY"},
    }
    config = views_config(**REPORTING, budgets=budgets, alerts=alerts)
    Path(forecast_url(config.lake_url, MONTH)).unlink()
    posted: list[tuple[str, dict[str, Any]]] = []

    def poster(url: str, payload: dict[str, Any], timeout: float) -> int:
        posted.append((url, payload))
        return 200

    env = {"PAGERDUTY_ROUTING_KEY": "test"}
    first = publish_forecast(config, Store(), MONTH, env=env, poster=poster)
    by_team = {a.title.split(":")[1].split(" forecast")[0].strip(): a for a in first.alerts}
    (over_team, warn_team) = list(budgets["teams"])
    assert set(by_team) == {f"team {over_team}", f"team {warn_team}"}
    assert (by_team[f"team {over_team}"].severity, by_team[f"team {over_team}"].route) == ("ERROR", "ticket")
    assert (by_team[f"team {warn_team}"].severity, by_team[f"team {warn_team}"].route) == ("WARN", "page")
    assert first.report is not None and len(first.report.sent) == 2
    assert {url.rsplit("/", 1)[-1] for url, _ in posted} == {"slack", "pd"}
    again = publish_forecast(config, Store(), MONTH, env=env, poster=poster)
    assert again.alerts == [] and again.report is None  # the same status next day: nothing new
    Path(forecast_url(config.lake_url, MONTH)).unlink()  # even without the previous table, a key is sent once
    rerun = publish_forecast(config, Store(), MONTH, env=env, poster=poster)
    assert len(rerun.alerts) == 2 and rerun.report is not None
    assert rerun.report.sent == [] and len(rerun.report.suppressed) == 2


def test_billing_monthly_materializes_the_forecast_with_its_totals_in_metadata(views_config: ConfigFactory) -> None:
    plain = publish_forecast(views_config(**REPORTING), Store(), MONTH).table
    config = views_config(**REPORTING, budgets=_budgets_over_and_warn(plain))
    assert config.config_path is not None
    job = build_definitions(config.config_path).resolve_job_def(MONTHLY_JOB)
    with instance_for_test() as instance:
        result = job.execute_in_process(partition_key=MONTH.isoformat(), instance=instance)
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey(BUDGET_FORECAST))
    assert event is not None and event.asset_materialization is not None
    metadata = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    total = plain.filter(pl.col("scope") == "total")
    assert metadata["path"] == forecast_url(config.lake_url, MONTH)
    assert metadata["total_forecast_usd"] == pytest.approx(float(total["forecast"][0]))
    assert metadata["total_forecast_low_usd"] <= metadata["total_forecast_usd"] <= metadata["total_forecast_high_usd"]
    assert (metadata["teams_over"], metadata["teams_warn"], metadata["total_status_usd"]) == (1, 1, "ok")
    assert metadata["alerts_sent"] == 0  # no alert route in this billing.yaml
