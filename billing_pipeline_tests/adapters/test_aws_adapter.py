"""The CUR -> FOCUS mapping: names, charge categories, and EffectiveCost by AWS's amortization rules."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from billing_pipeline.adapters.aws import AwsCur2Adapter, AwsLegacyCurAdapter, snake_case_legacy

LEGACY = AwsLegacyCurAdapter()
CUR2 = AwsCur2Adapter()


@pytest.mark.parametrize(
    ("legacy", "snake"),
    [
        ("identity/LineItemId", "identity_line_item_id"),
        ("lineItem/UnblendedCost", "line_item_unblended_cost"),
        ("reservation/ReservationARN", "reservation_reservation_a_r_n"),
        ("savingsPlan/SavingsPlanEffectiveCost", "savings_plan_savings_plan_effective_cost"),
        ("pricing/publicOnDemandCost", "pricing_public_on_demand_cost"),
        ("product/regionCode", "product_region_code"),
        ("bill/PayerAccountId", "bill_payer_account_id"),
        (
            "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod",
            "reservation_unused_amortized_upfront_fee_for_billing_period",
        ),
    ],
)
def test_legacy_names_become_the_athena_and_cur2_spelling(legacy: str, snake: str) -> None:
    assert snake_case_legacy(legacy) == snake


def _legacy_row(line_type: str, unblended: str, **columns: str) -> dict[str, str]:
    row = {
        "identity/LineItemId": f"id-{line_type}-{unblended}",
        "identity/TimeInterval": "2026-10-05T00:00:00Z/2026-10-06T00:00:00Z",
        "bill/PayerAccountId": "111",
        "lineItem/UsageAccountId": "222",
        "lineItem/LineItemType": line_type,
        "lineItem/UsageStartDate": "2026-10-05T00:00:00Z",
        "lineItem/UsageEndDate": "2026-10-06T00:00:00Z",
        "bill/BillingPeriodStartDate": "2026-10-01T00:00:00Z",
        "bill/BillingPeriodEndDate": "2026-11-01T00:00:00Z",
        "lineItem/CurrencyCode": "USD",
        "lineItem/UnblendedCost": unblended,
        "lineItem/ProductCode": "AmazonEC2",
        "savingsPlan/SavingsPlanEffectiveCost": "",
        "savingsPlan/TotalCommitmentToDate": "",
        "savingsPlan/UsedCommitment": "",
        "savingsPlan/SavingsPlanARN": "",
        "reservation/EffectiveCost": "",
        "reservation/ReservationARN": "",
        "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "",
        "reservation/UnusedRecurringFee": "",
    }
    row.update(columns)
    return row


# (row, expected EffectiveCost) — the table in DOMAIN.md, one case per rule, values chosen by hand
CASES = [
    (_legacy_row("Usage", "1.25"), "1.25"),
    (
        _legacy_row(
            "SavingsPlanCoveredUsage",
            "2.00",
            **{"savingsPlan/SavingsPlanEffectiveCost": "1.40", "savingsPlan/SavingsPlanARN": "arn:sp"},
        ),
        "1.40",
    ),
    (
        _legacy_row(
            "SavingsPlanRecurringFee",
            "10.00",
            **{
                "savingsPlan/TotalCommitmentToDate": "10.00",
                "savingsPlan/UsedCommitment": "7.50",
                "savingsPlan/SavingsPlanARN": "arn:sp",
            },
        ),
        "2.50",
    ),
    (_legacy_row("SavingsPlanNegation", "-2.00", **{"savingsPlan/SavingsPlanARN": "arn:sp"}), "0"),
    (_legacy_row("SavingsPlanUpfrontFee", "100.00"), "0"),
    (
        _legacy_row(
            "DiscountedUsage", "0", **{"reservation/EffectiveCost": "0.33", "reservation/ReservationARN": "arn:ri"}
        ),
        "0.33",
    ),
    (
        _legacy_row(
            "RIFee",
            "30.00",
            **{
                "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": "1.10",
                "reservation/UnusedRecurringFee": "0.90",
                "reservation/ReservationARN": "arn:ri",
            },
        ),
        "2.00",
    ),
    (_legacy_row("Fee", "500.00", **{"reservation/ReservationARN": "arn:ri"}), "0"),
    (_legacy_row("Fee", "20.00"), "20.00"),
    (_legacy_row("Tax", "3.21"), "3.21"),
    (_legacy_row("Credit", "-5.00"), "-5.00"),
    (_legacy_row("Refund", "-1.00"), "-1.00"),
]


def test_effective_cost_follows_the_amortization_table() -> None:
    raw = pl.DataFrame([row for row, _ in CASES]).lazy()
    focus = LEGACY.to_focus(raw).collect()
    assert [Decimal(str(v)) for v in focus["EffectiveCost"]] == [Decimal(e) for _, e in CASES]
    assert [Decimal(str(v)) for v in focus["BilledCost"]] == [
        Decimal(row["lineItem/UnblendedCost"]) for row, _ in CASES
    ]
    assert focus["_bad_reason"].null_count() == len(CASES)


def test_charge_categories_and_commitment_columns() -> None:
    focus = LEGACY.to_focus(pl.DataFrame([row for row, _ in CASES]).lazy()).collect()
    by_type = dict(zip([r["lineItem/LineItemType"] for r, _ in CASES], focus.iter_rows(named=True), strict=False))
    assert by_type["Usage"]["ChargeCategory"] == "Usage"
    assert by_type["Tax"]["ChargeCategory"] == "Tax"
    assert by_type["Credit"]["ChargeCategory"] == "Credit"
    # A recurring commitment fee's EffectiveCost is the unused commitment: FOCUS books that as Usage
    # with status Unused (a Purchase must have EffectiveCost 0); the upfront fees stay Purchases.
    for fee in ("RIFee", "SavingsPlanRecurringFee"):
        assert by_type[fee]["ChargeCategory"] == "Usage"
        assert by_type[fee]["CommitmentDiscountStatus"] == "Unused"
        assert by_type[fee]["ConsumedQuantity"] is None
        assert by_type[fee]["ChargeFrequency"] == "Recurring"
    assert by_type["Fee"]["ChargeCategory"] == "Purchase"  # the RI upfront fee (last Fee case: no ARN)
    assert by_type["SavingsPlanUpfrontFee"]["ChargeCategory"] == "Purchase"
    assert by_type["SavingsPlanUpfrontFee"]["CommitmentDiscountStatus"] is None
    assert by_type["SavingsPlanCoveredUsage"]["CommitmentDiscountStatus"] == "Used"
    assert by_type["SavingsPlanNegation"]["CommitmentDiscountStatus"] == "Used"
    assert by_type["SavingsPlanNegation"]["ListCost"] == 0  # the list price sits on the covered row
    assert by_type["DiscountedUsage"]["PricingCategory"] == "Committed"
    assert by_type["Usage"]["PricingCategory"] == "Standard"
    assert by_type["Tax"]["PricingCategory"] is None and by_type["Tax"]["SkuId"] is None
    assert by_type["SavingsPlanCoveredUsage"]["CommitmentDiscountId"] == "arn:sp"
    assert by_type["SavingsPlanCoveredUsage"]["CommitmentDiscountType"] == "Savings Plan"
    assert by_type["DiscountedUsage"]["CommitmentDiscountCategory"] == "Usage"
    assert by_type["Usage"]["CommitmentDiscountId"] is None
    assert by_type["Usage"]["ServiceCategory"] == "Compute"


@pytest.mark.parametrize("bad", ["12,50", "abc", "1.2.3"])
def test_unparseable_cost_is_flagged_with_column_and_value(bad: str) -> None:
    focus = LEGACY.to_focus(pl.DataFrame([_legacy_row("Usage", bad)]).lazy()).collect()
    reason = focus["_bad_reason"].item()
    assert "line_item_unblended_cost" in reason and bad in reason


@pytest.mark.parametrize("placeholder", ["", "None", "NULL"])
def test_placeholder_in_an_optional_money_column_is_null_not_bad(placeholder: str) -> None:
    row = _legacy_row("Usage", "1.00", **{"reservation/EffectiveCost": placeholder})
    focus = LEGACY.to_focus(pl.DataFrame([row]).lazy()).collect()
    assert focus["_bad_reason"].item() is None


def test_cur2_map_columns_feed_tags_and_product_name() -> None:
    frame = pl.DataFrame(
        {
            "identity_line_item_id": ["a"],
            "identity_time_interval": ["2026-10-05T00:00:00Z/2026-10-06T00:00:00Z"],
            "line_item_line_item_type": ["Usage"],
            "line_item_unblended_cost": [0.1],
            "line_item_usage_start_date": ["2026-10-05T00:00:00Z"],
            "bill_payer_account_id": ["111"],
            "line_item_currency_code": ["USD"],
        }
    ).with_columns(
        pl.Series(
            "resource_tags",
            [[{"key": "user_team", "value": "web"}]],
            dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
        ).cast(pl.Map(pl.String, pl.String)),
        pl.Series(
            "product",
            [[{"key": "product_name", "value": "Amazon Elastic Compute Cloud"}]],
            dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
        ).cast(pl.Map(pl.String, pl.String)),
    )
    focus = CUR2.to_focus(frame.lazy()).collect()
    assert focus["Tags"].item() == '{"user_team":"web"}'
    assert focus["ServiceName"].item() == "Amazon Elastic Compute Cloud"
    assert focus["BilledCost"].item() == Decimal("0.1")  # the float 0.1, not its binary expansion
