"""GCP export rows to FOCUS 1.2 columns, one function per column group.

Each group reads the delivery's fields (`GcpFields`) and the row's `Charge`, and returns its FOCUS
columns by name (`to_focus` puts them in order). Credits become rows of their own (`credit_rows`).
Invoices: BillingPeriodStart/End come from `invoice.month` (late usage at month end lands on the
next month's invoice); the delivered value is kept in `x_InvoiceMonth`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing_pipeline.adapters.cells import MONEY_LIMIT, money_is_missing, money_problem, parse_money
from billing_pipeline.adapters.gcp.catalog import OTHER, REGIONS, SERVICES, distinct_lookup, focus_unit_name
from billing_pipeline.adapters.gcp.fields import GcpFields
from billing_pipeline.adapters.gcp.reading import KEY_VALUE
from billing_pipeline.adapters.tags import TAG, TAG_LIST, tags_json
from billing_pipeline.platform.focus import TIMESTAMP
from billing_pipeline.platform.lookup import lookup

PROVIDER = "Google Cloud"
# A credit row carries the credit amount as every cost, and no price or quantity of its own.
CREDIT_COSTS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingCurrencyEffectiveCost")
CREDIT_NULLS = (
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "PricingCategory",
    "PricingCurrencyContractedUnitPrice",
    "SkuPriceId",
    "ListUnitPrice",
    "PricingCurrencyListUnitPrice",
)


@dataclass(frozen=True)
class Charge:
    """The row's cost and what kind of charge it is (tax, adjustment, else usage)."""

    cost: pl.Expr
    cost_type: pl.Expr  # lowercase, kept in x_CostType
    category: pl.Expr

    @property
    def is_usage(self) -> pl.Expr:
        return self.category == "Usage"


def classify_charge(fields: GcpFields) -> Charge:
    cost_type = fields.text("cost_type").str.to_lowercase()
    category = (
        pl.when(cost_type == "tax")
        .then(pl.lit("Tax"))
        .when(cost_type.is_in(["adjustment", "rounding error", "rounding_error"]))
        .then(pl.lit("Adjustment"))
        .otherwise(pl.lit("Usage"))
    )
    return Charge(fields.money("cost"), cost_type, category)


def period_bounds(invoice_month: pl.Expr, usage_start: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The invoice month (`YYYYMM`) as [start, end); the usage month where the row names no invoice."""
    month = invoice_month.str.to_date("%Y%m", strict=False)
    start = pl.coalesce(month, usage_start.dt.date().dt.month_start())
    start_ts = start.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return start_ts, start_ts.dt.offset_by("1mo")


def tag_list(fields: GcpFields) -> pl.Expr:
    """Resource labels, then the project's labels they inherit (a resource label wins on a shared key)."""
    schema = fields.schema
    labelled = "labels" in schema and schema["labels"] == pl.List(KEY_VALUE)
    own = pl.col("labels") if labelled else pl.lit([], dtype=TAG_LIST)
    project = fields.field("project", "labels", dtype=TAG_LIST)
    both = pl.concat_list([own.fill_null(pl.lit([], dtype=TAG_LIST)), project.fill_null(pl.lit([], dtype=TAG_LIST))])
    key = pl.element().struct.field("key")
    value = pl.element().struct.field("value")
    return both.list.eval(pl.element().filter(key.is_first_distinct() & value.is_not_null())).cast(pl.List(TAG))


def resource_type(resource_id: pl.Expr) -> pl.Expr:
    """`//compute.googleapis.com/projects/p/zones/z/instances/i` -> `compute instances` (per row: ids are
    high-cardinality); any other id -> `Other`."""
    service = resource_id.str.extract(r"^//([a-z0-9-]+)\.googleapis\.com/", 1)
    collection = resource_id.str.extract(r"/([A-Za-z]+)/[^/]+$", 1)
    typed = pl.concat_str([service, pl.lit(" "), collection])
    return pl.when(resource_id.is_not_null()).then(pl.coalesce(typed, pl.lit("Other")))


def identity_columns(fields: GcpFields) -> dict[str, pl.Expr]:
    """Billing account (named by its id: the export has no name), project, provider and publisher."""
    account = fields.text("billing_account_id")
    project = fields.text("project", "id")
    third_party = fields.text("transaction_type").str.starts_with("THIRD_PARTY").fill_null(False)
    return {
        "BillingAccountId": account,
        "BillingAccountName": account,
        "BillingAccountType": pl.when(account.is_not_null()).then(pl.lit("Billing Account")),
        "BillingCurrency": fields.text("currency"),
        "InvoiceIssuerName": pl.lit(PROVIDER),
        "ProviderName": pl.lit(PROVIDER),
        "PublisherName": pl.when(third_party)
        .then(pl.coalesce(fields.text("seller_name"), pl.lit(PROVIDER)))
        .otherwise(pl.lit(PROVIDER)),
        "SubAccountId": project,
        "SubAccountName": pl.coalesce(fields.text("project", "name"), project),
        "SubAccountType": pl.when(project.is_not_null()).then(pl.lit("Project")),
    }


def charge_columns(fields: GcpFields, charge: Charge) -> dict[str, pl.Expr]:
    """Category, class (a correction carries `adjustment_info`), frequency, description and periods."""
    start = fields.field("usage_start_time", dtype=TIMESTAMP)
    period_start, period_end = period_bounds(fields.text("invoice", "month"), start)
    return {
        "BillingPeriodEnd": period_end,
        "BillingPeriodStart": period_start,
        "ChargeCategory": charge.category,
        "ChargeClass": pl.when(fields.text("adjustment_info", "id").is_not_null()).then(pl.lit("Correction")),
        "ChargeDescription": fields.text("sku", "description"),
        "ChargePeriodEnd": fields.field("usage_end_time", dtype=TIMESTAMP),
        "ChargePeriodStart": start,
        "ChargeFrequency": pl.when(charge.is_usage).then(pl.lit("Usage-Based")).otherwise(pl.lit("One-Time")),
    }


def cost_columns(fields: GcpFields, charge: Charge) -> dict[str, pl.Expr]:
    """The export's cost is billed, effective and contracted cost; list cost where `cost_at_list` says."""
    return {
        "BilledCost": charge.cost,
        "ContractedCost": charge.cost,
        "EffectiveCost": charge.cost,
        "ListCost": pl.coalesce(fields.money("cost_at_list"), charge.cost),
    }


def pricing_columns(fields: GcpFields, charge: Charge, distinct: dict[str, list[str | None]]) -> dict[str, pl.Expr]:
    """Quantities and units of usage rows (units in the FOCUS Unit Format), unit prices, pricing currency."""
    pricing_unit = pl.when(charge.is_usage).then(
        distinct_lookup(fields.text("usage", "pricing_unit"), distinct["pricing_unit"], focus_unit_name)
    )
    consumed_unit = pl.when(charge.is_usage).then(
        distinct_lookup(fields.text("usage", "unit"), distinct["unit"], focus_unit_name)
    )
    pricing_quantity = pl.when(pricing_unit.is_not_null()).then(
        fields.money("usage", "amount_in_pricing_units", limit=None)
    )
    consumed_quantity = pl.when(consumed_unit.is_not_null()).then(fields.money("usage", "amount", limit=None))
    priced = pricing_quantity.is_not_null()
    unit_price = pl.when(priced).then(fields.money("price", "effective_price"))
    # no list price is delivered without `cost_at_list`: then list = contracted, as ListCost = cost
    list_unit_price = pl.when(priced & fields.money("cost_at_list").is_null()).then(
        fields.money("price", "effective_price")
    )
    return {
        "PricingQuantity": pricing_quantity,
        "PricingUnit": pl.when(priced).then(pricing_unit),
        "ConsumedQuantity": consumed_quantity,
        "ConsumedUnit": pl.when(consumed_quantity.is_not_null()).then(consumed_unit),
        "ContractedUnitPrice": unit_price,
        "ListUnitPrice": list_unit_price,
        "PricingCurrencyListUnitPrice": list_unit_price,
        "PricingCategory": pl.when(charge.is_usage).then(pl.lit("Standard")),
        "PricingCurrency": fields.text("currency"),
        "PricingCurrencyContractedUnitPrice": unit_price,
        "PricingCurrencyEffectiveCost": charge.cost,
    }


def service_columns(fields: GcpFields, charge: Charge, distinct: dict[str, list[str | None]]) -> dict[str, pl.Expr]:
    """Service (categories looked up on the distinct services), resource and SKU; a tax row has no SKU."""
    service = fields.text("service", "description")
    services = {name: SERVICES.get(name, OTHER) for name in distinct["service"] if name is not None}
    resource_id = fields.text("resource", "global_name")
    sku = fields.text("sku", "id")
    not_tax = charge.category != "Tax"
    return {
        "ServiceCategory": lookup(service, {k: v[0] for k, v in services.items()}, default=OTHER[0]),
        "ServiceSubcategory": lookup(service, {k: v[1] for k, v in services.items()}, default=OTHER[1]),
        "ServiceName": pl.coalesce(service, pl.lit("Unknown")),
        "ResourceId": resource_id,
        "ResourceName": fields.text("resource", "name"),
        "ResourceType": resource_type(resource_id),
        "SkuId": pl.when(not_tax).then(sku),
        "SkuMeter": pl.when(not_tax & sku.is_not_null()).then(fields.text("sku", "description")),
        "SkuPriceId": pl.when(charge.is_usage & sku.is_not_null()).then(sku),
    }


def location_columns(fields: GcpFields) -> dict[str, pl.Expr]:
    """Region (its name where GCP's is known, else the code) and zone."""
    region = fields.text("location", "region")
    region_name = pl.coalesce(lookup(region, REGIONS), region)
    return {
        "AvailabilityZone": fields.text("location", "zone"),
        "RegionId": region,
        "RegionName": pl.when(region.is_not_null()).then(region_name),
    }


def tag_columns(fields: GcpFields) -> dict[str, pl.Expr]:
    """FOCUS `Tags` (JSON text) and the same tags as a list for the tag policy (`x_TagList`)."""
    tags = tag_list(fields)
    return {"Tags": tags_json(tags), "x_TagList": tags}


def provider_extras(fields: GcpFields, charge: Charge) -> dict[str, pl.Expr]:
    """Export fields FOCUS has no column for, and units as delivered; the credit columns are set on credit rows."""
    return {
        "x_InvoiceMonth": fields.text("invoice", "month"),
        "x_CostType": charge.cost_type,
        "x_ExportTime": fields.field("export_time", dtype=TIMESTAMP),
        "x_ServiceId": fields.text("service", "id"),
        "x_ProjectNumber": fields.text("project", "number"),
        "x_Location": fields.text("location", "location"),
        "x_AdjustmentId": fields.text("adjustment_info", "id"),
        "x_AdjustmentType": fields.text("adjustment_info", "type"),
        "x_AdjustmentMode": fields.text("adjustment_info", "mode"),
        "x_TransactionType": fields.text("transaction_type"),
        "x_PricingUnit": fields.text("usage", "pricing_unit"),
        "x_ConsumedUnit": fields.text("usage", "unit"),
        "x_CurrencyConversionRate": fields.money("currency_conversion_rate", limit=None),
        "x_CreditId": pl.lit(None, dtype=pl.String),
        "x_CreditType": pl.lit(None, dtype=pl.String),
    }


def row_problems(fields: GcpFields) -> pl.Expr:
    """Why a row is quarantined (`; `-joined), null when it can be used."""
    credits = fields.credits()
    credit_problems = (
        credits.list.eval(money_problem(pl.element().struct.field("amount"), pl.Float64, "credits.amount"))
        .list.drop_nulls()
        .list.join("; ")
    )
    credit_without_amount = credits.list.eval(pl.element().struct.field("amount").is_null()).list.any()
    cost_missing = money_is_missing(fields.field("cost", dtype=pl.Float64), fields.field_type("cost", ()))
    reasons = pl.concat_str(
        [
            fields.problem("cost"),
            fields.problem("cost_at_list"),
            fields.problem("price", "effective_price"),
            fields.problem("usage", "amount", limit=None),
            fields.problem("usage", "amount_in_pricing_units", limit=None),
            pl.when(credit_problems != "").then(credit_problems),
            pl.when(cost_missing).then(pl.lit("missing cost in cost")),
            pl.when(fields.text("billing_account_id").is_null()).then(pl.lit("missing billing_account_id")),
            pl.when(fields.text("currency").is_null()).then(pl.lit("missing currency")),
            pl.when(fields.field("usage_end_time", dtype=TIMESTAMP).is_null()).then(pl.lit("missing usage_end_time")),
            pl.when(credit_without_amount.fill_null(False)).then(pl.lit("credit without amount in credits")),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return pl.when(reasons != "").then(reasons)


def row_identity(fields: GcpFields) -> list[pl.Expr]:
    """Dedup key of a charge row (every delivered column, part 0), and its credits to explode."""
    delivered = [c for c in fields.schema if not c.startswith("x_")]
    credits = fields.credits()
    return [
        pl.struct(delivered).alias("_gcp_row"),
        pl.lit(0, dtype=pl.Int32).alias("_gcp_part"),
        credits.alias("_gcp_credits"),
        pl.int_ranges(1, credits.list.len().fill_null(0) + 1, dtype=pl.Int32).alias("_gcp_index"),
    ]


def credit_rows(charge: pl.LazyFrame) -> pl.LazyFrame:
    """One Credit row per credit of a charge row: the credit amount as every cost, the charge's dimensions.

    Part `i` of the charge's identity (no window, so it streams); a bad row is quarantined through its
    charge row, so its credit rows never dedup.
    """
    credit = pl.col("_gcp_credits")
    amount = parse_money(credit.struct.field("amount"), pl.Float64, MONEY_LIMIT)
    types = charge.collect_schema()
    return (
        charge.filter(pl.col("_gcp_credits").list.len() > 0)
        .explode(["_gcp_credits", "_gcp_index"])
        .with_columns(
            *[amount.alias(c) for c in CREDIT_COSTS],
            pl.lit("Credit").alias("ChargeCategory"),
            pl.coalesce(credit.struct.field("full_name"), credit.struct.field("name")).alias("ChargeDescription"),
            *[pl.lit(None, dtype=types[c]).alias(c) for c in CREDIT_NULLS],
            credit.struct.field("id").alias("x_CreditId"),
            credit.struct.field("type").alias("x_CreditType"),
            pl.col("_gcp_index").alias("_gcp_part"),
            pl.when(pl.col("_bad_reason").is_null()).then(pl.col("_gcp_row")).alias("_gcp_row"),
            pl.lit(None, dtype=pl.String).alias("_bad_reason"),
        )
    )
