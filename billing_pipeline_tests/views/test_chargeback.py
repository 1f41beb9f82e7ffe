"""`monthly_chargeback` on the generator's data: the statements add up to the month's total exactly, in each
billing currency and in the reporting currency, against sums computed independently from the lake with
DuckDB (and, for the reporting currency, Python's Decimal over DuckDB's rows and the csv module's rates)."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetKey, instance_for_test

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.storage import Store
from billing_pipeline.views.chargeback import chargeback_url, publish_chargeback, report_csv_url
from billing_pipeline.views.fx import MissingRateError
from billing_pipeline.views.names import CHARGEBACK, MONTHLY_JOB, MONTHLY_SCHEDULE

from .conftest import FX_RATES, MONTH, ConfigFactory

Q = Decimal("1e-18")
REPORTING = {"reporting": {"currency": "USD", "fx_rates_url": str(FX_RATES)}}
EVIL_OWNER = '=HYPERLINK("http://evil.example","x")'


def _lake_rows(lake: str) -> list[tuple[dt.date, str, Decimal, Decimal]]:
    """(usage day, currency, billed, effective) of every enriched row of the month, read by DuckDB."""
    glob = f"{lake}/tag_enriched_costs/*/*/*.parquet"
    query = (
        "SELECT date, BillingCurrency, BilledCost, EffectiveCost FROM read_parquet(?, hive_partitioning = true, "
        "union_by_name = true) WHERE date BETWEEN DATE '2026-10-01' AND DATE '2026-10-31'"
    )
    with duckdb.connect() as connection:
        return connection.execute(query, [glob]).fetchall()


def _lake_totals(lake: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Per billing currency: the month's billed and effective totals, summed by DuckDB."""
    glob = f"{lake}/tag_enriched_costs/*/*/*.parquet"
    query = (
        "SELECT BillingCurrency, sum(BilledCost), sum(EffectiveCost) FROM read_parquet(?, hive_partitioning = true, "
        "union_by_name = true) WHERE date BETWEEN DATE '2026-10-01' AND DATE '2026-10-31' GROUP BY 1"
    )
    with duckdb.connect() as connection:
        return {c: (Decimal(b), Decimal(e)) for c, b, e in connection.execute(query, [glob]).fetchall()}


def _usd_rate(day: dt.date, currency: str) -> Decimal:
    """The cross rate to USD of a usage day, from the fixture read with the csv module: the last business
    day on or before it, rounded half to even to 18 decimals (the stated rule)."""
    with open(FX_RATES, newline="") as handle:
        rows = {r["Date"]: r for r in csv.DictReader(handle)}
    published = max(d for d in rows if d <= day.isoformat())
    if currency == "USD":
        return Decimal(1)
    base = Decimal(1) if currency == "EUR" else Decimal(rows[published][currency])
    with localcontext() as context:
        context.prec = 60
        return (Decimal(rows[published]["USD"]) / base).quantize(Q, ROUND_HALF_EVEN)


def _money(frame: pl.DataFrame, column: str) -> Decimal:
    return sum(frame[column].to_list(), Decimal(0))


def test_statements_add_up_to_the_months_total_in_every_currency(views_config: ConfigFactory) -> None:
    config = views_config(**REPORTING)
    published = publish_chargeback(config, Store(), MONTH)
    table = published.statements
    expected = _lake_totals(config.lake_url)
    assert set(expected) == {"USD", "EUR"}  # the generator bills Azure and part of the FOCUS export in EUR
    for currency, (billed, effective) in expected.items():
        mine = table.filter(pl.col("billing_currency") == currency)
        assert (_money(mine, "billed_cost"), _money(mine, "effective_cost")) == (billed, effective), currency

    rates: dict[tuple[dt.date, str], Decimal] = {}
    reporting = defaultdict(lambda: Decimal(0))
    with localcontext() as context:
        context.prec = 80
        for day, currency, billed, effective in _lake_rows(config.lake_url):
            rate = rates.setdefault((day, currency), _usd_rate(day, currency))
            reporting["billed"] += (Decimal(billed) * rate).quantize(Q, ROUND_HALF_EVEN)
            reporting["effective"] += (Decimal(effective) * rate).quantize(Q, ROUND_HALF_EVEN)
    assert _money(table, "billed_cost_reporting") == reporting["billed"]
    assert _money(table, "effective_cost_reporting") == reporting["effective"]
    assert set(table["reporting_currency"]) == {"USD"}
    assert any(day.weekday() >= 5 for day, _ in rates)  # weekend days were converted (at Friday's rate)


def test_shared_costs_are_split_by_their_rules_and_nothing_stays_unallocated(views_config: ConfigFactory) -> None:
    config = views_config(
        **REPORTING,
        chargeback={
            "tax": {"method": "weights", "weights": {"platform": 1, "web": 3}},
            "support": {"method": "even"},
            "unallocated": {"method": "proportional"},
        },
    )
    table = publish_chargeback(config, Store(), MONTH).statements
    kinds = set(table["cost_kind"])
    assert {"direct", "unallocated", "support", "tax", "unused_commitment"} <= kinds
    taxes = table.filter(pl.col("cost_kind") == "tax")
    assert set(taxes["team"]) == {"platform", "web"} and set(taxes["split"]) == {"weights"}
    by_team = {t: _money(taxes.filter(pl.col("team") == t), "billed_cost") for t in ("platform", "web")}
    assert abs(by_team["web"] - 3 * by_team["platform"]) < Decimal("1e-15") * 50
    support_teams = table.filter(pl.col("cost_kind") == "support")["team"]
    direct_usd = set(table.filter((pl.col("cost_kind") == "direct") & (pl.col("billing_currency") == "USD"))["team"])
    assert set(support_teams) == direct_usd  # even among the owners with direct spend in the currency
    assert table.filter(pl.col("team").is_null()).is_empty()  # every pool found an owner
    shared = table.filter(pl.col("cost_kind") != "direct")
    assert shared.select(pl.col("cost_center", "product", "environment").is_null().all()).row(0) == (True,) * 3


def test_parquet_and_finance_csv_with_formula_injection_neutralised(views_config: ConfigFactory) -> None:
    config = views_config(chargeback={"tax": {"method": "weights", "weights": {EVIL_OWNER: 1}}})
    published = publish_chargeback(config, Store(), MONTH)
    assert published.parquet_url == chargeback_url(config.lake_url, MONTH)
    assert published.parquet_url.endswith("monthly_chargeback/month=2026-10/part-0.parquet")
    assert published.csv_url == report_csv_url(config.lake_url, MONTH)
    assert published.csv_url.endswith("reports/2026-10/chargeback.csv")
    assert pl.read_parquet(published.parquet_url).equals(published.statements)
    with open(published.csv_url, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == published.statements.height
    teams = {r["team"] for r in rows}
    assert "'" + EVIL_OWNER in teams and EVIL_OWNER not in teams
    assert (
        sum(Decimal(r["billed_cost"]) for r in rows if r["billing_currency"] == "EUR")
        == _lake_totals(config.lake_url)["EUR"][0]
    )
    # without `reporting`, the reporting columns are empty (not 0)
    assert published.statements["billed_cost_reporting"].null_count() == published.statements.height


def test_a_missing_rate_fails_naming_currency_and_day(views_config: ConfigFactory, tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    # JPY's last rate is from 2026-09-21: ten days before the month's first usage day, older than 7 days
    rates.write_text("Date,USD,JPY,\n2026-10-02,1.1,N/A,\n2026-10-01,1.2,N/A,\n2026-09-21,1.2,160.1,\n")
    config = views_config(reporting={"currency": "JPY", "fx_rates_url": str(rates), "max_rate_age_days": 7})
    with pytest.raises(MissingRateError, match=r"JPY on 2026-10-01"):
        publish_chargeback(config, Store(), MONTH)
    assert not Path(chargeback_url(config.lake_url, MONTH)).exists()  # nothing published


def test_billing_monthly_materializes_the_month_with_paths_in_metadata(views_config: ConfigFactory) -> None:
    config = views_config(**REPORTING)
    assert config.config_path is not None
    defs = build_definitions(config.config_path)
    job = defs.resolve_job_def(MONTHLY_JOB)
    with instance_for_test() as instance:
        result = job.execute_in_process(partition_key=MONTH.isoformat(), instance=instance)
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey(CHARGEBACK))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["path"].value == chargeback_url(config.lake_url, MONTH)
    assert metadata["csv_path"].value == report_csv_url(config.lake_url, MONTH)
    assert metadata["billed_cost_usd_reporting"].value > metadata["billed_cost_usd"].value > 0
    schedule = defs.resolve_schedule_def(MONTHLY_SCHEDULE)
    assert schedule.cron_schedule == "0 8 * * *"
