"""Reference rates in the ECB's layout: parsing, the rate of a usage day, missing rates, the rounding rule."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import polars as pl
import pytest

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.views.fx import MissingRateError, cross_rates, parse_ecb_rates, to_reporting

from .conftest import FX_RATES

Q = Decimal("1e-18")


def _needed(*pairs: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": [dt.date.fromisoformat(d) for d, _ in pairs], "currency": [c for _, c in pairs]},
        schema={"date": pl.Date, "currency": pl.String},
    )


def _fixture_rates() -> dict[tuple[str, str], Decimal]:
    """(date, currency) -> rate, read with the csv module (the independent reading)."""
    with open(FX_RATES, newline="") as handle:
        return {
            (row["Date"], currency): Decimal(value)
            for row in csv.DictReader(handle)
            for currency, value in row.items()
            if currency not in ("Date", "") and value not in ("N/A", "", None)
        }


def test_the_ecb_layout_parses_with_its_trailing_comma_n_a_and_euro_base() -> None:
    rates = parse_ecb_rates(FX_RATES.read_bytes())
    assert set(rates["currency"]) == {"USD", "JPY", "GBP", "CHF", "EUR"}  # RUB is N/A throughout, "" is no column
    assert rates.schema["rate"] == MONEY
    assert rates.filter(pl.col("currency") == "EUR")["rate"].unique().to_list() == [Decimal(1)]
    friday = rates.filter((pl.col("rate_date") == dt.date(2026, 10, 2)) & (pl.col("currency") == "USD"))
    assert friday["rate"].item() == _fixture_rates()[("2026-10-02", "USD")]


def test_the_ecb_zip_is_read_like_its_csv() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("eurofxref-hist.csv", FX_RATES.read_bytes())
    assert parse_ecb_rates(buffer.getvalue()).equals(parse_ecb_rates(FX_RATES.read_bytes()))


def test_a_day_converts_at_the_last_rate_published_on_or_before_it() -> None:
    rates = parse_ecb_rates(FX_RATES.read_bytes())
    fixture = _fixture_rates()
    got = cross_rates(
        _needed(("2026-10-04", "EUR"), ("2026-10-02", "EUR"), ("2026-10-14", "GBP"), ("2026-10-05", "USD")),
        rates,
        "USD",
        max_age_days=7,
    )
    by_key = {(r["date"].isoformat(), r["currency"]): r["fx_rate"] for r in got.iter_rows(named=True)}
    with localcontext() as context:
        context.prec = 60
        sunday = (fixture[("2026-10-02", "USD")] / 1).quantize(Q, ROUND_HALF_EVEN)  # Sunday -> Friday's rate
        gbp_gap = (fixture[("2026-10-14", "USD")] / fixture[("2026-10-13", "GBP")]).quantize(Q, ROUND_HALF_EVEN)
    assert by_key[("2026-10-04", "EUR")] == sunday == by_key[("2026-10-02", "EUR")]
    assert by_key[("2026-10-14", "GBP")] == gbp_gap  # GBP is N/A that day: its previous rate, USD the day's
    assert by_key[("2026-10-05", "USD")] == Decimal(1)  # the reporting currency itself: exactly 1


@pytest.mark.parametrize(
    ("needed", "named"),
    [
        (("2026-10-05", "RUB"), "RUB on 2026-10-05"),  # N/A on every day
        (("2026-09-01", "JPY"), "JPY on 2026-09-01"),  # before the first published day
        (("2027-02-01", "JPY"), "JPY on 2027-02-01"),  # the last rate is older than max_rate_age_days
        (("2026-10-05", "XYZ"), "XYZ on 2026-10-05"),  # a currency the file does not have
    ],
)
def test_a_missing_rate_is_an_error_naming_currency_and_day(needed: tuple[str, str], named: str) -> None:
    rates = parse_ecb_rates(FX_RATES.read_bytes())
    with pytest.raises(MissingRateError, match=named):
        cross_rates(_needed(needed), rates, "EUR", max_age_days=7)


def test_a_missing_reporting_rate_names_the_reporting_currency() -> None:
    rates = parse_ecb_rates(FX_RATES.read_bytes())
    with pytest.raises(MissingRateError, match="SEK on 2026-10-05"):
        cross_rates(_needed(("2026-10-05", "USD")), rates, "SEK", max_age_days=7)


def test_amounts_convert_by_the_stated_rounding_rule() -> None:
    """amount x cross rate, each rounded half to even to 18 decimals: checked against Python's Decimal."""
    rates = parse_ecb_rates(FX_RATES.read_bytes())
    fx = cross_rates(_needed(("2026-10-01", "JPY"), ("2026-10-01", "USD")), rates, "GBP", max_age_days=7)
    amounts = [Decimal("123456.123456789012345678"), Decimal("-0.000000000000000005"), Decimal("0.1"), Decimal(0)]
    frame = pl.DataFrame(
        {
            "date": [dt.date(2026, 10, 1)] * 8,
            "BillingCurrency": ["JPY"] * 4 + ["USD"] * 4,
            "cost": amounts * 2,
        },
        schema={"date": pl.Date, "BillingCurrency": pl.String, "cost": MONEY},
    )
    got = to_reporting(frame.lazy(), fx, {"cost": "cost_gbp"}).collect()
    fixture = _fixture_rates()
    with localcontext() as context:
        context.prec = 80
        for row in got.iter_rows(named=True):
            cross = (fixture[("2026-10-01", "GBP")] / fixture[("2026-10-01", row["BillingCurrency"])]).quantize(
                Q, ROUND_HALF_EVEN
            )
            assert row["cost_gbp"] == (row["cost"] * cross).quantize(Q, ROUND_HALF_EVEN), row
