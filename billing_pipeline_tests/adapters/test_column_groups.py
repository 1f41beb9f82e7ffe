"""The adapters' FOCUS column groups, each on its own: the decisions a whole-file test does not spell out."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from billing_pipeline.adapters.aws.columns import commitment_columns, cost_columns, keep_quantities
from billing_pipeline.adapters.aws.frame import CurFrame
from billing_pipeline.adapters.aws.line_items import classify_line_items
from billing_pipeline.adapters.azure.columns import Lookups, classify_charge
from billing_pipeline.adapters.azure.columns import cost_columns as azure_cost_columns
from billing_pipeline.adapters.azure.headers import AzureFields
from billing_pipeline.adapters.base import in_column_order
from billing_pipeline.adapters.gcp.columns import CREDIT_NULLS, credit_rows


def _cur(**columns: list[str]) -> CurFrame:
    return CurFrame(pl.LazyFrame(columns, schema={name: pl.String for name in columns}))


def _select(frame: pl.LazyFrame, columns: dict[str, pl.Expr]) -> dict[str, list]:
    return frame.select(*[expr.alias(name) for name, expr in columns.items()]).collect().to_dict(as_series=False)


def _select_cur(cur: CurFrame, columns: dict[str, pl.Expr]) -> dict[str, list]:
    """The columns from the CUR frame as it is once they are built (with the values they keep)."""
    return _select(cur.frame, columns)


def test_an_unused_reservation_fee_is_usage_with_its_unused_hours_as_commitment_quantity() -> None:
    cur = _cur(
        line_item_line_item_type=["RIFee"],
        line_item_unblended_cost=["10"],
        reservation_reservation_a_r_n=["arn:ri"],
        reservation_unused_amortized_upfront_fee_for_billing_period=["2"],
        reservation_unused_recurring_fee=["3"],
        reservation_unused_quantity=["7"],
        line_item_usage_amount=["24"],
    )
    item = classify_line_items(cur)
    quantities = keep_quantities(cur, item)
    out = _select_cur(cur, {"category": item.category, **commitment_columns(cur, item, quantities)})
    assert out["category"] == ["Usage"]  # a Purchase would have to have EffectiveCost 0
    assert out["CommitmentDiscountStatus"] == ["Unused"]
    assert out["CommitmentDiscountQuantity"] == [Decimal(7)] and out["CommitmentDiscountUnit"] == ["Hours"]
    assert _select_cur(cur, {"effective": item.effective})["effective"] == [Decimal(5)]  # unused upfront + recurring


def test_a_savings_plan_negation_costs_nothing_before_commitment_discounts() -> None:
    cur = _cur(
        line_item_line_item_type=["SavingsPlanNegation"],
        line_item_unblended_cost=["-4"],
        pricing_public_on_demand_cost=["4"],
        savings_plan_savings_plan_a_r_n=["arn:sp"],
    )
    item = classify_line_items(cur)
    out = _select_cur(cur, cost_columns(cur, item))
    assert out["BilledCost"] == [Decimal(-4)]
    assert out["ListCost"] == [Decimal(0)] and out["ContractedCost"] == [Decimal(0)] and out["EffectiveCost"] == [0]


def test_amortized_commitment_usage_is_not_billed_but_keeps_its_contracted_cost() -> None:
    raw = pl.LazyFrame(
        {
            "CostInBillingCurrency": ["6", "6"],
            "ChargeType": ["Usage", "Usage"],
            "PricingModel": ["Reservation", "OnDemand"],
            "ReservationId": ["r-1", None],
            "x_ExportVersion": ["AmortizedCost:run-1", "AmortizedCost:run-1"],
        }
    )
    get = AzureFields(raw.collect_schema())
    charge = classify_charge(get, Lookups.of(raw, get))
    out = _select(raw, azure_cost_columns(get, charge))
    assert out["BilledCost"] == [Decimal(0), Decimal(6)]  # the purchase is billed, in ActualCost
    assert out["ContractedCost"] == [Decimal(6), Decimal(6)]
    assert out["EffectiveCost"] == [Decimal(6), Decimal(6)]


def test_a_gcp_credit_row_carries_its_amount_as_every_cost_and_no_price() -> None:
    credit = {
        "name": "Sustained use",
        "amount": -1.5,
        "full_name": None,
        "id": "c-1",
        "type": "SUSTAINED_USAGE_DISCOUNT",
    }
    costs = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingCurrencyEffectiveCost")
    charges = pl.LazyFrame(
        {
            **{name: [Decimal(10)] for name in costs},
            **{name: [None] for name in CREDIT_NULLS},
            "ChargeCategory": ["Usage"],
            "ChargeDescription": ["VM core"],
            "x_CreditId": [None],
            "x_CreditType": [None],
            "_bad_reason": [None],
            "_gcp_row": [{"cost": 10.0}],
            "_gcp_part": [0],
            "_gcp_credits": [[credit]],
            "_gcp_index": [[1]],
        },
        schema_overrides={"ListUnitPrice": pl.Decimal(38, 18), "_gcp_part": pl.Int32, "_gcp_index": pl.List(pl.Int32)},
    )
    row = credit_rows(charges).collect().row(0, named=True)
    assert row["ChargeCategory"] == "Credit" and row["ChargeDescription"] == "Sustained use"
    assert {row[name] for name in costs} == {Decimal("-1.5")}
    assert row["ListUnitPrice"] is None and row["_gcp_part"] == 1 and row["x_CreditId"] == "c-1"


def test_a_column_group_and_the_column_order_must_agree() -> None:
    with pytest.raises(ValueError, match="ListCost"):
        in_column_order({"BilledCost": pl.lit(1)}, ("BilledCost", "ListCost"))
