"""Azure cost export rows to FOCUS 1.2 columns, one function per column group.

Each group reads the delivery's fields (`AzureFields`) and the row's `AzureCharge`, and returns its
FOCUS columns by name (`to_focus` puts them in order). Which cost view a row comes from decides
BilledCost and ContractedCost (the package doc, "Cost views").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from billing_pipeline.adapters.azure.catalog import OTHER, SERVICES, focus_unit_name, region_of
from billing_pipeline.adapters.azure.headers import (
    AMORTIZED_CHARGE_TYPES,
    COMMITTED_MODELS,
    AzureFields,
    billed_cost,
    billing_account,
    dataset_of,
    export_version,
)
from billing_pipeline.adapters.cells import MONEY_LIMIT, money_is_missing
from billing_pipeline.adapters.shared_columns import shared
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.lookup import lookup

PROVIDER = "Microsoft"


@dataclass(frozen=True)
class Lookups:
    """Service categories, FOCUS units and regions of the delivery's distinct values (one narrow pass)."""

    services: dict[str, tuple[str, str]]
    units: dict[str, str | None]
    regions: dict[str, tuple[str | None, str | None]]

    @classmethod
    def of(cls, raw: pl.LazyFrame, get: AzureFields) -> Lookups:
        # one narrow streaming pass over their combinations (`unique().implode()` ran in memory: the
        # three columns of the whole day), on the delivered columns (not the mapping's shared ones)
        delivered = AzureFields(get.schema)
        combinations = (
            raw.select(
                delivered.text("meter_category").alias("service"),
                delivered.text("unit").alias("unit"),
                delivered.text("location").alias("location"),
            )
            .unique()
            .collect(engine="streaming")
        )
        distinct = {name: combinations[name].unique().to_list() for name in combinations.columns}
        return cls(
            services={name: SERVICES.get(name, OTHER) for name in distinct["service"] if name is not None},
            units={u: focus_unit_name(u) for u in distinct["unit"] if u is not None},
            regions={loc: region_of(loc) for loc in distinct["location"] if loc is not None},
        )


@dataclass(frozen=True)
class AzureCharge:
    """What kind of charge a row is, its amounts, and its priced quantity: what the column groups share."""

    cost: pl.Expr
    charge_type: pl.Expr
    model: pl.Expr  # PricingModel: OnDemand, Reservation, SavingsPlan, Spot
    commitment_id: pl.Expr
    committed: pl.Expr  # usage covered by a reservation or savings plan
    unused: pl.Expr  # UnusedReservation / UnusedSavingsPlan rows (amortized view)
    category: pl.Expr
    billed: pl.Expr
    effective: pl.Expr
    unit: pl.Expr
    pricing_quantity: pl.Expr

    @property
    def is_usage(self) -> pl.Expr:
        return self.category == "Usage"

    @property
    def priced(self) -> pl.Expr:
        return self.category.is_in(["Usage", "Purchase"])

    @property
    def commitment_purchase(self) -> pl.Expr:
        return (self.category == "Purchase") & self.committed


def charge_category(charge_type: pl.Expr) -> pl.Expr:
    """FOCUS ChargeCategory of a ChargeType; unused commitment is Usage, a row without a type too."""
    return (
        pl.when(charge_type.is_in(["Usage", *AMORTIZED_CHARGE_TYPES]) | charge_type.is_null())
        .then(pl.lit("Usage"))
        .when(charge_type == "Purchase")
        .then(pl.lit("Purchase"))
        .when(charge_type == "Tax")
        .then(pl.lit("Tax"))
        .when(charge_type.is_in(["Refund", "Credit"]))
        .then(pl.lit("Credit"))
        .otherwise(pl.lit("Adjustment"))
    )


def classify_charge(get: AzureFields, lookups: Lookups) -> AzureCharge:
    """A commitment purchase has EffectiveCost 0 (FOCUS amortizes it onto the usage it covers)."""

    def keep(key: str, build: Callable[[], pl.Expr]) -> pl.Expr:
        return shared(get.shared, key, build)

    cost = get.money("cost")
    charge_type = get.text("charge_type")
    model = get.text("pricing_model")
    commitment_id = keep("commitment_id", lambda: pl.coalesce(get.text("benefit_id"), get.text("reservation_id")))
    committed = keep("committed", lambda: model.is_in(COMMITTED_MODELS).fill_null(False) & commitment_id.is_not_null())
    category = keep("category", lambda: charge_category(charge_type))
    commitment_purchase = (category == "Purchase") & committed
    unit = keep("unit", lambda: lookup(get.text("unit"), lookups.units))
    priced = category.is_in(["Usage", "Purchase"])
    return AzureCharge(
        cost=cost,
        charge_type=charge_type,
        model=model,
        commitment_id=commitment_id,
        committed=committed,
        unused=keep("unused", lambda: charge_type.is_in(AMORTIZED_CHARGE_TYPES).fill_null(False)),
        category=category,
        billed=keep("billed", lambda: billed_cost(get)),
        effective=keep("effective", lambda: pl.when(commitment_purchase).then(pl.lit(0, dtype=MONEY)).otherwise(cost)),
        unit=unit,
        pricing_quantity=keep(
            "pricing_quantity", lambda: pl.when(priced & unit.is_not_null()).then(get.money("quantity"))
        ),
    )


def payg_cost(get: AzureFields, charge: AzureCharge) -> tuple[pl.Expr, pl.Expr]:
    """(quantity x PayGPrice where it stays in range, True where it does not): a Decimal product that
    overflows raises, so an out-of-range product is null and the row is quarantined instead."""
    payg_price = get.money("payg_price")
    quantity = charge.pricing_quantity
    in_range = (quantity.cast(pl.Float64) * payg_price.cast(pl.Float64)).abs() < MONEY_LIMIT
    product = pl.when(in_range).then(quantity) * pl.when(in_range).then(payg_price)
    out_of_range = (
        money_is_missing(get.col("payg_cost"), get.dtype("payg_cost"))
        & quantity.is_not_null()
        & payg_price.is_not_null()
        & ~in_range
    )
    return product, out_of_range


def identity_columns(get: AzureFields) -> dict[str, pl.Expr]:
    """Billing account (the subscription, where pay-as-you-go names none), subscription, publisher."""
    account = billing_account(get)
    subscription = get.text("subscription_id")
    return {
        "BillingAccountId": account,
        "BillingAccountName": pl.coalesce(get.text("billing_account_name"), account),
        "BillingAccountType": pl.when(get.text("billing_account_id").is_not_null())
        .then(pl.lit("Billing Account"))
        .when(account.is_not_null())
        .then(pl.lit("Subscription")),
        "BillingCurrency": get.text("currency"),
        "InvoiceIssuerName": pl.lit(PROVIDER),
        "ProviderName": pl.lit(PROVIDER),
        "PublisherName": pl.coalesce(get.text("publisher_name"), pl.lit(PROVIDER)),
        "InvoiceId": get.text("invoice_id"),
        "SubAccountId": subscription,
        "SubAccountName": pl.coalesce(get.text("subscription_name"), subscription),
        "SubAccountType": pl.when(subscription.is_not_null()).then(pl.lit("Subscription")),
    }


def charge_columns(get: AzureFields, charge: AzureCharge) -> dict[str, pl.Expr]:
    """Category, frequency, description; a row is one day, the billing period the export's (else the month)."""
    start = get.datetime("date")
    period_start = pl.coalesce(get.datetime("billing_period_start"), start.dt.month_start())
    period_end = pl.coalesce(
        get.datetime("billing_period_end").dt.offset_by("1d"),
        period_start.dt.offset_by("1mo"),
    )
    frequency = lookup(
        get.text("frequency"),
        {"UsageBased": "Usage-Based", "Recurring": "Recurring", "OneTime": "One-Time"},
        default="Usage-Based",
    )
    return {
        "BillingPeriodEnd": period_end,
        "BillingPeriodStart": period_start,
        "ChargeCategory": charge.category,
        "ChargeClass": pl.lit(None, dtype=pl.String),
        "ChargeDescription": pl.coalesce(get.text("product"), get.text("meter_name")),
        "ChargePeriodEnd": start.dt.offset_by("1d"),
        "ChargePeriodStart": start,
        "ChargeFrequency": frequency,
    }


def cost_columns(get: AzureFields, charge: AzureCharge) -> dict[str, pl.Expr]:
    """Billed and effective cost by cost view; list cost is PayG cost, else quantity x PayGPrice, else cost."""
    amortized = dataset_of(export_version(get.schema)) == "AmortizedCost"
    payg_product, _ = payg_cost(get, charge)
    return {
        "BilledCost": charge.billed,
        "ContractedCost": pl.when(amortized & (charge.committed | charge.unused))
        .then(charge.cost)
        .otherwise(charge.billed),
        "EffectiveCost": charge.effective,
        "ListCost": pl.coalesce(get.money("payg_cost"), payg_product, charge.cost),
    }


def pricing_columns(get: AzureFields, charge: AzureCharge) -> dict[str, pl.Expr]:
    """Quantities, units and unit prices; the pricing currency's columns where it is the billing one."""
    priced = charge.pricing_quantity.is_not_null()
    usage_quantity = pl.when(charge.is_usage & ~charge.unused & charge.unit.is_not_null()).then(get.money("quantity"))
    unit_price = pl.when(priced).then(get.money("unit_price"))
    list_price = pl.when(priced).then(get.money("payg_price"))
    currency = get.text("currency")
    pricing_currency = pl.coalesce(get.text("pricing_currency"), currency)
    same_currency = pricing_currency == currency
    category = (
        pl.when(charge.committed | charge.unused)
        .then(pl.lit("Committed"))
        .when(charge.model == "Spot")
        .then(pl.lit("Dynamic"))
        .otherwise(pl.lit("Standard"))
    )
    return {
        "PricingQuantity": charge.pricing_quantity,
        "PricingUnit": pl.when(priced).then(charge.unit),
        "ConsumedQuantity": usage_quantity,
        "ConsumedUnit": pl.when(usage_quantity.is_not_null()).then(charge.unit),
        "ContractedUnitPrice": unit_price,
        "ListUnitPrice": list_price,
        "PricingCategory": pl.when(charge.priced).then(category),
        "PricingCurrency": pricing_currency,
        "PricingCurrencyEffectiveCost": pl.when(same_currency).then(charge.effective),
        "PricingCurrencyContractedUnitPrice": pl.when(same_currency).then(unit_price),
        "PricingCurrencyListUnitPrice": pl.when(same_currency).then(list_price),
    }


def commitment_columns(get: AzureFields, charge: AzureCharge) -> dict[str, pl.Expr]:
    """Reservations and savings plans: on covered usage, unused commitment and commitment purchases."""
    applies = charge.commitment_id.is_not_null() & (charge.committed | charge.unused | charge.commitment_purchase)
    savings_plan = (charge.model == "SavingsPlan") | (charge.charge_type == "UnusedSavingsPlan")
    kind = pl.when(applies).then(pl.when(savings_plan).then(pl.lit("Savings Plan")).otherwise(pl.lit("Reservation")))
    has_kind = kind.is_not_null()
    return {
        "CommitmentDiscountId": pl.when(has_kind).then(charge.commitment_id),
        "CommitmentDiscountName": pl.when(has_kind).then(
            pl.coalesce(get.text("benefit_name"), get.text("reservation_name"))
        ),
        "CommitmentDiscountType": kind,
        "CommitmentDiscountCategory": pl.when(kind == "Savings Plan")
        .then(pl.lit("Spend"))
        .when(kind == "Reservation")
        .then(pl.lit("Usage")),
        "CommitmentDiscountStatus": pl.when(has_kind & charge.is_usage).then(
            pl.when(charge.unused).then(pl.lit("Unused")).otherwise(pl.lit("Used"))
        ),
    }
