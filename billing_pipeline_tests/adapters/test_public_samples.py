"""The public AWS legacy CUR and FOCUS 1.0 samples through the spine, checked against totals
computed independently with the csv module and Python decimals."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from decimal import Decimal

import polars as pl

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.lake import slice_url

from ..conftest import AWS_SAMPLE, FOCUS_SAMPLE, run_spine

NULLS = {"", "NULL", "None"}


def _dec(value: str) -> Decimal:
    return Decimal(0) if value in NULLS else Decimal(value)


def _expected_effective(row: dict[str, str]) -> Decimal:
    """DOMAIN.md's amortization table, row by row in plain Python."""
    kind = row["lineItem/LineItemType"]
    if kind == "SavingsPlanCoveredUsage":
        return _dec(row["savingsPlan/SavingsPlanEffectiveCost"])
    if kind == "SavingsPlanRecurringFee":
        return _dec(row["savingsPlan/TotalCommitmentToDate"]) - _dec(row["savingsPlan/UsedCommitment"])
    if kind in ("SavingsPlanNegation", "SavingsPlanUpfrontFee"):
        return Decimal(0)
    if kind == "DiscountedUsage":
        return _dec(row["reservation/EffectiveCost"])
    if kind == "RIFee":
        return _dec(row["reservation/UnusedAmortizedUpfrontFeeForBillingPeriod"]) + _dec(
            row["reservation/UnusedRecurringFee"]
        )
    if kind == "Fee" and row.get("reservation/ReservationARN", "") not in NULLS:
        return Decimal(0)
    return _dec(row["lineItem/UnblendedCost"])


def _slice_totals(lake: str, day: dt.date, source: str) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    frame = pl.read_parquet(slice_url(lake, "normalized_line_items", day, source))
    grouped = frame.group_by("BillingAccountId", "BillingCurrency").agg(
        pl.col("BilledCost").sum(), pl.col("EffectiveCost").sum(), pl.len()
    )
    return {(r[0], r[1]): (Decimal(str(r[2])), Decimal(str(r[3])), r[4]) for r in grouped.iter_rows()}


def test_legacy_cur_sample_is_conserved_exactly_every_day(sample_cur_config) -> None:
    expected: dict[tuple[dt.date, str, str], list] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    with open(AWS_SAMPLE, newline="") as handle:
        for row in csv.DictReader(handle):
            day = dt.date.fromisoformat(row["lineItem/UsageStartDate"][:10])
            bucket = expected[(day, row["bill/PayerAccountId"], row["lineItem/CurrencyCode"])]
            bucket[0] += _dec(row["lineItem/UnblendedCost"])
            bucket[1] += _expected_effective(row)
            bucket[2] += 1
    days = sorted({key[0] for key in expected})
    assert len(days) > 5
    for day in days:
        run = run_spine(sample_cur_config, day)
        assert (
            run.normalized[0].raw_rows
            == run.normalized[0].rows + run.normalized[0].quarantined_rows + run.normalized[0].duplicate_rows
        )
        actual = _slice_totals(sample_cur_config.lake_url, day, "sample_cur")
        wanted = {(k[1], k[2]): tuple(v) for k, v in expected.items() if k[0] == day}
        assert actual == wanted, day
        assert (run.reconciliation["conservation_delta"] == 0).all()
        assert set(run.reconciliation["status"]) == {"no_invoice_yet"}


def test_focus_sample_is_conserved_and_typed(sample_focus_config) -> None:
    expected: dict[tuple[dt.date, str, str], Decimal] = defaultdict(Decimal)
    with open(FOCUS_SAMPLE, newline="") as handle:
        for row in csv.DictReader(handle):
            day = dt.date.fromisoformat(row["ChargePeriodStart"][:10])
            expected[(day, row["BillingAccountId"], row["BillingCurrency"])] += _dec(row["BilledCost"])
    days = sorted({key[0] for key in expected})
    for day in days[:6]:
        run_spine(sample_focus_config, day)
        actual = {k: v[0] for k, v in _slice_totals(sample_focus_config.lake_url, day, "sample_focus").items()}
        assert actual == {(k[1], k[2]): v for k, v in expected.items() if k[0] == day}
    frame = pl.read_parquet(slice_url(sample_focus_config.lake_url, "normalized_line_items", days[0], "sample_focus"))
    assert frame.schema["BilledCost"] == MONEY
    assert frame.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
    assert "x_Id" in frame.columns  # the sample's non-FOCUS column is kept as an x_ extra
    assert frame["PricingCurrency"].null_count() == 0  # derived from BillingCurrency for a 1.0 export
