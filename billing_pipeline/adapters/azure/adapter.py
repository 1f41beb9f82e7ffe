"""The Azure Cost Management adapter: ActualCost and AmortizedCost mapped here, FocusCost by the FOCUS adapter."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.adapters.azure.columns import (
    Lookups,
    charge_columns,
    classify_charge,
    commitment_columns,
    cost_columns,
    identity_columns,
    pricing_columns,
)
from billing_pipeline.adapters.azure.dimensions import (
    delivered_row,
    location_columns,
    provider_extras,
    row_problems,
    service_columns,
    tag_columns,
)
from billing_pipeline.adapters.azure.discover import discover_exports
from billing_pipeline.adapters.azure.headers import (
    AzureFields,
    billed_cost,
    billing_account,
    header_map,
    is_focus_export,
)
from billing_pipeline.adapters.base import in_column_order, read_export_file
from billing_pipeline.adapters.cells import parse_datetime
from billing_pipeline.adapters.deliveries import Delivery
from billing_pipeline.adapters.focus_native import FocusAdapter, with_delivered_identity
from billing_pipeline.adapters.shared_columns import SharedColumns
from billing_pipeline.platform.storage import Store

# The Azure adapter's output columns, in order (delivered `x_` columns, `_bad_reason` and `_az_row` follow).
COLUMN_ORDER: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
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
    "CommitmentDiscountName",
    "CommitmentDiscountType",
    "CommitmentDiscountCategory",
    "CommitmentDiscountStatus",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyListUnitPrice",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_TagList",
    "x_Dataset",
    "x_ChargeType",
    "x_PricingModel",
    "x_MeterCategory",
    "x_MeterSubcategory",
    "x_MeterId",
    "x_UnitOfMeasure",
    "x_ResourceGroup",
    "x_ResourceLocation",
    "x_BillingProfileId",
    "x_InvoiceSectionName",
    "x_PublisherType",
    "x_CostCenter",
    "x_AdditionalInfo",
    "x_CostInBillingCurrency",
)


class AzureAdapter:
    """Azure Cost Management exports: partitioned runs with manifest.json, or plain export files."""

    provider = "azure"
    _focus = FocusAdapter()

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        return discover_exports(store, source, root, billing_period, file_format)

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_export_file(local_file, file_format)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        if is_focus_export(schema):
            return self._focus.usage_start(schema)
        columns = header_map(schema)
        if "date" not in columns:
            raise ValueError("not an Azure cost export: no Date / UsageDateTime column")
        return parse_datetime(pl.col(columns["date"]), schema[columns["date"]])

    def identify(self, focus: pl.LazyFrame) -> pl.LazyFrame:
        """Each row's occurrence among identical rows of its file and what the file holds whatever its row order
        (rows of two files are duplicates only if the files are); a FocusCost export's by the FOCUS adapter."""
        if "_az_row" not in focus.collect_schema():
            return self._focus.identify(focus)
        return with_delivered_identity(focus, "_az_row", "_az_occurrence", "_az_file")

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        if "_az_row" not in schema:
            return self._focus.dedup_key(schema)
        return ["_az_row", "_az_occurrence", "_az_file"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Per row: the billed amount as delivered (for AmortizedCost, 0 on amortized rows: package doc)."""
        schema = raw.collect_schema()
        if is_focus_export(schema):
            return self._focus.raw_totals(raw)
        get = AzureFields(schema)
        return raw.select(
            billing_account(get).alias("BillingAccountId"),
            get.text("currency").alias("BillingCurrency"),
            billed_cost(get).alias("cost"),
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """FOCUS columns of every delivered row, the delivery's `x_` columns, `_bad_reason` and the row as delivered
        (`_az_row`, the first column of its identity: `identify`)."""
        schema = raw.collect_schema()
        if is_focus_export(schema):
            return self._focus.to_focus(raw)
        get = AzureFields(schema, SharedColumns())
        lookups = Lookups.of(raw, get)
        charge = classify_charge(get, lookups)
        columns = {
            **identity_columns(get),
            **charge_columns(get, charge),
            **cost_columns(get, charge),
            **pricing_columns(get, charge),
            **commitment_columns(get, charge),
            **service_columns(get, charge, lookups),
            **location_columns(get, lookups),
            **tag_columns(get, raw),
            **provider_extras(get, charge),
        }
        problems = row_problems(get, charge)
        return get.shared.apply(raw).select(
            *in_column_order(columns, COLUMN_ORDER),
            *[pl.col(c) for c in schema if c.startswith("x_")],
            problems.alias("_bad_reason"),
            delivered_row(get).alias("_az_row"),
        )
