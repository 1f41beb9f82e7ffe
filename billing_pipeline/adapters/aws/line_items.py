"""What kind of charge each CUR line item is: its type, billed and effective cost, and commitment.

Effective (amortized) cost follows the rules AWS's own dashboards use (DOMAIN.md); BilledCost and
EffectiveCost are the CUR's numbers, nothing here changes them. RIFee / SavingsPlanRecurringFee
carry the unused commitment as EffectiveCost: FOCUS books unused commitment as a Usage row with
CommitmentDiscountStatus "Unused" (a Purchase that covers future charges has EffectiveCost 0), so
these rows are Usage/Unused. Upfront fees stay Purchases with EffectiveCost 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing_pipeline.adapters.aws.frame import CurFrame
from billing_pipeline.platform.focus import MONEY

USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation")
PURCHASE_TYPES = ("SavingsPlanUpfrontFee", "SavingsPlanRecurringFee", "RIFee", "Fee")
CREDIT_TYPES = ("Credit", "EdpDiscount", "PrivateRateDiscount", "BundledDiscount", "Discount", "DistributorDiscount")
RECURRING_TYPES = ("SavingsPlanRecurringFee", "RIFee")
UNUSED_COMMITMENT_TYPES = ("SavingsPlanRecurringFee", "RIFee")  # EffectiveCost = the unused commitment
COMMITTED_TYPES = ("DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation")
SAVINGS_PLAN_TYPES = (
    "SavingsPlanCoveredUsage",
    "SavingsPlanNegation",
    "SavingsPlanRecurringFee",
    "SavingsPlanUpfrontFee",
)
ZERO = pl.lit(0, dtype=MONEY)


@dataclass(frozen=True)
class LineItem:
    """The per-row values every FOCUS column group reads, each kept once on the frame."""

    line_type: pl.Expr
    billed: pl.Expr
    effective: pl.Expr
    commitment_id: pl.Expr
    unused_fee: pl.Expr  # a recurring commitment fee carrying unused commitment (FOCUS: Usage/Unused)
    category: pl.Expr
    status: pl.Expr
    commitment_type: pl.Expr

    @property
    def has_commitment(self) -> pl.Expr:
        return self.commitment_id.is_not_null()

    @property
    def is_usage(self) -> pl.Expr:
        return self.category == "Usage"

    @property
    def priced(self) -> pl.Expr:
        """Usage and purchases have prices and quantities; taxes, credits and adjustments have none."""
        return self.category.is_in(["Usage", "Purchase"])

    @property
    def negation(self) -> pl.Expr:
        """A SavingsPlanNegation: the commitment discount itself, at 0 before discounts."""
        return self.line_type == "SavingsPlanNegation"


def effective_cost(cur: CurFrame, line_type: pl.Expr, billed: pl.Expr, reservation_arn: pl.Expr) -> pl.Expr:
    """EffectiveCost by line item type (DOMAIN.md's amortization table)."""
    return (
        pl.when(line_type == "SavingsPlanCoveredUsage")
        .then(cur.money("savings_plan_savings_plan_effective_cost").fill_null(ZERO))
        .when(line_type == "SavingsPlanRecurringFee")
        .then(
            cur.money("savings_plan_total_commitment_to_date").fill_null(ZERO)
            - cur.money("savings_plan_used_commitment").fill_null(ZERO)
        )
        .when(line_type.is_in(["SavingsPlanNegation", "SavingsPlanUpfrontFee"]))
        .then(ZERO)
        .when(line_type == "DiscountedUsage")
        .then(cur.money("reservation_effective_cost").fill_null(ZERO))
        .when(line_type == "RIFee")
        .then(
            cur.money("reservation_unused_amortized_upfront_fee_for_billing_period").fill_null(ZERO)
            + cur.money("reservation_unused_recurring_fee").fill_null(ZERO)
        )
        .when((line_type == "Fee") & reservation_arn.is_not_null())
        .then(ZERO)
        .otherwise(billed)
    )


def commitment_discount_id(line_type: pl.Expr, reservation_arn: pl.Expr, savings_plan_arn: pl.Expr) -> pl.Expr:
    """The Savings Plan or reservation a row belongs to, by its line item type."""
    return (
        pl.when(line_type.is_in(SAVINGS_PLAN_TYPES))
        .then(savings_plan_arn)
        .when(line_type.is_in(["DiscountedUsage", "RIFee"]) | (line_type == "Fee"))
        .then(reservation_arn)
    )


def charge_category(line_type: pl.Expr, unused_fee: pl.Expr) -> pl.Expr:
    """FOCUS ChargeCategory; a fee carrying unused commitment is Usage (a Purchase must have EffectiveCost 0)."""
    return (
        pl.when(line_type.is_in(USAGE_TYPES) | unused_fee)
        .then(pl.lit("Usage"))
        .when(line_type.is_in(PURCHASE_TYPES))
        .then(pl.lit("Purchase"))
        .when(line_type == "Tax")
        .then(pl.lit("Tax"))
        .when(line_type.is_in(CREDIT_TYPES))
        .then(pl.lit("Credit"))
        .otherwise(pl.lit("Adjustment"))
    )


def commitment_status(has_commitment: pl.Expr, is_usage: pl.Expr, unused_fee: pl.Expr) -> pl.Expr:
    """CommitmentDiscountStatus: Unused on the fee that carries the unused commitment, else Used."""
    return pl.when(has_commitment & is_usage).then(pl.when(unused_fee).then(pl.lit("Unused")).otherwise(pl.lit("Used")))


def commitment_discount_type(line_type: pl.Expr, has_commitment: pl.Expr) -> pl.Expr:
    return (
        pl.when(~has_commitment)
        .then(None)
        .when(line_type.str.starts_with("SavingsPlan"))
        .then(pl.lit("Savings Plan"))
        .otherwise(pl.lit("Reserved Instance"))
    )


def classify_line_items(cur: CurFrame) -> LineItem:
    """Keep the values that say what each row is; every later group reads them."""
    line_type = cur.keep("line_type", cur.string("line_item_line_item_type"))
    billed = cur.keep("billed", cur.money("line_item_unblended_cost"))
    reservation_arn = cur.keep("reservation_arn", cur.string("reservation_reservation_a_r_n"))
    savings_plan_arn = cur.keep("savings_plan_arn", cur.string("savings_plan_savings_plan_a_r_n"))
    effective = cur.keep("effective", effective_cost(cur, line_type, billed, reservation_arn))
    commitment_id = cur.keep("commitment_id", commitment_discount_id(line_type, reservation_arn, savings_plan_arn))
    has_commitment = commitment_id.is_not_null()
    unused_fee = cur.keep("unused_fee", line_type.is_in(UNUSED_COMMITMENT_TYPES) & has_commitment)
    category = cur.keep("category", charge_category(line_type, unused_fee))
    status = cur.keep("status", commitment_status(has_commitment, category == "Usage", unused_fee))
    commitment_type = cur.keep("commitment_type", commitment_discount_type(line_type, has_commitment))
    return LineItem(line_type, billed, effective, commitment_id, unused_fee, category, status, commitment_type)
