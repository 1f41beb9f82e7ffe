"""AWS Cost and Usage Reports, CUR 2.0 (Data Exports) and legacy CUR, to FOCUS 1.2.

Both flavours are brought to CUR 2.0's snake_case names first (legacy `lineItem/UnblendedCost`
becomes `line_item_unblended_cost`, exactly as the Athena integration names it), so there is one
mapping to FOCUS. Effective (amortized) cost follows the rules AWS's own dashboards use (DOMAIN.md).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import polars as pl

from billing_pipeline.adapters.base import (
    Delivery,
    FileProblem,
    column_or_null,
    discover_data_exports,
    is_inside,
    load_manifest,
    modified_at,
    money_is_unparseable,
    parse_datetime,
    parse_money,
    read_export_file,
    relative_to_anchor,
    text,
)
from billing_pipeline.adapters.tags import tags_json, tags_from_columns, tags_from_map
from billing_pipeline.focus import MONEY
from billing_pipeline.storage import Store, join

SERVICE_CATEGORY = {
    "AmazonEC2": "Compute",
    "AWSLambda": "Compute",
    "AmazonECS": "Compute",
    "AmazonEKS": "Compute",
    "AmazonLightsail": "Compute",
    "AmazonS3": "Storage",
    "AmazonEFS": "Storage",
    "AmazonGlacier": "Storage",
    "AWSBackup": "Storage",
    "AmazonRDS": "Databases",
    "AmazonDynamoDB": "Databases",
    "AmazonElastiCache": "Databases",
    "AmazonRedshift": "Databases",
    "AmazonDocDB": "Databases",
    "AWSDataTransfer": "Networking",
    "AmazonVPC": "Networking",
    "AmazonCloudFront": "Networking",
    "AmazonRoute53": "Networking",
    "AWSELB": "Networking",
    "AmazonCloudWatch": "Management and Governance",
    "AWSCloudTrail": "Management and Governance",
    "AWSConfig": "Management and Governance",
    "AWSSupportBusiness": "Management and Governance",
    "AWSSupportEnterprise": "Management and Governance",
    "AmazonSNS": "Integration",
    "AWSQueueService": "Integration",
    "AmazonSQS": "Integration",
    "AWSGlue": "Analytics",
    "AmazonAthena": "Analytics",
    "AmazonKinesis": "Analytics",
    "AmazonSageMaker": "AI and Machine Learning",
    "AmazonBedrock": "AI and Machine Learning",
    "awskms": "Security",
    "AWSSecretsManager": "Security",
    "AmazonGuardDuty": "Security",
    "AWSShield": "Security",
    "AmazonCognito": "Identity",
}

USAGE_TYPES = ("Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation")
PURCHASE_TYPES = ("SavingsPlanUpfrontFee", "SavingsPlanRecurringFee", "RIFee", "Fee")
CREDIT_TYPES = ("Credit", "EdpDiscount", "PrivateRateDiscount", "BundledDiscount", "Discount", "DistributorDiscount")
RECURRING_TYPES = ("SavingsPlanRecurringFee", "RIFee")

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
)


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
            parse_money(pl.col(self.billed_cost_column), schema[self.billed_cost_column]).alias("cost"),
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
            return parse_money(pl.col(name), schema[name])

        def string(name: str) -> pl.Expr:
            return text(name) if name in schema else pl.lit(None, dtype=pl.String)

        def when_time(name: str) -> pl.Expr:
            if name not in schema:
                return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
            return parse_datetime(pl.col(name), schema[name])

        line_type = string("line_item_line_item_type")
        billed = money("line_item_unblended_cost")
        zero = pl.lit(0, dtype=MONEY)
        reservation_arn = string("reservation_reservation_a_r_n")
        savings_plan_arn = string("savings_plan_savings_plan_a_r_n")
        effective = (
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
        )
        category = (
            pl.when(line_type.is_in(USAGE_TYPES))
            .then(pl.lit("Usage"))
            .when(line_type.is_in(PURCHASE_TYPES))
            .then(pl.lit("Purchase"))
            .when(line_type == "Tax")
            .then(pl.lit("Tax"))
            .when(line_type.is_in(CREDIT_TYPES))
            .then(pl.lit("Credit"))
            .otherwise(pl.lit("Adjustment"))
        )
        frequency = (
            pl.when(line_type.is_in(USAGE_TYPES))
            .then(pl.lit("Usage-Based"))
            .when(line_type.is_in(RECURRING_TYPES))
            .then(pl.lit("Recurring"))
            .otherwise(pl.lit("One-Time"))
        )
        is_usage = line_type.is_in(USAGE_TYPES)
        commitment_id = (
            pl.when(line_type.is_in(["SavingsPlanCoveredUsage", "SavingsPlanNegation", "SavingsPlanRecurringFee",
                                     "SavingsPlanUpfrontFee"]))
            .then(savings_plan_arn)
            .when(line_type.is_in(["DiscountedUsage", "RIFee"]) | ((line_type == "Fee") & reservation_arn.is_not_null()))
            .then(reservation_arn)
        )
        commitment_type = (
            pl.when(commitment_id.is_null())
            .then(None)
            .when(line_type.str.starts_with("SavingsPlan"))
            .then(pl.lit("Savings Plan"))
            .otherwise(pl.lit("Reserved Instance"))
        )
        product_code = string("line_item_product_code")
        service_code = pl.coalesce(string("product_servicecode"), product_code)
        service_name = pl.coalesce(
            string("product_product_name"), string("product_servicename"), service_code, pl.lit("Unknown")
        )
        service_category = service_code.replace_strict(SERVICE_CATEGORY, default="Other", return_dtype=pl.String)
        usage_amount = money("line_item_usage_amount")
        pricing_unit = pl.coalesce(string("pricing_unit"), string("product_pricing_unit"))
        invoicing_entity = pl.coalesce(string("bill_invoicing_entity"), pl.lit("Amazon Web Services, Inc."))
        billing_entity = string("bill_billing_entity")
        publisher = (
            pl.when(billing_entity == "AWS Marketplace")
            .then(pl.coalesce(string("line_item_legal_entity"), pl.lit("AWS Marketplace")))
            .otherwise(pl.lit("Amazon Web Services"))
        )
        tag_list = _tag_list(schema)
        bad_reason = pl.concat_str(
            [
                pl.when(money_is_unparseable(pl.col(name), schema[name])).then(
                    pl.format("unparseable number {} in {}", pl.col(name).cast(pl.String), pl.lit(name))
                )
                for name in MONEY_INPUTS
                if name in schema
            ]
            + [pl.when(string("line_item_unblended_cost").is_null()).then(
                pl.lit("missing cost in line_item_unblended_cost"))],
            separator="; ",
            ignore_nulls=True,
        )
        return frame.select(
            billed.alias("BilledCost"),
            string("bill_payer_account_id").alias("BillingAccountId"),
            string("bill_payer_account_name").alias("BillingAccountName"),
            pl.lit("Billing Account").alias("BillingAccountType"),
            string("line_item_currency_code").alias("BillingCurrency"),
            when_time("bill_billing_period_end_date").alias("BillingPeriodEnd"),
            when_time("bill_billing_period_start_date").alias("BillingPeriodStart"),
            category.alias("ChargeCategory"),
            pl.lit(None, dtype=pl.String).alias("ChargeClass"),
            string("line_item_line_item_description").alias("ChargeDescription"),
            when_time("line_item_usage_end_date").alias("ChargePeriodEnd"),
            when_time("line_item_usage_start_date").alias("ChargePeriodStart"),
            billed.alias("ContractedCost"),
            effective.alias("EffectiveCost"),
            invoicing_entity.alias("InvoiceIssuerName"),
            pl.coalesce(money("pricing_public_on_demand_cost"), billed).alias("ListCost"),
            pl.when(is_usage & pricing_unit.is_not_null()).then(usage_amount).alias("PricingQuantity"),
            pl.when(is_usage & usage_amount.is_not_null()).then(pricing_unit).alias("PricingUnit"),
            pl.lit("AWS").alias("ProviderName"),
            publisher.alias("PublisherName"),
            service_category.alias("ServiceCategory"),
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
            pl.when(is_usage).then(usage_amount).alias("ConsumedQuantity"),
            pl.when(is_usage & usage_amount.is_not_null()).then(pricing_unit).alias("ConsumedUnit"),
            money("pricing_public_on_demand_rate").alias("ListUnitPrice"),
            string("pricing_currency").alias("PricingCurrency"),
            string("product_region_code").alias("RegionId"),
            pl.coalesce(string("product_location"), string("product_region")).alias("RegionName"),
            string("line_item_resource_id").alias("ResourceId"),
            string("product_sku").alias("SkuId"),
            pl.coalesce(string("pricing_rate_code"), string("pricing_rate_id")).alias("SkuPriceId"),
            string("line_item_usage_account_id").alias("SubAccountId"),
            string("line_item_usage_account_name").alias("SubAccountName"),
            pl.when(string("line_item_usage_account_id").is_not_null())
            .then(pl.lit("AWS Account"))
            .alias("SubAccountType"),
            tags_json(tag_list).alias("Tags"),
            tag_list.alias("x_TagList"),
            line_type.alias("x_LineItemType"),
            string("identity_line_item_id").alias("x_LineItemId"),
            string("identity_time_interval").alias("x_TimeInterval"),
            product_code.alias("x_ProductCode"),
            string("line_item_usage_type").alias("x_UsageType"),
            string("line_item_operation").alias("x_Operation"),
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
    Athena integration's `<root>/year=YYYY/month=M/*.parquet` (snake_case, overwrite mode)."""

    provider = "aws_cur"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        year, month = billing_period.split("-")
        athena_dir = join(root, f"year={int(year)}", f"month={int(month)}")
        athena_files = [f for f in store.find(athena_dir) if f.url.endswith(".parquet")]
        if athena_files:
            fingerprint = "|".join(f"{f.url}:{f.size}:{f.etag or f.modified}" for f in athena_files)
            return [
                Delivery(
                    source=source,
                    billing_period=billing_period,
                    version="overwrite-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
                    delivered_at=max(modified_at(f.modified) for f in athena_files),
                    files=tuple(f.url for f in athena_files),
                    file_format="parquet",
                    fingerprint=fingerprint,
                )
            ]
        start = f"{year}{month}01"
        period_dirs = [d for d in store.list_dirs(root) if d.rstrip("/").rsplit("/", 1)[-1].startswith(f"{start}-")]
        deliveries: dict[str, Delivery] = {}
        for period_dir in period_dirs:
            range_name = period_dir.rstrip("/").rsplit("/", 1)[-1]
            listing = store.find(period_dir, maxdepth=2)
            present = {f.url: f for f in listing}
            for manifest in (f for f in listing if f.url.endswith("-Manifest.json")):
                delivery = self._delivery(store, source, root, billing_period, range_name, manifest, present,
                                          file_format)
                known = deliveries.get(delivery.version)
                if known is None or delivery.delivered_at > known.delivered_at:
                    deliveries[delivery.version] = delivery
        return list(deliveries.values())

    def _delivery(self, store: Store, source: str, root: str, billing_period: str, range_name: str, manifest,
                  present: dict, file_format: str) -> Delivery:
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
                    FileProblem(str(key), f"manifest {manifest.url} lists a file outside its {range_name}/ prefix",
                                "outside_prefix")
                )
                continue
            local = join(root, relative)
            if local not in present:
                problems.append(FileProblem(local, f"listed in manifest {manifest.url} but not delivered", "missing"))
                continue
            if local in files:
                problems.append(FileProblem(local, f"listed twice in manifest {manifest.url}; read once", "listed_twice"))
                continue
            files.append(local)
        fingerprint = "|".join(f"{u}:{present[u].size}:{present[u].etag or present[u].modified}" for u in files)
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
