"""The FOCUS 1.2 contract of `normalized_line_items`: columns, types, nullability, allowed values.

One table drives three things so they cannot drift apart: the polars dtypes the adapters cast to,
the pandera schema that validates every partition, and the column schema shown in the Dagster UI.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl
from dagster import TableColumn, TableColumnConstraints, TableSchema

# 18 decimals hold every digit real exports carry (the FOCUS sample has 11); 20 integer digits
# hold any bill. Floats are converted through their shortest decimal repr, once.
MONEY = pl.Decimal(38, 18)
TIMESTAMP = pl.Datetime("us", "UTC")
STRING = pl.String()

FOCUS_VERSION = "1.2"


@dataclass(frozen=True)
class FocusColumn:
    name: str
    dtype: pl.DataType
    feature_level: str  # Mandatory | Recommended | Conditional
    nullable: bool
    description: str = ""


_C = FocusColumn
FOCUS_COLUMNS: tuple[FocusColumn, ...] = (
    _C("BilledCost", MONEY, "Mandatory", False, "Cost invoiced for the charge, in BillingCurrency"),
    _C("BillingAccountId", STRING, "Mandatory", False, "Identifier of the account the invoice is issued to"),
    _C("BillingAccountName", STRING, "Mandatory", True, "Display name of the billing account"),
    _C(
        "BillingCurrency",
        STRING,
        "Mandatory",
        False,
        "Currency of the invoice (ISO 4217 code); every cost column of the row is in it",
    ),
    _C("BillingPeriodEnd", TIMESTAMP, "Mandatory", False, "Exclusive end of the billing period (UTC)"),
    _C("BillingPeriodStart", TIMESTAMP, "Mandatory", False, "Inclusive start of the billing period (UTC)"),
    _C("ChargeCategory", STRING, "Mandatory", False, "Kind of charge: Usage, Purchase, Tax, Credit or Adjustment"),
    _C(
        "ChargeClass",
        STRING,
        "Mandatory",
        True,
        "Correction when the row corrects a charge of an earlier billing period, else null",
    ),
    _C("ChargeDescription", STRING, "Mandatory", True, "Self-contained summary of what the charge is for"),
    _C("ChargePeriodEnd", TIMESTAMP, "Mandatory", False, "Exclusive end of the period the charge covers (UTC)"),
    _C(
        "ChargePeriodStart",
        TIMESTAMP,
        "Mandatory",
        False,
        "Inclusive start of the period the charge covers (UTC); the usage day is its UTC date",
    ),
    _C(
        "ContractedCost",
        MONEY,
        "Mandatory",
        False,
        "Cost at the negotiated unit price: ContractedUnitPrice x PricingQuantity, in BillingCurrency",
    ),
    _C(
        "EffectiveCost",
        MONEY,
        "Mandatory",
        False,
        "Amortized cost after discounts, commitments spread over the usage they cover, in BillingCurrency",
    ),
    _C("InvoiceIssuerName", STRING, "Mandatory", False, "Entity that issues the invoice (the provider or a reseller)"),
    _C(
        "ListCost",
        MONEY,
        "Mandatory",
        False,
        "Cost at public list prices: ListUnitPrice x PricingQuantity, in BillingCurrency",
    ),
    _C("PricingQuantity", MONEY, "Mandatory", True, "Volume of the SKU the price applies to, in PricingUnit"),
    _C("PricingUnit", STRING, "Mandatory", True, "Provider's unit of measure of PricingQuantity"),
    _C("ProviderName", STRING, "Mandatory", False, "Entity that made the resources or services available for purchase"),
    _C("PublisherName", STRING, "Mandatory", False, "Entity that produced the resources or services purchased"),
    _C(
        "ServiceCategory",
        STRING,
        "Mandatory",
        False,
        "FOCUS category of the service (Compute, Storage, Networking, ...)",
    ),
    _C("ServiceName", STRING, "Mandatory", False, "Offering purchased from the provider (e.g. a cloud service)"),
    _C(
        "AvailabilityZone",
        STRING,
        "Recommended",
        True,
        "Provider's identifier of a physically separated location within a region",
    ),
    _C(
        "ChargeFrequency",
        STRING,
        "Recommended",
        False,
        "How often the charge occurs: One-Time, Recurring or Usage-Based",
    ),
    _C("InvoiceId", STRING, "Recommended", True, "Identifier of the invoice the charge is billed on"),
    _C(
        "ServiceSubcategory",
        STRING,
        "Recommended",
        True,
        "Finer FOCUS classification of the service within its ServiceCategory",
    ),
    _C("BillingAccountType", STRING, "Conditional", True, "Provider's label for the kind of billing account"),
    _C(
        "CapacityReservationId",
        STRING,
        "Conditional",
        True,
        "Identifier of the capacity reservation the charge relates to",
    ),
    _C("CapacityReservationStatus", STRING, "Conditional", True, "Whether the reserved capacity was Used or Unused"),
    _C(
        "CommitmentDiscountCategory",
        STRING,
        "Conditional",
        True,
        "Whether the commitment discount is Spend- or Usage-based",
    ),
    _C(
        "CommitmentDiscountId",
        STRING,
        "Conditional",
        True,
        "Identifier of the commitment discount (reservation, savings plan) the charge relates to",
    ),
    _C("CommitmentDiscountName", STRING, "Conditional", True, "Display name of the commitment discount"),
    _C(
        "CommitmentDiscountQuantity",
        MONEY,
        "Conditional",
        True,
        "Amount of the commitment purchased or consumed, in CommitmentDiscountUnit",
    ),
    _C(
        "CommitmentDiscountStatus",
        STRING,
        "Conditional",
        True,
        "Whether the commitment was Used or Unused by the charge",
    ),
    _C("CommitmentDiscountType", STRING, "Conditional", True, "Provider's label for the kind of commitment discount"),
    _C("CommitmentDiscountUnit", STRING, "Conditional", True, "Unit of CommitmentDiscountQuantity"),
    _C("ConsumedQuantity", MONEY, "Conditional", True, "Volume of the resource or service used, in ConsumedUnit"),
    _C("ConsumedUnit", STRING, "Conditional", True, "Provider's unit of measure of ConsumedQuantity"),
    _C(
        "ContractedUnitPrice",
        MONEY,
        "Conditional",
        True,
        "Negotiated price per PricingUnit, before commitment discounts, in BillingCurrency",
    ),
    _C("ListUnitPrice", MONEY, "Conditional", True, "Public list price per PricingUnit, in BillingCurrency"),
    _C("PricingCategory", STRING, "Conditional", True, "How the price was set: Standard, Dynamic, Committed or Other"),
    _C(
        "PricingCurrency",
        STRING,
        "Conditional",
        True,
        "Currency the prices are set in, when it differs from BillingCurrency",
    ),
    _C("PricingCurrencyContractedUnitPrice", MONEY, "Conditional", True, "ContractedUnitPrice in PricingCurrency"),
    _C("PricingCurrencyEffectiveCost", MONEY, "Conditional", True, "EffectiveCost in PricingCurrency"),
    _C("PricingCurrencyListUnitPrice", MONEY, "Conditional", True, "ListUnitPrice in PricingCurrency"),
    _C("RegionId", STRING, "Conditional", True, "Provider's identifier of the geographic region"),
    _C("RegionName", STRING, "Conditional", True, "Display name of the region"),
    _C("ResourceId", STRING, "Conditional", True, "Identifier of the resource the charge is for"),
    _C("ResourceName", STRING, "Conditional", True, "Display name of the resource"),
    _C("ResourceType", STRING, "Conditional", True, "Kind of resource the charge is for"),
    _C("SkuId", STRING, "Conditional", True, "Identifier of the SKU (product) the charge is for"),
    _C("SkuMeter", STRING, "Conditional", True, "Functionality of the SKU that is metered"),
    _C("SkuPriceDetails", STRING, "Conditional", True, "Properties of the SKU's price point (JSON)"),
    _C("SkuPriceId", STRING, "Conditional", True, "Identifier of the SKU's price point"),
    _C(
        "SubAccountId",
        STRING,
        "Conditional",
        True,
        "Identifier of the sub account (AWS member account, Azure subscription, GCP project)",
    ),
    _C("SubAccountName", STRING, "Conditional", True, "Display name of the sub account"),
    _C("SubAccountType", STRING, "Conditional", True, "Provider's label for the kind of sub account"),
    _C("Tags", STRING, "Conditional", True, "Flat JSON object of the resource's tags as delivered"),
)
FOCUS_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS)
MANDATORY_COLUMNS: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS if c.feature_level == "Mandatory")
MONEY_COLUMNS: tuple[str, ...] = tuple(c.name for c in FOCUS_COLUMNS if c.dtype == MONEY)

# Lineage and bookkeeping columns every normalized row carries (the `x_` prefix is FOCUS's own
# convention for provider- or tool-specific columns).
LINEAGE_COLUMNS: dict[str, pl.DataType] = {
    "x_Source": STRING,
    "x_Provider": STRING,
    "x_FileUri": STRING,
    "x_ExportVersion": STRING,
    "x_DeliveredAt": TIMESTAMP,
    "x_IngestedAt": TIMESTAMP,
    "x_UsageDate": pl.Date(),
}
LINEAGE_DESCRIPTIONS: dict[str, str] = {
    "x_Source": "Name of the export source (billing.yaml `sources`) the row was read from",
    "x_Provider": "Export format of that source (the adapter that read it)",
    "x_FileUri": "Delivered file the row was read from",
    "x_ExportVersion": "Version of the delivery the row was read from (execution or assembly id, or a listing digest)",
    "x_DeliveredAt": "When the provider delivered that version (UTC)",
    "x_IngestedAt": "When the pipeline read the delivery (UTC)",
    "x_UsageDate": "Usage day (UTC) of the row: the daily partition it is published in",
}
# Columns the pipeline adds past the raw layer, next to the provider's own `x_` extras.
EXTENSION_DESCRIPTIONS: dict[str, str] = {
    "x_TagList": "The row's tags as a list of {key, value} pairs, parsed from the delivered tags",
    "x_RawRow": "Position of the row in the day's raw_line_items slice of its source (lineage to the delivered row)",
}

# Columns the pipeline itself relies on (partitioning, conservation, reconciliation): a null here is a
# contract break. Other non-nullable FOCUS columns are the provider's to fill; a native export that
# leaves one empty is reported by the FOCUS validator, never fabricated here.
CORE_NON_NULL = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargePeriodStart",
    "ChargePeriodEnd",
)

CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
CHARGE_FREQUENCIES = ("One-Time", "Recurring", "Usage-Based")
CHARGE_CLASSES = ("Correction",)
SERVICE_CATEGORIES = (
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
)


# Checked by the contract because focus-validator 2.2.1 cannot: its model lists Active/Expired/
# Pending as CommitmentDiscountStatus values and drops the CapacityReservationStatus conditions
# (conformance.KNOWN_VALIDATOR_DEFECTS).
COMMITMENT_DISCOUNT_STATUSES = ("Used", "Unused")
CAPACITY_RESERVATION_STATUSES = ("Used", "Unused")
COMMITMENT_DISCOUNT_CATEGORIES = ("Spend", "Usage")
PRICING_CATEGORIES = ("Standard", "Dynamic", "Committed", "Other")

ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "ChargeCategory": CHARGE_CATEGORIES,
    "ChargeFrequency": CHARGE_FREQUENCIES,
    "ChargeClass": CHARGE_CLASSES,
    "ServiceCategory": SERVICE_CATEGORIES,
    "CommitmentDiscountStatus": COMMITMENT_DISCOUNT_STATUSES,
    "CapacityReservationStatus": CAPACITY_RESERVATION_STATUSES,
    "CommitmentDiscountCategory": COMMITMENT_DISCOUNT_CATEGORIES,
    "PricingCategory": PRICING_CATEGORIES,
}


# Columns whose every non-null value must match a pattern (ISO 4217 currency codes).
PATTERNS: dict[str, str] = {"BillingCurrency": r"^[A-Z]{3}$", "PricingCurrency": r"^[A-Z]{3}$"}


@functools.cache
def focus_dataframe_schema() -> pa.DataFrameSchema:
    """The pandera (polars) schema every `normalized_line_items` slice must satisfy (built once per process:
    a slice of a demo day took longer to build it than to be validated by it)."""
    columns: dict[str, pa.Column] = {}
    for column in FOCUS_COLUMNS:
        checks: list[pa.Check] = []
        if column.name in ALLOWED_VALUES:
            checks.append(pa.Check.isin(ALLOWED_VALUES[column.name]))
        elif column.name in PATTERNS:
            checks.append(pa.Check.str_matches(PATTERNS[column.name]))
        columns[column.name] = pa.Column(
            column.dtype,
            nullable=column.name not in CORE_NON_NULL,
            required=column.feature_level == "Mandatory",
            checks=checks,
            description=column.description or None,
        )
    for name, dtype in LINEAGE_COLUMNS.items():
        columns[name] = pa.Column(dtype, nullable=name not in ("x_Source", "x_UsageDate"))
    return pa.DataFrameSchema(columns, strict=False, name="FocusLineItems", ordered=False)


def provider_column_description(name: str) -> str:
    """A provider's own column, carried through under FOCUS's `x_` prefix for columns outside the spec."""
    return f"Provider column {name.removeprefix('x_')} of the export, carried through (not a FOCUS column)"


def table_schema(
    extra: dict[str, pl.DataType] | None = None, descriptions: dict[str, str] | None = None
) -> TableSchema:
    """The column schema the Dagster UI shows, derived from the same column table: every FOCUS
    column, the lineage columns, then `extra` columns (a published slice's provider `x_` columns),
    each described (`descriptions`, else the pipeline's own text, else as a provider column)."""
    columns = [
        TableColumn(
            name=c.name,
            type=str(c.dtype),
            description=f"FOCUS {FOCUS_VERSION} {c.feature_level}. {c.description}",
            constraints=TableColumnConstraints(nullable=c.nullable),
        )
        for c in FOCUS_COLUMNS
    ]
    known = {**LINEAGE_DESCRIPTIONS, **EXTENSION_DESCRIPTIONS, **(descriptions or {})}
    for name, dtype in {**LINEAGE_COLUMNS, **(extra or {})}.items():
        if name in FOCUS_COLUMN_NAMES:
            continue
        columns.append(
            TableColumn(name=name, type=str(dtype), description=known.get(name) or provider_column_description(name))
        )
    return TableSchema(columns=columns)


def conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add every FOCUS column the adapter could not fill (as typed nulls) and cast to the contract.

    Columns are ordered FOCUS first, then lineage, then provider `x_` extras, so that every slice of
    every source has the same leading layout.
    """
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    for column in FOCUS_COLUMNS:
        if column.name in schema:
            exprs.append(pl.col(column.name).cast(column.dtype))
        else:
            exprs.append(pl.lit(None, dtype=column.dtype).alias(column.name))
    for name, dtype in LINEAGE_COLUMNS.items():
        exprs.append(pl.col(name).cast(dtype) if name in schema else pl.lit(None, dtype=dtype).alias(name))
    known = set(FOCUS_COLUMN_NAMES) | set(LINEAGE_COLUMNS)
    extras = [pl.col(name) for name in schema if name not in known and name.startswith("x_")]
    return frame.select(*exprs, *extras)


class FocusContractError(ValueError):
    """A normalized slice broke the FOCUS contract; it is not published."""


def validate_focus_file(path: str) -> int:
    """Validate a Parquet slice against the contract in bounded memory; returns the rows checked.

    pandera checks the file's schema (every required column there, every column of its type), once per
    distinct schema; the schema's row rules (nullability, allowed values, patterns) run over every row as one
    streaming aggregate reading only the columns they involve. pandera's own data checks would collect the
    frame once per rule (about 40 ms a slice however few its rows: most of a demo day's validation), and
    `test_focus_contract.py` holds the two to the same verdicts.
    """
    scan = pl.scan_parquet(path)
    columns = scan.collect_schema()
    if problem := _schema_verdict(tuple(columns.items())):
        raise FocusContractError(f"{path} breaks the FOCUS {FOCUS_VERSION} contract: {problem}")
    totals = scan.select(_row_rule_counts(focus_dataframe_schema(), set(columns))).collect(engine="streaming")
    broken = {rule: count for rule, count in totals.row(0, named=True).items() if rule != "_rows" and count}
    if broken:
        details = "; ".join(f"{rule}: {count} rows" for rule, count in broken.items())
        raise FocusContractError(f"{path} breaks the FOCUS {FOCUS_VERSION} contract: {details}")
    return int(totals["_rows"].item())


def _row_rule_counts(schema: pa.DataFrameSchema, available: set[str]) -> list[pl.Expr]:
    """The rows in total, and per row rule of `schema` on an `available` column the rows that break it."""
    counts: list[pl.Expr] = [pl.len().alias("_rows")]
    for name, column in schema.columns.items():
        if name not in available:
            continue
        value = pl.col(name)
        if not column.nullable:
            counts.append(value.null_count().alias(f"{name}: null values"))
        if name in ALLOWED_VALUES:
            outside = value.is_not_null() & ~value.is_in(list(ALLOWED_VALUES[name]))
            counts.append(outside.sum().alias(f"{name}: values outside {ALLOWED_VALUES[name]}"))
        if name in PATTERNS:
            unmatched = value.is_not_null() & ~value.str.contains(PATTERNS[name])
            counts.append(unmatched.sum().alias(f"{name}: values not matching {PATTERNS[name]}"))
    return counts


@functools.lru_cache(maxsize=256)
def _schema_verdict(columns: tuple[tuple[str, pl.DataType], ...]) -> str | None:
    """pandera's schema-level verdict (required columns there, each of its type) on a slice with these
    columns, None when it holds. A pure function of the file's schema, so a backfill asks pandera once per
    source's schema, not once per slice (about 15 ms of Python each)."""
    from pandera.config import ValidationDepth, config_context
    from pandera.errors import SchemaError, SchemaErrors

    try:
        with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
            focus_dataframe_schema().validate(pl.LazyFrame(schema=dict(columns)), lazy=True)
    except (SchemaError, SchemaErrors) as error:
        return str(error)
    return None
