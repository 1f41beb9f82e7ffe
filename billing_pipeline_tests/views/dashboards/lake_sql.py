"""The lake's figures, read independently of the code under test: DuckDB SQL over the Parquet files and the
ECB-layout rates file, and the state folders counted with pathlib."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb

from ..conftest import FX_RATES

ENRICHED_ROWS = """
    SELECT e.date, e.BillingCurrency, e.ProviderName, e.unallocated,
           CAST(e.BilledCost AS DOUBLE) * CASE WHEN e.BillingCurrency = 'USD' THEN 1.0
                                              WHEN e.BillingCurrency = 'EUR' THEN r.USD END AS usd
    FROM read_parquet($glob, hive_partitioning = true, union_by_name = true) e
    ASOF JOIN read_csv($rates, header = true) r ON e.date >= r.Date
    WHERE e.date BETWEEN $first AND $last
"""


def _connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _params(lake: Path, first: dt.date, last: dt.date) -> dict[str, object]:
    return {"glob": f"{lake}/tag_enriched_costs/*/*/*.parquet", "rates": str(FX_RATES), "first": first, "last": last}


def currencies(lake: Path, first: dt.date, last: dt.date) -> set[str]:
    with _connection() as c:
        rows = c.execute(
            "SELECT DISTINCT BillingCurrency FROM read_parquet($glob, hive_partitioning = true) "
            "WHERE date BETWEEN $first AND $last",
            {k: v for k, v in _params(lake, first, last).items() if k != "rates"},
        ).fetchall()
    return {r[0] for r in rows}


def usd_total(lake: Path, first: dt.date, last: dt.date) -> float:
    with _connection() as c:
        return c.execute(f"SELECT sum(usd) FROM ({ENRICHED_ROWS})", _params(lake, first, last)).fetchone()[0]


def usd_by_provider(lake: Path, first: dt.date, last: dt.date) -> dict[str, float]:
    with _connection() as c:
        rows = c.execute(
            f"SELECT ProviderName, sum(usd) FROM ({ENRICHED_ROWS}) GROUP BY 1", _params(lake, first, last)
        ).fetchall()
    return dict(rows)


def unallocated_percent(lake: Path, first: dt.date, last: dt.date) -> float:
    with _connection() as c:
        return c.execute(
            f"SELECT 100 * sum(CASE WHEN unallocated THEN usd ELSE 0 END) / sum(usd) FROM ({ENRICHED_ROWS})",
            _params(lake, first, last),
        ).fetchone()[0]


def billing_currency_totals(lake: Path, first: dt.date, last: dt.date) -> dict[str, Decimal]:
    with _connection() as c:
        rows = c.execute(
            "SELECT BillingCurrency, sum(BilledCost) FROM read_parquet($glob, hive_partitioning = true, "
            "union_by_name = true) WHERE date BETWEEN $first AND $last GROUP BY 1",
            {k: v for k, v in _params(lake, first, last).items() if k != "rates"},
        ).fetchall()
    return {currency: Decimal(str(total)) for currency, total in rows}


def top_teams_usd(lake: Path, month: str, limit: int = 10) -> list[tuple[str, float]]:
    with _connection() as c:
        return c.execute(
            "SELECT coalesce(team, '(unsplit)'), sum(CAST(billed_cost_reporting AS DOUBLE)) AS usd "
            f"FROM read_parquet('{lake}/monthly_chargeback/month={month}/*.parquet') GROUP BY 1 ORDER BY usd DESC "
            f"LIMIT {limit}"
        ).fetchall()


def bad_sli_evaluations(lake: Path, first: dt.date, last: dt.date) -> int:
    with _connection() as c:
        return c.execute(
            "SELECT count(*) FROM read_parquet($glob, hive_partitioning = false) "
            "WHERE date BETWEEN $first AND $last AND good = false",
            {"glob": f"{lake}/slo_error_budgets/*/*.parquet", "first": first, "last": last},
        ).fetchone()[0]


def delivery_records(lake: Path, period: str) -> int:
    return len(list((lake / "_state" / "deliveries").glob(f"source=*/period={period}/*.json")))
