"""AWS Cost and Usage Reports, CUR 2.0 (Data Exports) and legacy CUR, to FOCUS 1.2.

Both flavours are brought to CUR 2.0's snake_case names first (legacy `lineItem/UnblendedCost`
becomes `line_item_unblended_cost`, exactly as the Athena integration names it), so there is one
mapping to FOCUS. Effective (amortized) cost follows the rules AWS's own dashboards use (DOMAIN.md).
BilledCost and EffectiveCost are the CUR's numbers; nothing below changes them.

Mapping decisions (lookup tables: `aws_catalog`):
- RIFee / SavingsPlanRecurringFee carry the unused commitment as EffectiveCost. FOCUS books unused
  commitment as a Usage row with CommitmentDiscountStatus "Unused" (a Purchase that covers future
  charges has EffectiveCost 0), so these rows are Usage/Unused, ChargeFrequency Recurring, with
  CommitmentDiscountQuantity = the unused hours (RI) or amount (Savings Plan) and no
  ConsumedQuantity. Upfront fees stay Purchases with EffectiveCost 0. Covered usage and
  SavingsPlanNegation rows are Usage/Used, PricingCategory Committed.
- ListCost/ContractedCost are before commitment discounts: a SavingsPlanNegation (the discount
  itself) has 0 for both, an RI-covered hour its public on-demand cost (CUR books negotiated
  discounts as rows of their own); elsewhere ContractedCost = BilledCost, ContractedUnitPrice =
  the unblended rate, ListUnitPrice = the public on-demand rate (a recurring commitment fee's own
  rate, which has none).
- ProviderName, PublisherName and InvoiceIssuerName are "AWS": one name for one company, because
  FOCUS 1.2 reads ProviderName != InvoiceIssuerName as a third-party (marketplace) charge whose
  BilledCost must be 0. The legal entity that invoices (`bill_invoicing_entity`, e.g. "Amazon Web
  Services EMEA SARL") is kept in `x_InvoicingEntity`.
  Marketplace rows keep the seller (`line_item_legal_entity`) as PublisherName.
- Legacy CUR has no account names: BillingAccountName/SubAccountName fall back to the account id,
  the only label the export carries. BillingAccountType "Billing Account" (the payer), SubAccountType
  "AWS Account". PricingCurrency falls back to the billing currency (tax rows have none).
- Units are brought to the FOCUS Unit Format (`Hrs` -> `Hours`, `GB-Mo` -> `GB-Months`); the
  delivered unit is kept in `x_PricingUnit`. RegionId only where the row names an AWS region code
  (`global` is not one), RegionName only with it. ResourceType for every ResourceId.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import aws_catalog as catalog
from billing_pipeline.adapters.base import (
    MONEY_LIMIT,
    Delivery,
    FileProblem,
    discover_data_exports,
    files_delivery,
    is_inside,
    listing_fingerprint,
    load_manifest,
    modified_at,
    money_is_missing,
    money_problem,
    parse_datetime,
    parse_money,
    read_export_file,
    relative_to_anchor,
    text,
)
from billing_pipeline.adapters.tags import tags_from_columns, tags_from_map, tags_json
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.lookup import gather, key_index, lookup
from billing_pipeline.platform.storage import Store, join

PROVIDER = "AWS"
DEFAULT_INVOICING_ENTITY = "Amazon Web Services, Inc."

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

MONEY_INPUTS = (
    "line_item_unblended_cost",
    "pricing_public_on_demand_cost",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "reservation_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee",
    "line_item_usage_amount",
    "pricing_public_on_demand_rate",
    "line_item_unblended_rate",
    "reservation_unused_quantity",
    "reservation_total_reserved_units",
)
# Quantities, not money: no MONEY_LIMIT (a usage amount in bytes or requests can be large).
QUANTITY_INPUTS = ("line_item_usage_amount", "reservation_unused_quantity", "reservation_total_reserved_units")


def snake_case_legacy(name: str) -> str:
    """`lineItem/UnblendedCost` -> `line_item_unblended_cost`, the Athena / CUR 2.0 spelling."""
    if "/" not in name:
        return name
    category, _, field = name.partition("/")

    def snake(part: str) -> str:
        part = re.sub(r"[^0-9A-Za-z]+", "_", part)
        return re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower().strip("_").replace("__", "_")

    return f"{snake(category)}_{snake(field)}"


def _is_legacy_tag(name: str) -> bool:
    return name.startswith("resourceTags/")


def to_snake_frame(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Rename legacy slash columns (tag columns excepted) to CUR 2.0 names; CUR 2.0 passes through."""
    schema = raw.collect_schema()
    renames = {c: snake_case_legacy(c) for c in schema if "/" in c and not _is_legacy_tag(c)}
    # two legacy names may collapse to one snake name; keep the first, like Athena does
    seen: set[str] = set(c for c in schema if "/" not in c)
    mapping: dict[str, str] = {}
    for source, target in renames.items():
        if target in seen:
            continue
        seen.add(target)
        mapping[source] = target
    return raw.rename(mapping) if mapping else raw


def _tag_list(schema: pl.Schema) -> pl.Expr:
    legacy = [c for c in schema if _is_legacy_tag(c)]
    if legacy:
        return tags_from_columns({c.split("/", 1)[1]: c for c in legacy})
    if "resource_tags" in schema and isinstance(schema["resource_tags"], pl.Map):
        return tags_from_map("resource_tags")
    athena = [c for c in schema if c.startswith("resource_tags_")]
    if athena:
        return tags_from_columns({c.removeprefix("resource_tags_"): c for c in athena})
    return pl.lit([], dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})))


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
        frame = to_snake_frame(raw)
        schema = frame.collect_schema()
        if "product" in schema and isinstance(schema["product"], pl.Map):
            for key in ("product_name", "servicename", "region", "location"):
                if f"product_{key}" not in schema:
                    frame = frame.with_columns(pl.col("product").map.get(key).alias(f"product_{key}"))
            schema = frame.collect_schema()

        def money(name: str) -> pl.Expr:
            if name not in schema:
                return pl.lit(None, dtype=MONEY)
            return parse_money(pl.col(name), schema[name], None if name in QUANTITY_INPUTS else MONEY_LIMIT)

        def string(name: str) -> pl.Expr:
            return text(name) if name in schema else pl.lit(None, dtype=pl.String)

        def when_time(name: str) -> pl.Expr:
            if name not in schema:
                return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
            return parse_datetime(pl.col(name), schema[name])

        def keep(name: str, expr: pl.Expr) -> pl.Expr:
            """Evaluate `expr` once per row as a temporary column; later expressions read the column.

            The FOCUS columns reuse the same intermediate values many times over; polars does not
            always share them across when/then branches, and re-evaluating them dominated runtime.
            """
            nonlocal frame
            frame = frame.with_columns(expr.alias(f"_{name}"))
            return pl.col(f"_{name}")

        def per_distinct(name: str, inputs: list[pl.Expr], transform: Callable[..., pl.Expr]) -> pl.Expr:
            """`transform(*inputs)` computed once per distinct input tuple, then looked up per row: the
            catalog's regexes and lookups run on thousands of values, not millions of rows. The
            distinct values are read in a narrow pass of their own (a few columns); the lookup is a
            streaming lookup on one composite key (`billing_pipeline.platform.lookup`), so row order is kept."""
            nonlocal frame
            columns = [keep(f"{name}_in{i}", expr) for i, expr in enumerate(inputs)]
            key = pl.concat_str([c.cast(pl.String).fill_null("\x00") for c in columns], separator="\x1f")
            table = (
                frame.select(*columns)
                .unique()
                .collect(engine="streaming")
                .select(key.alias("key"), transform(*columns).alias("value"))
            )
            return keep(name, gather(key_index(key, table["key"]), table["value"]))

        line_type = keep("line_type", string("line_item_line_item_type"))
        billed = keep("billed", money("line_item_unblended_cost"))
        zero = pl.lit(0, dtype=MONEY)
        reservation_arn = keep("reservation_arn", string("reservation_reservation_a_r_n"))
        savings_plan_arn = keep("savings_plan_arn", string("savings_plan_savings_plan_a_r_n"))
        effective = keep(
            "effective",
            (
                pl.when(line_type == "SavingsPlanCoveredUsage")
                .then(money("savings_plan_savings_plan_effective_cost").fill_null(zero))
                .when(line_type == "SavingsPlanRecurringFee")
                .then(
                    money("savings_plan_total_commitment_to_date").fill_null(zero)
                    - money("savings_plan_used_commitment").fill_null(zero)
                )
                .when(line_type.is_in(["SavingsPlanNegation", "SavingsPlanUpfrontFee"]))
                .then(zero)
                .when(line_type == "DiscountedUsage")
                .then(money("reservation_effective_cost").fill_null(zero))
                .when(line_type == "RIFee")
                .then(
                    money("reservation_unused_amortized_upfront_fee_for_billing_period").fill_null(zero)
                    + money("reservation_unused_recurring_fee").fill_null(zero)
                )
                .when((line_type == "Fee") & reservation_arn.is_not_null())
                .then(zero)
                .otherwise(billed)
            ),
        )
        commitment_id = keep(
            "commitment_id",
            (
                pl.when(line_type.is_in(SAVINGS_PLAN_TYPES))
                .then(savings_plan_arn)
                .when(line_type.is_in(["DiscountedUsage", "RIFee"]) | (line_type == "Fee"))
                .then(reservation_arn)
            ),
        )
        has_commitment = commitment_id.is_not_null()
        # A recurring commitment fee carries the unused commitment as its EffectiveCost: in FOCUS that
        # is a Usage row with CommitmentDiscountStatus "Unused" (a Purchase must have EffectiveCost 0).
        unused_fee = keep("unused_fee", line_type.is_in(UNUSED_COMMITMENT_TYPES) & has_commitment)
        category = keep(
            "category",
            (
                pl.when(line_type.is_in(USAGE_TYPES) | unused_fee)
                .then(pl.lit("Usage"))
                .when(line_type.is_in(PURCHASE_TYPES))
                .then(pl.lit("Purchase"))
                .when(line_type == "Tax")
                .then(pl.lit("Tax"))
                .when(line_type.is_in(CREDIT_TYPES))
                .then(pl.lit("Credit"))
                .otherwise(pl.lit("Adjustment"))
            ),
        )
        frequency = (
            pl.when(line_type.is_in(USAGE_TYPES))
            .then(pl.lit("Usage-Based"))
            .when(line_type.is_in(RECURRING_TYPES))
            .then(pl.lit("Recurring"))
            .otherwise(pl.lit("One-Time"))
        )
        is_usage = category == "Usage"
        priced = category.is_in(["Usage", "Purchase"])
        status = keep(
            "status",
            (
                pl.when(has_commitment & is_usage).then(
                    pl.when(unused_fee).then(pl.lit("Unused")).otherwise(pl.lit("Used"))
                )
            ),
        )
        commitment_type = keep(
            "commitment_type",
            (
                pl.when(~has_commitment)
                .then(None)
                .when(line_type.str.starts_with("SavingsPlan"))
                .then(pl.lit("Savings Plan"))
                .otherwise(pl.lit("Reserved Instance"))
            ),
        )

        product_code = keep("product_code", string("line_item_product_code"))
        product_name = keep("product_name", pl.coalesce(string("product_product_name"), string("product_servicename")))
        code = keep("code", catalog.service_code(product_code, string("product_servicecode"), product_name))
        service_name = keep(
            "service_name", pl.coalesce(product_name, catalog.service_name(code), code, pl.lit("Unknown"))
        )

        usage_amount = keep("usage_amount", money("line_item_usage_amount"))
        delivered_unit = keep("delivered_unit", pl.coalesce(string("pricing_unit"), string("product_pricing_unit")))
        unit = per_distinct(
            "unit",
            [pl.coalesce(delivered_unit, pl.when(line_type.is_in(UNUSED_COMMITMENT_TYPES)).then(pl.lit("Hours")))],
            catalog.focus_unit,
        )
        pricing_quantity = keep("pricing_quantity", pl.when(priced & unit.is_not_null()).then(usage_amount))
        pricing_unit = pl.when(pricing_quantity.is_not_null()).then(unit)
        consumed_quantity = keep(
            "consumed_quantity",
            pl.when(is_usage & (status != "Unused").fill_null(True) & unit.is_not_null()).then(usage_amount),
        )
        consumed_unit = pl.when(consumed_quantity.is_not_null()).then(unit)

        negation = line_type == "SavingsPlanNegation"
        # A recurring commitment fee has no on-demand rate: its published price is the fee's own rate.
        list_unit_price = (
            pl.when(negation)
            .then(zero)
            .when(line_type.is_in(UNUSED_COMMITMENT_TYPES))
            .then(money("line_item_unblended_rate"))
            .otherwise(money("pricing_public_on_demand_rate"))
        )
        list_cost = pl.when(negation).then(zero).otherwise(pl.coalesce(money("pricing_public_on_demand_cost"), billed))
        # Contracted = before commitment discounts: an RI-covered hour at its public price (CUR books
        # negotiated discounts as rows of their own), a negation (the commitment discount) at 0.
        contracted_cost = (
            pl.when(negation)
            .then(zero)
            .when(line_type == "DiscountedUsage")
            .then(pl.coalesce(money("pricing_public_on_demand_cost"), billed))
            .otherwise(billed)
        )
        contracted_unit_price = pl.when(pricing_quantity.is_not_null()).then(
            pl.when(negation)
            .then(zero)
            .when(line_type == "DiscountedUsage")
            .then(money("pricing_public_on_demand_rate"))
            .otherwise(money("line_item_unblended_rate"))
        )

        billing_currency = string("line_item_currency_code")
        pricing_currency = pl.coalesce(string("pricing_currency"), billing_currency)
        same_currency = pricing_currency == billing_currency
        commitment_unit_currency = pl.coalesce(string("pricing_currency"), billing_currency)
        commitment_quantity = (
            pl.when(~has_commitment | ~priced)
            .then(None)
            .when(line_type == "SavingsPlanCoveredUsage")
            .then(money("savings_plan_savings_plan_effective_cost"))
            .when(negation)
            .then(zero)
            .when(line_type == "SavingsPlanRecurringFee")
            .then(effective)
            .when(line_type == "SavingsPlanUpfrontFee")
            .then(billed)
            .when(line_type == "DiscountedUsage")
            .then(pl.when(pricing_unit == "Hours").then(usage_amount))
            .when(line_type == "RIFee")
            .then(money("reservation_unused_quantity"))
            .otherwise(money("reservation_total_reserved_units"))
        )
        commitment_unit = pl.when(commitment_quantity.is_not_null()).then(
            pl.when(commitment_type == "Savings Plan").then(commitment_unit_currency).otherwise(pl.lit("Hours"))
        )

        region = keep("region", catalog.region_id(string("product_region_code"), string("product_region")))
        region_name = keep("region_name", catalog.region_name(region, string("product_location")))
        resource_id = keep("resource_id", string("line_item_resource_id"))
        resource_type = keep("resource_type", catalog.resource_type(resource_id, code))  # ids are near-unique
        sku_meter = per_distinct("sku_meter", [string("line_item_usage_type")], catalog.sku_meter)
        usage_account = string("line_item_usage_account_id")
        payer_account = string("bill_payer_account_id")
        sku_id = string("product_sku")
        capacity_id = string("capacity_reservation_capacity_reservation_arn")
        capacity_status = lookup(
            string("capacity_reservation_capacity_reservation_status").str.to_lowercase(),
            {"used": "Used", "unused": "Unused"},
        )
        billing_entity = string("bill_billing_entity")
        publisher = (
            pl.when(billing_entity == "AWS Marketplace")
            .then(pl.coalesce(string("line_item_legal_entity"), pl.lit("AWS Marketplace")))
            .otherwise(pl.lit(PROVIDER))
        )
        tag_list = keep("tag_list", _tag_list(schema))
        bad_reason = pl.concat_str(
            [
                money_problem(pl.col(name), schema[name], name, None if name in QUANTITY_INPUTS else MONEY_LIMIT)
                for name in MONEY_INPUTS
                if name in schema
            ]
            + [
                pl.when(
                    money_is_missing(pl.col(self.billed_cost_column), schema[self.billed_cost_column])
                    if self.billed_cost_column in schema
                    else pl.lit(True)
                ).then(pl.lit("missing cost in line_item_unblended_cost"))
            ],
            separator="; ",
            ignore_nulls=True,
        )
        return frame.select(
            billed.alias("BilledCost"),
            payer_account.alias("BillingAccountId"),
            pl.coalesce(string("bill_payer_account_name"), payer_account).alias("BillingAccountName"),
            pl.when(payer_account.is_not_null()).then(pl.lit("Billing Account")).alias("BillingAccountType"),
            billing_currency.alias("BillingCurrency"),
            when_time("bill_billing_period_end_date").alias("BillingPeriodEnd"),
            when_time("bill_billing_period_start_date").alias("BillingPeriodStart"),
            pl.when(capacity_id.is_not_null()).then(capacity_id).alias("CapacityReservationId"),
            pl.when(capacity_id.is_not_null()).then(capacity_status).alias("CapacityReservationStatus"),
            category.alias("ChargeCategory"),
            pl.lit(None, dtype=pl.String).alias("ChargeClass"),
            string("line_item_line_item_description").alias("ChargeDescription"),
            when_time("line_item_usage_end_date").alias("ChargePeriodEnd"),
            when_time("line_item_usage_start_date").alias("ChargePeriodStart"),
            contracted_cost.alias("ContractedCost"),
            effective.alias("EffectiveCost"),
            pl.lit(PROVIDER).alias("InvoiceIssuerName"),
            list_cost.alias("ListCost"),
            pricing_quantity.alias("PricingQuantity"),
            pricing_unit.alias("PricingUnit"),
            pl.lit(PROVIDER).alias("ProviderName"),
            publisher.alias("PublisherName"),
            catalog.service_category(code).alias("ServiceCategory"),
            catalog.service_subcategory(code).alias("ServiceSubcategory"),
            service_name.alias("ServiceName"),
            string("line_item_availability_zone").alias("AvailabilityZone"),
            frequency.alias("ChargeFrequency"),
            string("bill_invoice_id").alias("InvoiceId"),
            commitment_id.alias("CommitmentDiscountId"),
            commitment_type.alias("CommitmentDiscountType"),
            pl.when(commitment_type == "Savings Plan")
            .then(pl.lit("Spend"))
            .when(commitment_type == "Reserved Instance")
            .then(pl.lit("Usage"))
            .alias("CommitmentDiscountCategory"),
            status.alias("CommitmentDiscountStatus"),
            commitment_quantity.alias("CommitmentDiscountQuantity"),
            commitment_unit.alias("CommitmentDiscountUnit"),
            consumed_quantity.alias("ConsumedQuantity"),
            consumed_unit.alias("ConsumedUnit"),
            contracted_unit_price.alias("ContractedUnitPrice"),
            pl.when(pricing_quantity.is_not_null()).then(list_unit_price).alias("ListUnitPrice"),
            pl.when(priced)
            .then(
                pl.when(line_type.is_in(COMMITTED_TYPES) | unused_fee)
                .then(pl.lit("Committed"))
                .when(line_type.is_in(PURCHASE_TYPES))
                .then(pl.lit("Standard"))
                .when((string("pricing_term") == "Spot") | string("line_item_usage_type").str.contains("SpotUsage"))
                .then(pl.lit("Dynamic"))
                .otherwise(pl.lit("Standard"))
            )
            .alias("PricingCategory"),
            pricing_currency.alias("PricingCurrency"),
            pl.when(same_currency).then(contracted_unit_price).alias("PricingCurrencyContractedUnitPrice"),
            pl.when(same_currency).then(effective).alias("PricingCurrencyEffectiveCost"),
            pl.when(same_currency & pricing_quantity.is_not_null())
            .then(list_unit_price)
            .alias("PricingCurrencyListUnitPrice"),
            region.alias("RegionId"),
            region_name.alias("RegionName"),
            resource_id.alias("ResourceId"),
            resource_type.alias("ResourceType"),
            pl.when(category != "Tax").then(sku_id).alias("SkuId"),
            pl.when((category != "Tax") & sku_id.is_not_null()).then(sku_meter).alias("SkuMeter"),
            pl.when((category != "Tax") & sku_id.is_not_null())
            .then(pl.coalesce(string("pricing_rate_code"), string("pricing_rate_id")))
            .alias("SkuPriceId"),
            usage_account.alias("SubAccountId"),
            pl.coalesce(string("line_item_usage_account_name"), usage_account).alias("SubAccountName"),
            pl.when(usage_account.is_not_null()).then(pl.lit("AWS Account")).alias("SubAccountType"),
            tags_json(tag_list).alias("Tags"),
            tag_list.alias("x_TagList"),
            line_type.alias("x_LineItemType"),
            string("identity_line_item_id").alias("x_LineItemId"),
            string("identity_time_interval").alias("x_TimeInterval"),
            product_code.alias("x_ProductCode"),
            string("line_item_usage_type").alias("x_UsageType"),
            string("line_item_operation").alias("x_Operation"),
            pl.coalesce(string("bill_invoicing_entity"), pl.lit(DEFAULT_INVOICING_ENTITY)).alias("x_InvoicingEntity"),
            delivered_unit.alias("x_PricingUnit"),
            *[pl.col(c) for c in schema if c.startswith("x_")],
            pl.when(bad_reason != "").then(bad_reason).alias("_bad_reason"),
        )


class AwsCur2Adapter(AwsCurAdapter):
    """CUR 2.0 from AWS Data Exports: manifests under `metadata/BILLING_PERIOD=YYYY-MM/`."""

    provider = "aws_cur2"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        return discover_data_exports(store, source, root, billing_period, file_format)


class AwsLegacyCurAdapter(AwsCurAdapter):
    """Legacy CUR: `<root>/<yyyymmdd-yyyymmdd>/[<assemblyId>/]<name>-Manifest.json` (CSV), or the
    Athena integration's `<root>/year=YYYY/month=M/*.parquet` (snake_case, overwrite mode).

    Which assembly is current. AWS rewrites the period-level manifest `<yyyymmdd-yyyymmdd>/<name>-Manifest.json`
    with every delivery; its `assemblyId` names the current assembly, and that delivery is marked
    `named_current`, so it is current whatever the objects' times say (a landing zone copied in one
    go, as `aws s3 sync` does, gives every object the same LastModified). The legacy manifest
    states no delivery time (its fields: assemblyId, account, columns, charset, compression,
    contentType, reportId, reportName, billingPeriod, bucket, reportKeys, additionalArtifactKeys),
    so the other assemblies are dated by their manifest object's LastModified, the only evidence
    left. When the named assembly is incomplete (or the period-level manifest is unreadable), it is
    passed over and the others are taken newest first, as for any passed-over delivery; when the
    newest complete ones share a LastModified with other files, nothing is published and the tie is
    reported naming them (`choose_current`). Without a period-level manifest the same time order
    decides.
    """

    provider = "aws_cur"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        year, month = billing_period.split("-")
        athena_dir = join(root, f"year={int(year)}", f"month={int(month)}")
        athena_files = [f for f in store.find(athena_dir) if f.url.endswith(".parquet")]
        if athena_files:
            return files_delivery(source, billing_period, athena_files, "parquet", "overwrite")
        start = f"{year}{month}01"
        period_dirs = [d for d in store.list_dirs(root) if d.rstrip("/").rsplit("/", 1)[-1].startswith(f"{start}-")]
        deliveries: dict[str, Delivery] = {}
        for period_dir in period_dirs:
            range_name = period_dir.rstrip("/").rsplit("/", 1)[-1]
            listing = store.find(period_dir, maxdepth=2)
            present = {f.url: f for f in listing}
            for manifest in (f for f in listing if f.url.endswith("-Manifest.json")):
                delivery = self._delivery(
                    store, source, root, billing_period, range_name, manifest, present, file_format
                )
                if manifest.url.rsplit("/", 1)[0] == period_dir.rstrip("/"):
                    delivery = replace(delivery, named_current=True)  # the period-level manifest names it
                known = deliveries.get(delivery.version)
                if known is not None:
                    # the period-level manifest and the assembly's own describe one delivery: keep the later
                    later = delivery if delivery.delivered_at > known.delivered_at else known
                    delivery = replace(later, named_current=known.named_current or delivery.named_current)
                deliveries[delivery.version] = delivery
        return list(deliveries.values())

    def _delivery(
        self,
        store: Store,
        source: str,
        root: str,
        billing_period: str,
        range_name: str,
        manifest,
        present: dict,
        file_format: str,
    ) -> Delivery:
        document, problem = load_manifest(store, manifest.url)
        delivered_at = modified_at(manifest.modified)
        if document is None:
            return Delivery(source, billing_period, manifest.url, delivered_at, (), manifest.url, (problem,))
        assembly = str(document.get("assemblyId") or "")
        problems: list[FileProblem] = []
        files: list[str] = []
        for key in document.get("reportKeys") or []:
            relative = relative_to_anchor(str(key), re.escape(range_name) + "/")
            if relative is None or not is_inside(relative, range_name):
                problems.append(
                    FileProblem(
                        str(key),
                        f"manifest {manifest.url} lists a file outside its {range_name}/ prefix",
                        "outside_prefix",
                    )
                )
                continue
            local = join(root, relative)
            if local not in present:
                problems.append(FileProblem(local, f"listed in manifest {manifest.url} but not delivered", "missing"))
                continue
            if local in files:
                problems.append(
                    FileProblem(local, f"listed twice in manifest {manifest.url}; read once", "listed_twice")
                )
                continue
            files.append(local)
        fingerprint = listing_fingerprint([present[u] for u in files])
        return Delivery(
            source=source,
            billing_period=billing_period,
            version=assembly or manifest.url,
            delivered_at=delivered_at,
            files=tuple(files),
            manifest_uri=manifest.url,
            problems=tuple(problems),
            file_format=file_format,
            fingerprint=fingerprint,
        )
