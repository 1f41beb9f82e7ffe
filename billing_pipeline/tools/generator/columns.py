"""Column sets of the generated exports, importable by the pipeline's readers and tests.

The lists are the contract between the generator and the readers: a reader that selects these
columns reads every file this package writes. ``CUR2_COLUMNS`` is the full CUR 2.0 table of a public
Data Exports definition (see ``shared/cur2_columns.txt``); ``LEGACY_CUR_COLUMNS`` is the header of a
real legacy CUR CSV (focus_converters' anonymised sample) plus the columns this generator fills that
the sample lacks; ``FOCUS_COLUMNS`` is every FOCUS 1.2 column (1.3 additions left out).
"""

from __future__ import annotations

import re

from billing_pipeline.platform.focus import FOCUS_COLUMN_NAMES

# --- AWS CUR 2.0 (Data Exports, COST_AND_USAGE_REPORT) -----------------------------------------

CUR2_COLUMNS: list[str] = [
    "bill_bill_type",
    "bill_billing_entity",
    "bill_billing_period_end_date",
    "bill_billing_period_start_date",
    "bill_invoice_id",
    "bill_invoicing_entity",
    "bill_payer_account_id",
    "bill_payer_account_name",
    "capacity_reservation_capacity_reservation_arn",
    "capacity_reservation_capacity_reservation_status",
    "capacity_reservation_capacity_reservation_type",
    "cost_category",
    "discount",
    "discount_bundled_discount",
    "discount_total_discount",
    "identity_line_item_id",
    "identity_time_interval",
    "line_item_availability_zone",
    "line_item_blended_cost",
    "line_item_blended_rate",
    "line_item_currency_code",
    "line_item_legal_entity",
    "line_item_line_item_description",
    "line_item_line_item_type",
    "line_item_net_unblended_cost",
    "line_item_net_unblended_rate",
    "line_item_normalization_factor",
    "line_item_normalized_usage_amount",
    "line_item_operation",
    "line_item_product_code",
    "line_item_resource_id",
    "line_item_tax_type",
    "line_item_unblended_cost",
    "line_item_unblended_rate",
    "line_item_usage_account_id",
    "line_item_usage_account_name",
    "line_item_usage_amount",
    "line_item_usage_end_date",
    "line_item_usage_start_date",
    "line_item_usage_type",
    "pricing_currency",
    "pricing_lease_contract_length",
    "pricing_offering_class",
    "pricing_public_on_demand_cost",
    "pricing_public_on_demand_rate",
    "pricing_purchase_option",
    "pricing_rate_code",
    "pricing_rate_id",
    "pricing_term",
    "pricing_unit",
    "product",
    "product_comment",
    "product_fee_code",
    "product_fee_description",
    "product_from_location",
    "product_from_location_type",
    "product_from_region_code",
    "product_instance_family",
    "product_instance_type",
    "product_instancesku",
    "product_location",
    "product_location_type",
    "product_operation",
    "product_pricing_unit",
    "product_product_family",
    "product_region_code",
    "product_servicecode",
    "product_sku",
    "product_to_location",
    "product_to_location_type",
    "product_to_region_code",
    "product_usagetype",
    "reservation_amortized_upfront_cost_for_usage",
    "reservation_amortized_upfront_fee_for_billing_period",
    "reservation_availability_zone",
    "reservation_effective_cost",
    "reservation_end_time",
    "reservation_modification_status",
    "reservation_net_amortized_upfront_cost_for_usage",
    "reservation_net_amortized_upfront_fee_for_billing_period",
    "reservation_net_effective_cost",
    "reservation_net_recurring_fee_for_usage",
    "reservation_net_unused_amortized_upfront_fee_for_billing_period",
    "reservation_net_unused_recurring_fee",
    "reservation_net_upfront_value",
    "reservation_normalized_units_per_reservation",
    "reservation_number_of_reservations",
    "reservation_recurring_fee_for_usage",
    "reservation_reservation_a_r_n",
    "reservation_start_time",
    "reservation_subscription_id",
    "reservation_total_reserved_normalized_units",
    "reservation_total_reserved_units",
    "reservation_units_per_reservation",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_normalized_unit_quantity",
    "reservation_unused_quantity",
    "reservation_unused_recurring_fee",
    "reservation_upfront_value",
    "resource_tags",
    "savings_plan_amortized_upfront_commitment_for_billing_period",
    "savings_plan_end_time",
    "savings_plan_instance_type_family",
    "savings_plan_net_amortized_upfront_commitment_for_billing_period",
    "savings_plan_net_recurring_commitment_for_billing_period",
    "savings_plan_net_savings_plan_effective_cost",
    "savings_plan_offering_type",
    "savings_plan_payment_option",
    "savings_plan_purchase_term",
    "savings_plan_recurring_commitment_for_billing_period",
    "savings_plan_region",
    "savings_plan_savings_plan_a_r_n",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_savings_plan_rate",
    "savings_plan_start_time",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "split_line_item_actual_usage",
    "split_line_item_net_split_cost",
    "split_line_item_net_unused_cost",
    "split_line_item_parent_resource_id",
    "split_line_item_public_on_demand_split_cost",
    "split_line_item_public_on_demand_unused_cost",
    "split_line_item_reserved_usage",
    "split_line_item_split_cost",
    "split_line_item_split_usage",
    "split_line_item_split_usage_ratio",
    "split_line_item_unused_cost",
]

CUR2_MAP_COLUMNS: list[str] = ["cost_category", "discount", "product", "resource_tags"]

CUR2_TIMESTAMP_COLUMNS: list[str] = [
    "bill_billing_period_end_date",
    "bill_billing_period_start_date",
    "line_item_usage_end_date",
    "line_item_usage_start_date",
]

# Numeric CUR 2.0 columns and the decimal scale the generator keeps them at internally (integers in
# units of 10**-scale), so that every written float is an exact short decimal. Money is scale 8.
MONEY_SCALE = 8
RATE_SCALE = 10
AMOUNT_SCALE = 6

CUR2_NUMERIC_SCALES: dict[str, int] = {
    "discount_bundled_discount": MONEY_SCALE,
    "discount_total_discount": MONEY_SCALE,
    "line_item_blended_cost": MONEY_SCALE,
    "line_item_blended_rate": RATE_SCALE,
    "line_item_net_unblended_cost": MONEY_SCALE,
    "line_item_net_unblended_rate": RATE_SCALE,
    "line_item_normalization_factor": AMOUNT_SCALE,
    "line_item_normalized_usage_amount": AMOUNT_SCALE,
    "line_item_unblended_cost": MONEY_SCALE,
    "line_item_unblended_rate": RATE_SCALE,
    "line_item_usage_amount": AMOUNT_SCALE,
    "pricing_public_on_demand_cost": MONEY_SCALE,
    "pricing_public_on_demand_rate": RATE_SCALE,
    "reservation_amortized_upfront_cost_for_usage": MONEY_SCALE,
    "reservation_amortized_upfront_fee_for_billing_period": MONEY_SCALE,
    "reservation_effective_cost": MONEY_SCALE,
    "reservation_net_amortized_upfront_cost_for_usage": MONEY_SCALE,
    "reservation_net_amortized_upfront_fee_for_billing_period": MONEY_SCALE,
    "reservation_net_effective_cost": MONEY_SCALE,
    "reservation_net_recurring_fee_for_usage": MONEY_SCALE,
    "reservation_net_unused_amortized_upfront_fee_for_billing_period": MONEY_SCALE,
    "reservation_net_unused_recurring_fee": MONEY_SCALE,
    "reservation_net_upfront_value": MONEY_SCALE,
    "reservation_recurring_fee_for_usage": MONEY_SCALE,
    "reservation_unused_amortized_upfront_fee_for_billing_period": MONEY_SCALE,
    "reservation_unused_normalized_unit_quantity": AMOUNT_SCALE,
    "reservation_unused_quantity": AMOUNT_SCALE,
    "reservation_unused_recurring_fee": MONEY_SCALE,
    "reservation_upfront_value": MONEY_SCALE,
    "savings_plan_amortized_upfront_commitment_for_billing_period": MONEY_SCALE,
    "savings_plan_net_amortized_upfront_commitment_for_billing_period": MONEY_SCALE,
    "savings_plan_net_recurring_commitment_for_billing_period": MONEY_SCALE,
    "savings_plan_net_savings_plan_effective_cost": MONEY_SCALE,
    "savings_plan_recurring_commitment_for_billing_period": MONEY_SCALE,
    "savings_plan_savings_plan_effective_cost": MONEY_SCALE,
    "savings_plan_savings_plan_rate": RATE_SCALE,
    "savings_plan_total_commitment_to_date": MONEY_SCALE,
    "savings_plan_used_commitment": MONEY_SCALE,
    "split_line_item_actual_usage": AMOUNT_SCALE,
    "split_line_item_net_split_cost": MONEY_SCALE,
    "split_line_item_net_unused_cost": MONEY_SCALE,
    "split_line_item_public_on_demand_split_cost": MONEY_SCALE,
    "split_line_item_public_on_demand_unused_cost": MONEY_SCALE,
    "split_line_item_reserved_usage": AMOUNT_SCALE,
    "split_line_item_split_cost": MONEY_SCALE,
    "split_line_item_split_usage": AMOUNT_SCALE,
    "split_line_item_split_usage_ratio": AMOUNT_SCALE,
    "split_line_item_unused_cost": MONEY_SCALE,
}

CUR2_STRING_COLUMNS: list[str] = [
    c
    for c in CUR2_COLUMNS
    if c not in CUR2_MAP_COLUMNS and c not in CUR2_TIMESTAMP_COLUMNS and c not in CUR2_NUMERIC_SCALES
]

# Keys of the CUR 2.0 ``product`` map: the product attributes that have no column of their own.
# Internally they live in columns ``product_<key>`` (the Athena flavour's names).
PRODUCT_MAP_KEYS: list[str] = [
    "availability",
    "database_engine",
    "durability",
    "group",
    "group_description",
    "memory",
    "operating_system",
    "product_name",
    "region",
    "servicename",
    "storage_class",
    "storage_media",
    "tenancy",
    "transfer_type",
    "vcpu",
    "volume_api_name",
    "volume_type",
]

# --- Tags --------------------------------------------------------------------------------------

# The tag keys users put on resources: one concept, many spellings (case, punctuation, synonyms).
RESOURCE_TAG_KEYS: list[str] = [
    "CostCenter",
    "Environment",
    "Stage",
    "TEAM",
    "Team",
    "app",
    "cost-center",
    "cost_center",
    "env",
    "owner",
    "product",
    "team",
    "contact",  # people: the owner's e-mail and the creating principal (catalog.TEAM_CONTACTS / TEAM_CREATORS)
    "CreatedBy",
]


def snake_case(name: str) -> str:
    """``CostCenter`` -> ``cost_center``, ``cost-center`` -> ``cost_center``, ``TEAM`` -> ``team``.

    CUR 2.0 map keys and Athena column names are built this way; keeping one function makes the
    generator's collisions the same as AWS's.
    """
    out = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"[^0-9a-zA-Z]+", "_", out).strip("_").lower()


def cur2_tag_key(key: str) -> str:
    """CUR 2.0 ``resource_tags`` map key of a user tag: ``user_`` + snake_case key."""
    return "user_" + snake_case(key)


def athena_tag_column(key: str) -> str:
    """Athena/Parquet legacy CUR column of a user tag: lowercased, punctuation to ``_``.

    ``CostCenter`` becomes ``resource_tags_user_costcenter`` while ``cost-center`` and
    ``cost_center`` collide in ``resource_tags_user_cost_center``, as in AWS's flavour.
    """
    return "resource_tags_user_" + re.sub(r"[^0-9a-z]+", "_", key.lower()).strip("_")


def athena_column(legacy_name: str) -> str:
    """Athena/Parquet name of a legacy CUR column: ``lineItem/UsageStartDate`` -> ``line_item_usage_start_date``.

    Every capital starts a new word, so ``reservation/ReservationARN`` becomes
    ``reservation_reservation_a_r_n`` exactly as AWS names it.
    """
    category, _, name = legacy_name.partition("/")
    if category == "resourceTags":
        return athena_tag_column(name.removeprefix("user:"))

    def words(s: str) -> str:
        s = re.sub(r"([A-Z])", r"_\1", s)
        return re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()

    return words(category) + "_" + words(name)


# --- AWS legacy CUR (CSV, slash names) ---------------------------------------------------------

LEGACY_CUR_COLUMNS: list[str] = [
    "identity/LineItemId",
    "identity/TimeInterval",
    "bill/InvoiceId",
    "bill/InvoicingEntity",
    "bill/BillingEntity",
    "bill/BillType",
    "bill/PayerAccountId",
    "bill/BillingPeriodStartDate",
    "bill/BillingPeriodEndDate",
    "lineItem/UsageAccountId",
    "lineItem/LineItemType",
    "lineItem/UsageStartDate",
    "lineItem/UsageEndDate",
    "lineItem/ProductCode",
    "lineItem/UsageType",
    "lineItem/Operation",
    "lineItem/AvailabilityZone",
    "lineItem/ResourceId",
    "lineItem/UsageAmount",
    "lineItem/NormalizationFactor",
    "lineItem/NormalizedUsageAmount",
    "lineItem/CurrencyCode",
    "lineItem/UnblendedRate",
    "lineItem/UnblendedCost",
    "lineItem/BlendedRate",
    "lineItem/BlendedCost",
    "lineItem/LineItemDescription",
    "lineItem/TaxType",
    "lineItem/LegalEntity",
    "product/ProductName",
    "product/availability",
    "product/databaseEngine",
    "product/durability",
    "product/eventType",
    "product/feeCode",
    "product/feeDescription",
    "product/fromLocation",
    "product/fromLocationType",
    "product/fromRegionCode",
    "product/group",
    "product/groupDescription",
    "product/instanceFamily",
    "product/instanceType",
    "product/location",
    "product/locationType",
    "product/memory",
    "product/messageDeliveryFrequency",
    "product/messageDeliveryOrder",
    "product/operatingSystem",
    "product/operation",
    "product/overhead",
    "product/productFamily",
    "product/productType",
    "product/queueType",
    "product/region",
    "product/regionCode",
    "product/servicecode",
    "product/servicename",
    "product/sku",
    "product/storageClass",
    "product/storageMedia",
    "product/tenancy",
    "product/toLocation",
    "product/toLocationType",
    "product/toRegionCode",
    "product/transferType",
    "product/usagetype",
    "product/vcpu",
    "product/version",
    "product/volumeApiName",
    "product/volumeType",
    "pricing/LeaseContractLength",
    "pricing/OfferingClass",
    "pricing/PurchaseOption",
    "pricing/RateCode",
    "pricing/RateId",
    "pricing/currency",
    "pricing/publicOnDemandCost",
    "pricing/publicOnDemandRate",
    "pricing/term",
    "pricing/unit",
    "reservation/AmortizedUpfrontCostForUsage",
    "reservation/AmortizedUpfrontFeeForBillingPeriod",
    "reservation/EffectiveCost",
    "reservation/EndTime",
    "reservation/ModificationStatus",
    "reservation/NormalizedUnitsPerReservation",
    "reservation/NumberOfReservations",
    "reservation/RecurringFeeForUsage",
    "reservation/ReservationARN",
    "reservation/StartTime",
    "reservation/SubscriptionId",
    "reservation/TotalReservedNormalizedUnits",
    "reservation/TotalReservedUnits",
    "reservation/UnitsPerReservation",
    "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod",
    "reservation/UnusedNormalizedUnitQuantity",
    "reservation/UnusedQuantity",
    "reservation/UnusedRecurringFee",
    "reservation/UpfrontValue",
    "savingsPlan/TotalCommitmentToDate",
    "savingsPlan/SavingsPlanARN",
    "savingsPlan/SavingsPlanRate",
    "savingsPlan/UsedCommitment",
    "savingsPlan/SavingsPlanEffectiveCost",
    "savingsPlan/AmortizedUpfrontCommitmentForBillingPeriod",
    "savingsPlan/RecurringCommitmentForBillingPeriod",
    "savingsPlan/OfferingType",
    "savingsPlan/PaymentOption",
    "savingsPlan/PurchaseTerm",
    "savingsPlan/Region",
    "savingsPlan/StartTime",
    "savingsPlan/EndTime",
] + [f"resourceTags/user:{k}" for k in RESOURCE_TAG_KEYS]

# --- FOCUS 1.2 ---------------------------------------------------------------------------------

FOCUS_COLUMNS: list[str] = sorted(FOCUS_COLUMN_NAMES)  # the project's FOCUS 1.2 column table

FOCUS_MONEY_COLUMNS: list[str] = [
    "BilledCost",
    "ContractedCost",
    "EffectiveCost",
    "ListCost",
    "PricingCurrencyEffectiveCost",
]
FOCUS_QUANTITY_COLUMNS: list[str] = ["CommitmentDiscountQuantity", "ConsumedQuantity", "PricingQuantity"]
FOCUS_UNIT_PRICE_COLUMNS: list[str] = [
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyListUnitPrice",
]
FOCUS_DATETIME_COLUMNS: list[str] = ["BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"]
FOCUS_JSON_COLUMNS: list[str] = ["SkuPriceDetails", "Tags"]
