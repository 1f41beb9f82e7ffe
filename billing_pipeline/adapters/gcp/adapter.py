"""The GCP billing export adapter: every export file of a period is one append-only delivery."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import polars as pl

from billing_pipeline.adapters.base import in_column_order
from billing_pipeline.adapters.cells import MONEY_LIMIT, parse_money, text
from billing_pipeline.adapters.deliveries import Delivery
from billing_pipeline.adapters.gcp.columns import (
    charge_columns,
    classify_charge,
    cost_columns,
    credit_rows,
    identity_columns,
    location_columns,
    pricing_columns,
    provider_extras,
    row_identity,
    row_problems,
    service_columns,
    tag_columns,
)
from billing_pipeline.adapters.gcp.fields import GcpFields, distinct_values
from billing_pipeline.adapters.gcp.reading import JSON_SUFFIXES, PARQUET_SUFFIXES, gcp_time, read_gcp_file
from billing_pipeline.adapters.manifests import files_delivery
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store

# The GCP adapter's output columns, in order (delivered `x_` columns, `_bad_reason` and the row identity follow).
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
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCurrencyListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
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
    "x_InvoiceMonth",
    "x_CostType",
    "x_ExportTime",
    "x_ServiceId",
    "x_ProjectNumber",
    "x_Location",
    "x_AdjustmentId",
    "x_AdjustmentType",
    "x_AdjustmentMode",
    "x_TransactionType",
    "x_PricingUnit",
    "x_ConsumedUnit",
    "x_CurrencyConversionRate",
    "x_CreditId",
    "x_CreditType",
)


class GcpAdapter:
    """GCP billing export files: every NDJSON / Parquet file under the source URL, append-only."""

    provider = "gcp"
    bills_by_invoice_month = True

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        """Every export file under the root, except files exported (hive folder) before the period started.

        Each file's identity is kept (`Delivery.file_identities`): an append-only export shares its files
        between the deliveries of later periods, and their per-file day sums are cached by it (`fingerprint.py`).
        """
        period_start = f"{billing_period}-01"
        files = []
        for info in store.find(root):
            name = info.url.lower()
            if not name.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES) or "/_" in info.url:
                continue
            exported = re.search(r"/export_(?:date|month)=(\d{4}-\d\d(?:-\d\d)?)/", info.url)
            if exported and exported.group(1) < period_start[: len(exported.group(1))]:
                continue
            files.append(info)
        return [
            replace(delivery, file_identities=tuple(info.identity for info in files))
            for delivery in files_delivery(source, billing_period, files, file_format, "append")
        ]

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_gcp_file(local_file)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        if "usage_start_time" not in schema:
            raise ValueError("not a GCP billing export: no usage_start_time column")
        return gcp_time(pl.col("usage_start_time"), schema["usage_start_time"])

    def identify(self, focus: pl.LazyFrame) -> pl.LazyFrame:
        """A row's key is its own columns."""
        return focus

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        """Every delivered column (export_time included) and which FOCUS row of it: see module doc."""
        return ["_gcp_row", "_gcp_part"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Per row: cost plus its credits (both are BilledCost in FOCUS), as Decimal."""
        schema = raw.collect_schema()
        cost = parse_money(pl.col("cost"), schema["cost"], MONEY_LIMIT) if "cost" in schema else pl.lit(None, MONEY)
        amount = pl.element().struct.field("amount")
        credits = GcpFields(schema).credits().list.eval(parse_money(amount, pl.Float64, MONEY_LIMIT)).list.sum()
        return raw.select(
            text("billing_account_id").alias("BillingAccountId"),
            text("currency").alias("BillingCurrency"),
            (cost.fill_null(0) + credits.fill_null(0)).cast(MONEY).alias("cost"),
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """One FOCUS row per delivered row, then one Credit row per credit (`credit_rows`)."""
        fields = GcpFields(raw.collect_schema())
        distinct = distinct_values(raw, fields)
        charge = classify_charge(fields)
        columns = {
            **identity_columns(fields),
            **charge_columns(fields, charge),
            **cost_columns(fields, charge),
            **pricing_columns(fields, charge, distinct),
            **service_columns(fields, charge, distinct),
            **location_columns(fields),
            **tag_columns(fields),
            **provider_extras(fields, charge),
        }
        charge_rows = [
            *in_column_order(columns, COLUMN_ORDER),
            *[pl.col(c) for c in fields.schema if c.startswith("x_")],
            row_problems(fields).alias("_bad_reason"),
            *row_identity(fields),
        ]
        # The credits' charge rows are mapped again from the raw rows that have credits: sharing one
        # mapped frame between the two parts made polars cache it whole (the day's every row in memory).
        with_credits = raw.filter(fields.credits().list.len() > 0).select(charge_rows)
        helpers = ("_gcp_credits", "_gcp_index")
        return pl.concat(
            [raw.select(charge_rows).drop(helpers), credit_rows(with_credits).drop(helpers)], how="vertical"
        )
