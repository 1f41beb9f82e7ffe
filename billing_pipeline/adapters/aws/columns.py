"""CUR line items to FOCUS 1.2 columns, one function per column group.

Each group reads the `CurFrame` and the kept `LineItem` values and returns its FOCUS columns by
name (`to_focus` puts them in order). Mapping decisions:
- ListCost/ContractedCost are before commitment discounts: a SavingsPlanNegation (the discount
  itself) has 0 for both, an RI-covered hour its public on-demand cost (CUR books negotiated
  discounts as rows of their own); elsewhere ContractedCost = BilledCost, ContractedUnitPrice =
  the unblended rate, ListUnitPrice = the public on-demand rate (a recurring commitment fee's own
  rate, which has none).
- Recurring commitment fees are Usage/Unused, ChargeFrequency Recurring, with
  CommitmentDiscountQuantity = the unused hours (RI) or amount (Savings Plan) and no
  ConsumedQuantity. Covered usage and SavingsPlanNegation rows are Usage/Used, PricingCategory
  Committed.
- Units are brought to the FOCUS Unit Format (`Hrs` -> `Hours`, `GB-Mo` -> `GB-Months`); the
  delivered unit is kept in `x_PricingUnit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing_pipeline.adapters.aws import catalog
from billing_pipeline.adapters.aws.frame import CurFrame
from billing_pipeline.adapters.aws.line_items import (
    COMMITTED_TYPES,
    PURCHASE_TYPES,
    RECURRING_TYPES,
    UNUSED_COMMITMENT_TYPES,
    USAGE_TYPES,
    ZERO,
    LineItem,
)
from billing_pipeline.platform.lookup import lookup

PROVIDER = "AWS"


@dataclass(frozen=True)
class Quantities:
    """Usage amount and its FOCUS unit, as priced and as consumed (kept once per row)."""

    usage_amount: pl.Expr
    delivered_unit: pl.Expr  # as the CUR spells it, kept in x_PricingUnit
    pricing_quantity: pl.Expr
    pricing_unit: pl.Expr
    consumed_quantity: pl.Expr
    consumed_unit: pl.Expr


def keep_quantities(cur: CurFrame, item: LineItem) -> Quantities:
    """A recurring commitment fee without a unit is counted in Hours; units are mapped per distinct value."""
    usage_amount = cur.keep("usage_amount", cur.money("line_item_usage_amount"))
    delivered_unit = cur.keep(
        "delivered_unit", pl.coalesce(cur.string("pricing_unit"), cur.string("product_pricing_unit"))
    )
    fee_hours = pl.when(item.line_type.is_in(UNUSED_COMMITMENT_TYPES)).then(pl.lit("Hours"))
    unit = cur.per_distinct("unit", [pl.coalesce(delivered_unit, fee_hours)], catalog.focus_unit)
    pricing_quantity = cur.keep("pricing_quantity", pl.when(item.priced & unit.is_not_null()).then(usage_amount))
    consumed = item.is_usage & (item.status != "Unused").fill_null(True) & unit.is_not_null()
    consumed_quantity = cur.keep("consumed_quantity", pl.when(consumed).then(usage_amount))
    return Quantities(
        usage_amount=usage_amount,
        delivered_unit=delivered_unit,
        pricing_quantity=pricing_quantity,
        pricing_unit=pl.when(pricing_quantity.is_not_null()).then(unit),
        consumed_quantity=consumed_quantity,
        consumed_unit=pl.when(consumed_quantity.is_not_null()).then(unit),
    )


def _billing_currency(cur: CurFrame) -> pl.Expr:
    return cur.string("line_item_currency_code")


def _pricing_currency(cur: CurFrame) -> pl.Expr:
    """The currency prices are quoted in; the billing currency where the row names none (taxes)."""
    return pl.coalesce(cur.string("pricing_currency"), _billing_currency(cur))


def identity_columns(cur: CurFrame) -> dict[str, pl.Expr]:
    """Accounts, provider, publisher, invoice. Legacy CUR has no account names: the id stands in.

    ProviderName, PublisherName and InvoiceIssuerName are "AWS": one name for one company, because
    FOCUS 1.2 reads ProviderName != InvoiceIssuerName as a third-party (marketplace) charge whose
    BilledCost must be 0. Marketplace rows keep the seller (`line_item_legal_entity`) as PublisherName.
    """
    payer_account = cur.string("bill_payer_account_id")
    usage_account = cur.string("line_item_usage_account_id")
    publisher = (
        pl.when(cur.string("bill_billing_entity") == "AWS Marketplace")
        .then(pl.coalesce(cur.string("line_item_legal_entity"), pl.lit("AWS Marketplace")))
        .otherwise(pl.lit(PROVIDER))
    )
    return {
        "BillingAccountId": payer_account,
        "BillingAccountName": pl.coalesce(cur.string("bill_payer_account_name"), payer_account),
        "BillingAccountType": pl.when(payer_account.is_not_null()).then(pl.lit("Billing Account")),
        "BillingCurrency": _billing_currency(cur),
        "InvoiceIssuerName": pl.lit(PROVIDER),
        "ProviderName": pl.lit(PROVIDER),
        "PublisherName": publisher,
        "InvoiceId": cur.string("bill_invoice_id"),
        "SubAccountId": usage_account,
        "SubAccountName": pl.coalesce(cur.string("line_item_usage_account_name"), usage_account),
        "SubAccountType": pl.when(usage_account.is_not_null()).then(pl.lit("AWS Account")),
    }


def charge_columns(cur: CurFrame, item: LineItem) -> dict[str, pl.Expr]:
    """Category, frequency, description, and the charge and billing periods."""
    frequency = (
        pl.when(item.line_type.is_in(USAGE_TYPES))
        .then(pl.lit("Usage-Based"))
        .when(item.line_type.is_in(RECURRING_TYPES))
        .then(pl.lit("Recurring"))
        .otherwise(pl.lit("One-Time"))
    )
    return {
        "BillingPeriodEnd": cur.when_time("bill_billing_period_end_date"),
        "BillingPeriodStart": cur.when_time("bill_billing_period_start_date"),
        "ChargeCategory": item.category,
        "ChargeClass": pl.lit(None, dtype=pl.String),
        "ChargeDescription": cur.string("line_item_line_item_description"),
        "ChargePeriodEnd": cur.when_time("line_item_usage_end_date"),
        "ChargePeriodStart": cur.when_time("line_item_usage_start_date"),
        "ChargeFrequency": frequency,
    }


def cost_columns(cur: CurFrame, item: LineItem) -> dict[str, pl.Expr]:
    """Billed, effective (amortized), list and contracted cost; list and contracted are before commitment."""
    public_cost = pl.coalesce(cur.money("pricing_public_on_demand_cost"), item.billed)
    contracted = (
        pl.when(item.negation)
        .then(ZERO)
        .when(item.line_type == "DiscountedUsage")
        .then(public_cost)
        .otherwise(item.billed)
    )
    return {
        "BilledCost": item.billed,
        "ContractedCost": contracted,
        "EffectiveCost": item.effective,
        "ListCost": pl.when(item.negation).then(ZERO).otherwise(public_cost),
    }


def _list_unit_price(cur: CurFrame, item: LineItem) -> pl.Expr:
    """The public on-demand rate; a recurring commitment fee has none, its published price is its own rate."""
    return (
        pl.when(item.negation)
        .then(ZERO)
        .when(item.line_type.is_in(UNUSED_COMMITMENT_TYPES))
        .then(cur.money("line_item_unblended_rate"))
        .otherwise(cur.money("pricing_public_on_demand_rate"))
    )


def _contracted_unit_price(cur: CurFrame, item: LineItem, pricing_quantity: pl.Expr) -> pl.Expr:
    """The unblended rate; an RI-covered hour at its public rate, a negation at 0 (before commitment)."""
    return pl.when(pricing_quantity.is_not_null()).then(
        pl.when(item.negation)
        .then(ZERO)
        .when(item.line_type == "DiscountedUsage")
        .then(cur.money("pricing_public_on_demand_rate"))
        .otherwise(cur.money("line_item_unblended_rate"))
    )


def _pricing_category(cur: CurFrame, item: LineItem) -> pl.Expr:
    return pl.when(item.priced).then(
        pl.when(item.line_type.is_in(COMMITTED_TYPES) | item.unused_fee)
        .then(pl.lit("Committed"))
        .when(item.line_type.is_in(PURCHASE_TYPES))
        .then(pl.lit("Standard"))
        .when((cur.string("pricing_term") == "Spot") | cur.string("line_item_usage_type").str.contains("SpotUsage"))
        .then(pl.lit("Dynamic"))
        .otherwise(pl.lit("Standard"))
    )


def pricing_columns(cur: CurFrame, item: LineItem, quantities: Quantities) -> dict[str, pl.Expr]:
    """Quantities, units, unit prices and the pricing currency (its columns only where it is the billing one)."""
    has_quantity = quantities.pricing_quantity.is_not_null()
    list_unit_price = _list_unit_price(cur, item)
    contracted_unit_price = _contracted_unit_price(cur, item, quantities.pricing_quantity)
    same_currency = _pricing_currency(cur) == _billing_currency(cur)
    return {
        "PricingQuantity": quantities.pricing_quantity,
        "PricingUnit": quantities.pricing_unit,
        "ConsumedQuantity": quantities.consumed_quantity,
        "ConsumedUnit": quantities.consumed_unit,
        "ContractedUnitPrice": contracted_unit_price,
        "ListUnitPrice": pl.when(has_quantity).then(list_unit_price),
        "PricingCategory": _pricing_category(cur, item),
        "PricingCurrency": _pricing_currency(cur),
        "PricingCurrencyContractedUnitPrice": pl.when(same_currency).then(contracted_unit_price),
        "PricingCurrencyEffectiveCost": pl.when(same_currency).then(item.effective),
        "PricingCurrencyListUnitPrice": pl.when(same_currency & has_quantity).then(list_unit_price),
    }


def _commitment_quantity(cur: CurFrame, item: LineItem, quantities: Quantities) -> pl.Expr:
    """Hours of a reservation (used or unused), amount of a Savings Plan; only on priced commitment rows."""
    line_type = item.line_type
    return (
        pl.when(~item.has_commitment | ~item.priced)
        .then(None)
        .when(line_type == "SavingsPlanCoveredUsage")
        .then(cur.money("savings_plan_savings_plan_effective_cost"))
        .when(item.negation)
        .then(ZERO)
        .when(line_type == "SavingsPlanRecurringFee")
        .then(item.effective)
        .when(line_type == "SavingsPlanUpfrontFee")
        .then(item.billed)
        .when(line_type == "DiscountedUsage")
        .then(pl.when(quantities.pricing_unit == "Hours").then(quantities.usage_amount))
        .when(line_type == "RIFee")
        .then(cur.money("reservation_unused_quantity"))
        .otherwise(cur.money("reservation_total_reserved_units"))
    )


def commitment_columns(cur: CurFrame, item: LineItem, quantities: Quantities) -> dict[str, pl.Expr]:
    """Reservations and Savings Plans (commitment discounts), and capacity reservations."""
    quantity = _commitment_quantity(cur, item, quantities)
    unit = pl.when(quantity.is_not_null()).then(
        pl.when(item.commitment_type == "Savings Plan").then(_pricing_currency(cur)).otherwise(pl.lit("Hours"))
    )
    capacity_id = cur.string("capacity_reservation_capacity_reservation_arn")
    capacity_status = lookup(
        cur.string("capacity_reservation_capacity_reservation_status").str.to_lowercase(),
        {"used": "Used", "unused": "Unused"},
    )
    return {
        "CapacityReservationId": pl.when(capacity_id.is_not_null()).then(capacity_id),
        "CapacityReservationStatus": pl.when(capacity_id.is_not_null()).then(capacity_status),
        "CommitmentDiscountId": item.commitment_id,
        "CommitmentDiscountType": item.commitment_type,
        "CommitmentDiscountCategory": pl.when(item.commitment_type == "Savings Plan")
        .then(pl.lit("Spend"))
        .when(item.commitment_type == "Reserved Instance")
        .then(pl.lit("Usage")),
        "CommitmentDiscountStatus": item.status,
        "CommitmentDiscountQuantity": quantity,
        "CommitmentDiscountUnit": unit,
    }
