"""The CUR adapters: CUR 2.0 (Data Exports) and legacy CUR share the mapping to FOCUS and differ
in how deliveries are found (`discover`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.adapters.aws.columns import (
    charge_columns,
    commitment_columns,
    cost_columns,
    identity_columns,
    keep_quantities,
    pricing_columns,
)
from billing_pipeline.adapters.aws.dimensions import (
    keep_service,
    location_columns,
    provider_extras,
    row_problems,
    service_columns,
    tag_columns,
)
from billing_pipeline.adapters.aws.discover import discover_legacy_cur
from billing_pipeline.adapters.aws.frame import CurFrame, to_snake_frame
from billing_pipeline.adapters.aws.line_items import classify_line_items
from billing_pipeline.adapters.base import in_column_order, read_export_file
from billing_pipeline.adapters.cells import MONEY_LIMIT, parse_datetime, parse_money, text
from billing_pipeline.adapters.deliveries import Delivery
from billing_pipeline.adapters.manifests import discover_data_exports
from billing_pipeline.platform.storage import Store

# The CUR adapters' output columns, in order (delivered `x_` columns and `_bad_reason` follow).
COLUMN_ORDER: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ServiceName",
    "AvailabilityZone",
    "ChargeFrequency",
    "InvoiceId",
    "CommitmentDiscountId",
    "CommitmentDiscountType",
    "CommitmentDiscountCategory",
    "CommitmentDiscountStatus",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceType",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_TagList",
    "x_LineItemType",
    "x_LineItemId",
    "x_TimeInterval",
    "x_ProductCode",
    "x_UsageType",
    "x_Operation",
    "x_InvoicingEntity",
    "x_PricingUnit",
)


class AwsCurAdapter:
    """Shared CUR -> FOCUS mapping; subclasses differ in how deliveries are found."""

    provider = "aws"
    billed_cost_column = "line_item_unblended_cost"

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_export_file(local_file, file_format)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        for name in ("line_item_usage_start_date", "lineItem/UsageStartDate"):
            if name in schema:
                return parse_datetime(pl.col(name), schema[name])
        raise ValueError("no usage start date column (line_item_usage_start_date / lineItem/UsageStartDate)")

    def identify(self, focus: pl.LazyFrame) -> pl.LazyFrame:
        """A line item's key is its own columns."""
        return focus

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        """Within one delivery a line item is (LineItemId, TimeInterval); across deliveries it is not."""
        return ["x_LineItemId", "x_TimeInterval"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Per billing account and currency: the sum of the billed cost column as delivered."""
        frame = to_snake_frame(raw)
        schema = frame.collect_schema()
        return frame.select(
            text("bill_payer_account_id").alias("BillingAccountId"),
            text("line_item_currency_code").alias("BillingCurrency"),
            parse_money(pl.col(self.billed_cost_column), schema[self.billed_cost_column], MONEY_LIMIT).alias("cost"),
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """FOCUS columns of every delivered row, the delivery's `x_` columns, and `_bad_reason`."""
        cur = CurFrame(raw)
        item = classify_line_items(cur)
        service = keep_service(cur)
        quantities = keep_quantities(cur, item)
        columns = {
            **location_columns(cur),
            **service_columns(cur, item, service),
            **tag_columns(cur),
            **identity_columns(cur),
            **charge_columns(cur, item),
            **cost_columns(cur, item),
            **pricing_columns(cur, item, quantities),
            **commitment_columns(cur, item, quantities),
            **provider_extras(cur, item, service, quantities),
        }
        return cur.frame.select(
            *in_column_order(columns, COLUMN_ORDER),
            *cur.delivered_extras(),
            row_problems(cur, self.billed_cost_column).alias("_bad_reason"),
        )


class AwsCur2Adapter(AwsCurAdapter):
    """CUR 2.0 from AWS Data Exports: manifests under `metadata/BILLING_PERIOD=YYYY-MM/`."""

    provider = "aws_cur2"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        return discover_data_exports(store, source, root, billing_period, file_format)


class AwsLegacyCurAdapter(AwsCurAdapter):
    """Legacy CUR assemblies, or the Athena integration's Parquet files (`aws.discover`)."""

    provider = "aws_cur"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        return discover_legacy_cur(store, source, root, billing_period, file_format)
