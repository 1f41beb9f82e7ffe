"""Unit costs: a team's direct effective cost per unit of a business metric, per day, checked against DuckDB."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import duckdb
import pytest

from billing_pipeline.platform.config import ConfigError
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.views.month import daily_totals
from billing_pipeline.views.unit_costs import MetricsFileError, publish_unit_costs, unit_costs_url

from .conftest import FX_RATES, MONTH, ConfigFactory

Q = Decimal("1e-18")
METRICS = """date,team,metric,value
2026-10-01,web,requests,1250000
2026-10-02,web,requests,0
2026-10-02,payments,customers,420
2026-10-03,nobody,requests,10
2026-11-01,web,requests,99
"""


def _direct_cost(lake: str, day: str, team: str) -> dict[str, Decimal]:
    """Per billing currency: the team's direct effective cost of the day (not tax, support or unused
    commitment), summed by DuckDB over the lake."""
    query = """
        SELECT BillingCurrency, sum(EffectiveCost) FROM read_parquet(?, hive_partitioning = true, union_by_name = true)
        WHERE date = CAST(? AS DATE) AND team = ? AND ChargeCategory <> 'Tax'
          AND coalesce(ServiceSubcategory, '') <> 'Support' AND NOT regexp_matches(ServiceName, '(?i)\\bsupport\\b')
          AND coalesce(CommitmentDiscountStatus, '') <> 'Unused'
        GROUP BY 1"""
    with duckdb.connect() as connection:
        rows = connection.execute(query, [f"{lake}/tag_enriched_costs/*/*/*.parquet", day, team]).fetchall()
    return {currency: Decimal(total) for currency, total in rows}


def _publish(config, store=None):
    store = store or Store()
    with scratch_dir() as workdir:
        totals = daily_totals(config, store, MONTH, workdir)
    return publish_unit_costs(config, store, totals, MONTH)


def test_cost_per_unit_per_team_and_day(views_config: ConfigFactory, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(METRICS)
    config = views_config(unit_costs={"metrics_url": str(metrics), "per": {"requests": 1000}})
    published = _publish(config)
    assert published is not None
    url, table = published
    assert url == unit_costs_url(config.lake_url, MONTH) and Path(url).exists()
    assert "2026-11-01" not in {d.isoformat() for d in table["date"]}  # another month's metrics are left out
    rows = {(r["date"].isoformat(), r["key"], r["metric"], r["currency"]): r for r in table.iter_rows(named=True)}
    web = _direct_cost(config.lake_url, "2026-10-01", "web")
    assert web, "the generated month has direct costs for web"
    with localcontext() as context:
        context.prec = 80
        for currency, cost in web.items():
            row = rows[("2026-10-01", "web", "requests", currency)]
            assert row["cost"] == cost and row["per"] == 1000
            expected = ((cost * 1000).quantize(Q, ROUND_HALF_EVEN) / Decimal(1250000)).quantize(Q, ROUND_HALF_EVEN)
            assert row["cost_per_unit"] == expected
    assert all(r["cost_per_unit"] is None for k, r in rows.items() if k[:2] == ("2026-10-02", "web"))  # value 0
    payments = _direct_cost(config.lake_url, "2026-10-02", "payments")
    for currency, cost in payments.items():
        assert rows[("2026-10-02", "payments", "customers", currency)]["per"] == 1
        assert rows[("2026-10-02", "payments", "customers", currency)]["cost"] == cost
    nobody = [r for k, r in rows.items() if k[1] == "nobody"]
    assert [(r["cost"], r["currency"]) for r in nobody] == [(0, None)]  # a key that spent nothing


def test_with_a_reporting_currency_one_row_per_key_and_metric(views_config: ConfigFactory, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(METRICS)
    config = views_config(
        unit_costs={"metrics_url": str(metrics)}, reporting={"currency": "EUR", "fx_rates_url": str(FX_RATES)}
    )
    published = _publish(config)
    assert published is not None
    table = published[1]
    assert set(table["currency"]) == {"EUR"} and table.height == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("date,squad,metric,value\n2026-10-01,web,requests,1\n", "header must be"),
        ("date,team,metric,value\n2026-10-01,web,requests,lots\n", "line\\(s\\) 2"),
        ("date,team,metric,value\n01/10/2026,web,requests,1\n", "line\\(s\\) 2"),
    ],
)
def test_a_bad_metrics_file_names_what_is_wrong(
    views_config: ConfigFactory, tmp_path: Path, content: str, message: str
) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(content)
    with pytest.raises(MetricsFileError, match=message):
        _publish(views_config(unit_costs={"metrics_url": str(metrics)}))


def test_without_metrics_nothing_is_written(views_config: ConfigFactory) -> None:
    assert _publish(views_config()) is None


def test_a_scale_must_be_positive(views_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match="unit_costs"):
        views_config(unit_costs={"metrics_url": "m.csv", "per": {"requests": 0}})
