"""CUR line items to FOCUS 1.2: the dimension column groups (service, SKU, resource, location,
tags), the provider's own `x_` columns, and why a row cannot be used.

RegionId only where the row names an AWS region code (`global` is not one), RegionName only with
it. ResourceType for every ResourceId. The legal entity that invoices (`bill_invoicing_entity`,
e.g. "Amazon Web Services EMEA SARL") is kept in `x_InvoicingEntity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from billing_pipeline.adapters.aws import catalog
from billing_pipeline.adapters.aws.columns import Quantities
from billing_pipeline.adapters.aws.frame import MONEY_INPUTS, CurFrame, money_limit, tag_list
from billing_pipeline.adapters.aws.line_items import LineItem
from billing_pipeline.adapters.cells import money_is_missing, money_problem
from billing_pipeline.adapters.tags import tags_json

DEFAULT_INVOICING_ENTITY = "Amazon Web Services, Inc."


@dataclass(frozen=True)
class Service:
    """The service a row is charged for: the delivered product code and the code the catalog keys on."""

    product_code: pl.Expr
    code: pl.Expr
    name: pl.Expr


def keep_service(cur: CurFrame) -> Service:
    """The catalog code (product code first) and the service name (CUR's product name, else the catalog's)."""
    product_code = cur.keep("product_code", cur.string("line_item_product_code"))
    product_name = cur.keep(
        "product_name", pl.coalesce(cur.string("product_product_name"), cur.string("product_servicename"))
    )
    code = cur.keep("code", catalog.service_code(product_code, cur.string("product_servicecode"), product_name))
    name = cur.keep("service_name", pl.coalesce(product_name, catalog.service_name(code), code, pl.lit("Unknown")))
    return Service(product_code, code, name)


def service_columns(cur: CurFrame, item: LineItem, service: Service) -> dict[str, pl.Expr]:
    """Service, resource and SKU; a tax row has no SKU."""
    resource_id = cur.keep("resource_id", cur.string("line_item_resource_id"))
    resource_type = cur.keep("resource_type", catalog.resource_type(resource_id, service.code))  # ids: near-unique
    sku_meter = cur.per_distinct("sku_meter", [cur.string("line_item_usage_type")], catalog.sku_meter)
    sku_id = cur.string("product_sku")
    not_tax = item.category != "Tax"
    return {
        "ServiceCategory": catalog.service_category(service.code),
        "ServiceSubcategory": catalog.service_subcategory(service.code),
        "ServiceName": service.name,
        "ResourceId": resource_id,
        "ResourceType": resource_type,
        "SkuId": pl.when(not_tax).then(sku_id),
        "SkuMeter": pl.when(not_tax & sku_id.is_not_null()).then(sku_meter),
        "SkuPriceId": pl.when(not_tax & sku_id.is_not_null()).then(
            pl.coalesce(cur.string("pricing_rate_code"), cur.string("pricing_rate_id"))
        ),
    }


def location_columns(cur: CurFrame) -> dict[str, pl.Expr]:
    """Region (code and name) and availability zone."""
    region = cur.keep("region", catalog.region_id(cur.string("product_region_code"), cur.string("product_region")))
    region_name = cur.keep("region_name", catalog.region_name(region, cur.string("product_location")))
    return {
        "AvailabilityZone": cur.string("line_item_availability_zone"),
        "RegionId": region,
        "RegionName": region_name,
    }


def tag_columns(cur: CurFrame) -> dict[str, pl.Expr]:
    """FOCUS `Tags` (JSON text) and the same tags as a list for the tag policy (`x_TagList`)."""
    tags = cur.keep("tag_list", tag_list(cur.schema))
    return {"Tags": tags_json(tags), "x_TagList": tags}


def provider_extras(cur: CurFrame, item: LineItem, service: Service, quantities: Quantities) -> dict[str, pl.Expr]:
    """CUR fields FOCUS has no column for, and the values FOCUS canonicalized, as delivered."""
    return {
        "x_LineItemType": item.line_type,
        "x_LineItemId": cur.string("identity_line_item_id"),
        "x_TimeInterval": cur.string("identity_time_interval"),
        "x_ProductCode": service.product_code,
        "x_UsageType": cur.string("line_item_usage_type"),
        "x_Operation": cur.string("line_item_operation"),
        "x_InvoicingEntity": pl.coalesce(cur.string("bill_invoicing_entity"), pl.lit(DEFAULT_INVOICING_ENTITY)),
        "x_PricingUnit": quantities.delivered_unit,
    }


def row_problems(cur: CurFrame, billed_cost_column: str) -> pl.Expr:
    """Why a row is quarantined (`; `-joined), null when it can be used: unusable money, no cost."""
    schema = cur.schema
    billed_missing = (
        money_is_missing(pl.col(billed_cost_column), schema[billed_cost_column])
        if billed_cost_column in schema
        else pl.lit(True)
    )
    reasons = pl.concat_str(
        [money_problem(pl.col(name), schema[name], name, money_limit(name)) for name in MONEY_INPUTS if name in schema]
        + [pl.when(billed_missing).then(pl.lit("missing cost in line_item_unblended_cost"))],
        separator="; ",
        ignore_nulls=True,
    )
    return pl.when(reasons != "").then(reasons)
