"""Azure cost export rows to FOCUS 1.2: the dimension column groups (service, SKU, resource,
location, tags), the export's own `x_` columns, why a row cannot be used, and its identity.

Row identity: there is no row id, and identical rows are legitimate. The key is every delivered
column, the row's occurrence among identical rows of its file, and a digest of the file's content
(row count and sums of row hashes: independent of row order); see the package doc.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.adapters.azure.catalog import OTHER
from billing_pipeline.adapters.azure.columns import AzureCharge, Lookups, payg_cost
from billing_pipeline.adapters.azure.headers import (
    MONEY_FIELDS,
    AzureFields,
    billing_account,
    dataset_of,
    export_version,
)
from billing_pipeline.adapters.cells import money_is_missing, money_problem
from billing_pipeline.adapters.focus_native import tags_from_json
from billing_pipeline.adapters.tags import TAG_LIST, tags_json
from billing_pipeline.platform.lookup import lookup, per_distinct_value


def service_columns(get: AzureFields, charge: AzureCharge, lookups: Lookups) -> dict[str, pl.Expr]:
    """Service (MeterCategory), resource (type from its ARM id) and SKU; a price is a meter of a product."""
    service = pl.coalesce(get.text("meter_category"), get.text("consumed_service"), pl.lit("Unknown"))
    resource_id = get.text("resource_id")
    resource_type = pl.coalesce(
        resource_id.str.extract(r"(?i)/providers/([^/]+/[^/]+)/[^/]+", 1),
        get.text("resource_type"),
        get.text("consumed_service"),
        pl.lit("Other"),
    )
    sku_id = pl.coalesce(get.text("product_id"), get.text("part_number"), get.text("meter_id"))
    not_tax = charge.category != "Tax"
    return {
        "ServiceCategory": lookup(service, {k: v[0] for k, v in lookups.services.items()}, default=OTHER[0]),
        "ServiceSubcategory": lookup(service, {k: v[1] for k, v in lookups.services.items()}, default=OTHER[1]),
        "ServiceName": service,
        "ResourceId": resource_id,
        "ResourceName": pl.coalesce(get.text("resource_name"), resource_id.str.extract(r"/([^/]+)/?$", 1)),
        "ResourceType": pl.when(resource_id.is_not_null()).then(resource_type),
        "SkuId": pl.when(not_tax).then(sku_id),
        "SkuMeter": pl.when(not_tax & get.text("meter_id").is_not_null()).then(get.text("meter_name")),
        # one SkuId per SkuPriceId by construction
        "SkuPriceId": pl.when(charge.priced).then(pl.concat_str([sku_id, get.text("meter_id")], separator="_")),
    }


def location_columns(get: AzureFields, lookups: Lookups) -> dict[str, pl.Expr]:
    """Region id and name from the delivered location (`EastUS`, `US East 2`; `Unassigned` is none)."""
    location = get.text("location")
    region_id = lookup(location, {k: v[0] for k, v in lookups.regions.items()})
    region_name = lookup(location, {k: v[1] for k, v in lookups.regions.items()})
    return {
        "AvailabilityZone": get.text("availability_zone"),
        "RegionId": region_id,
        "RegionName": pl.when(region_id.is_not_null()).then(region_name),
    }


def tag_columns(get: AzureFields, raw: pl.LazyFrame) -> dict[str, pl.Expr]:
    """FOCUS `Tags` (JSON text) and the same tags as a list for the tag policy (`x_TagList`), parsed once per
    distinct delivered value of `raw` (a day repeats a few thousand tag strings)."""
    if not get.has("tags"):
        return {"Tags": tags_json(pl.lit([], dtype=TAG_LIST)), "x_TagList": pl.lit([], dtype=TAG_LIST)}
    return per_distinct_value(
        raw,
        AzureFields(get.schema).text("tags"),  # the delivered column: the distinct pass reads `raw` itself
        {"Tags": lambda value: tags_json(tags_from_json(value)), "x_TagList": tags_from_json},
    )


def provider_extras(get: AzureFields, charge: AzureCharge) -> dict[str, pl.Expr]:
    """Export fields FOCUS has no column for, as delivered, and the dataset (cost view) of the row."""
    return {
        "x_Dataset": dataset_of(export_version(get.schema)),
        "x_ChargeType": charge.charge_type,
        "x_PricingModel": charge.model,
        "x_MeterCategory": get.text("meter_category"),
        "x_MeterSubcategory": get.text("meter_subcategory"),
        "x_MeterId": get.text("meter_id"),
        "x_UnitOfMeasure": get.text("unit"),
        "x_ResourceGroup": get.text("resource_group"),
        "x_ResourceLocation": get.text("location"),
        "x_BillingProfileId": get.text("billing_profile_id"),
        "x_InvoiceSectionName": get.text("invoice_section"),
        "x_PublisherType": get.text("publisher_type"),
        "x_CostCenter": get.text("cost_center"),
        "x_AdditionalInfo": get.text("additional_info"),
        "x_CostInBillingCurrency": charge.cost,
    }


def row_problems(get: AzureFields, charge: AzureCharge) -> pl.Expr:
    """Why a row is quarantined (`; `-joined), null when it can be used."""
    currency = get.text("currency")
    _, product_out_of_range = payg_cost(get, charge)
    out_of_range = pl.format(
        "non-finite or out-of-range money {} x {} in ListCost ({} x {})",
        charge.pricing_quantity,
        get.money("payg_price"),
        pl.lit(get.name("quantity")),
        pl.lit(get.name("payg_price")),
    )
    reasons = pl.concat_str(
        [money_problem(get.col(f), get.dtype(f), get.name(f), get.limit(f)) for f in MONEY_FIELDS if get.has(f)]
        + [
            pl.when(product_out_of_range).then(out_of_range),
            pl.when(money_is_missing(get.col("cost"), get.dtype("cost"))).then(
                pl.lit(f"missing cost in {get.name('cost')}")
            ),
            pl.when(currency.is_null()).then(pl.lit("missing billing currency")),
            pl.when(~currency.str.contains(r"^[A-Z]{3}$")).then(pl.format("invalid billing currency {}", currency)),
            pl.when(billing_account(get).is_null()).then(pl.lit("missing billing account and subscription")),
        ],
        separator="; ",
        ignore_nulls=True,
    )
    return pl.when(reasons != "").then(reasons)


def delivered_row(get: AzureFields) -> pl.Expr:
    """A row's delivered columns (lineage aside), as one value: the first column of its identity."""
    return pl.struct([c for c in get.schema if not c.startswith("x_")])
