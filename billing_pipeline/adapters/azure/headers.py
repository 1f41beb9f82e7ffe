"""Azure export headers, whatever their spelling: EA, MCA, pay-as-you-go and localized headers are
matched case-insensitively through one alias table (`FIELDS`) and read through `AzureFields`.
"""

from __future__ import annotations

import re

import polars as pl

from billing_pipeline.adapters.cells import MONEY_LIMIT, parse_datetime, parse_money
from billing_pipeline.adapters.shared_columns import SharedColumns, shared
from billing_pipeline.platform.focus import MONEY

DATASETS = ("ActualCost", "AmortizedCost", "FocusCost")
AMORTIZED_CHARGE_TYPES = ("UnusedReservation", "UnusedSavingsPlan")
COMMITTED_MODELS = ("Reservation", "SavingsPlan")

# field -> header spellings (lowercase, localized headers reduced to the name in parentheses)
FIELDS: dict[str, tuple[str, ...]] = {
    "billing_account_id": ("billingaccountid",),
    "billing_account_name": ("billingaccountname",),
    "billing_profile_id": ("billingprofileid",),
    "subscription_id": ("subscriptionid", "subscriptionguid"),
    "subscription_name": ("subscriptionname",),
    "date": ("date", "usagedatetime"),
    "billing_period_start": ("billingperiodstartdate",),
    "billing_period_end": ("billingperiodenddate",),
    "cost": ("costinbillingcurrency", "cost", "pretaxcost"),
    "currency": ("billingcurrency", "billingcurrencycode", "currency"),
    "pricing_currency": ("pricingcurrency",),
    "payg_cost": ("paygcostinbillingcurrency",),
    "quantity": ("quantity", "usagequantity"),
    "unit": ("unitofmeasure",),
    "unit_price": ("unitprice",),
    "payg_price": ("paygprice",),
    "meter_id": ("meterid",),
    "meter_name": ("metername",),
    "meter_category": ("metercategory",),
    "meter_subcategory": ("metersubcategory",),
    "product": ("productname", "product"),
    "product_id": ("productid",),
    "part_number": ("partnumber",),
    "consumed_service": ("consumedservice",),
    "resource_id": ("resourceid", "instanceid", "instancename"),
    "resource_name": ("resourcename",),
    "resource_type": ("resourcetype",),
    "resource_group": ("resourcegroup", "resourcegroupname"),
    "location": ("resourcelocation", "location"),
    "availability_zone": ("availabilityzone",),
    "tags": ("tags",),
    "additional_info": ("additionalinfo",),
    "charge_type": ("chargetype",),
    "frequency": ("frequency",),
    "pricing_model": ("pricingmodel",),
    "reservation_id": ("reservationid",),
    "reservation_name": ("reservationname",),
    "benefit_id": ("benefitid",),
    "benefit_name": ("benefitname",),
    "invoice_id": ("invoiceid",),
    "invoice_section": ("invoicesectionname", "invoicesection"),
    "publisher_name": ("publishername",),
    "publisher_type": ("publishertype",),
    "cost_center": ("costcenter",),
}
MONEY_FIELDS = ("cost", "payg_cost", "quantity", "unit_price", "payg_price")


def canonical_header(name: str) -> str:
    """`Kategorie der Verbrauchseinheit (MeterCategory)` -> `metercategory`; BOM and case dropped."""
    name = name.lstrip("\ufeff").strip()
    inner = re.search(r"\(([A-Za-z0-9]+)\)\s*$", name)
    return (inner.group(1) if inner else name).lower()


def header_map(schema: pl.Schema | list[str]) -> dict[str, str]:
    """field -> the delivered column that holds it (first alias present wins)."""
    by_key: dict[str, str] = {}
    for column in schema:
        by_key.setdefault(canonical_header(column), column)
    found: dict[str, str] = {}
    for field, aliases in FIELDS.items():
        for alias in aliases:
            if alias in by_key:
                found[field] = by_key[alias]
                break
    return found


def is_focus_export(schema: pl.Schema | list[str]) -> bool:
    """A FocusCost export: Microsoft's native FOCUS, mapped by the FOCUS adapter."""
    return "ChargePeriodStart" in schema and "BilledCost" in schema


def dataset_of(version: pl.Expr) -> pl.Expr:
    """The export dataset a row came from, from its `x_ExportVersion` (`AmortizedCost:<runId>`)."""
    return version.str.extract(r"^(ActualCost|AmortizedCost|FocusCost):", 1).fill_null("ActualCost")


def export_version(schema: pl.Schema) -> pl.Expr:
    """The delivery version each row carries (`<dataset>:<runId>`); files without one are ActualCost."""
    return pl.col("x_ExportVersion").cast(pl.String) if "x_ExportVersion" in schema else pl.lit("ActualCost:")


class AzureFields:
    """Typed access to Azure fields whatever the header spelling (`header_map`)."""

    def __init__(self, schema: pl.Schema, shared: SharedColumns | None = None) -> None:
        self.schema = schema
        self.columns = header_map(schema)
        self.shared = shared

    def has(self, field: str) -> bool:
        return field in self.columns

    def name(self, field: str) -> str:
        return self.columns.get(field, field)

    def dtype(self, field: str) -> pl.DataType:
        return self.schema[self.columns[field]] if field in self.columns else pl.String()

    def col(self, field: str) -> pl.Expr:
        return pl.col(self.columns[field]) if field in self.columns else pl.lit(None, dtype=pl.String)

    def text(self, field: str) -> pl.Expr:
        if field not in self.columns:
            return pl.lit(None, dtype=pl.String)
        return shared(self.shared, f"text_{field}", lambda: _text(self.col(field)))

    def money(self, field: str) -> pl.Expr:
        if field not in self.columns:
            return pl.lit(None, MONEY)
        return shared(
            self.shared, f"money_{field}", lambda: parse_money(self.col(field), self.dtype(field), self.limit(field))
        )

    def datetime(self, field: str) -> pl.Expr:
        """The field as a UTC datetime (null where unparseable)."""
        return shared(self.shared, f"datetime_{field}", lambda: parse_datetime(self.col(field), self.dtype(field)))

    def limit(self, field: str) -> int | None:
        """MONEY_LIMIT for money fields; none for the quantity."""
        return None if field == "quantity" else MONEY_LIMIT


def _text(column: pl.Expr) -> pl.Expr:
    value = column.cast(pl.String).str.strip_chars()
    return pl.when(~value.is_in(["", "None", "NULL", "null"])).then(value)


def billing_account(get: AzureFields) -> pl.Expr:
    """The billing account; pay-as-you-go exports have none, their subscription is what is billed."""
    return pl.coalesce(get.text("billing_account_id"), get.text("subscription_id"))


def billed_cost(get: AzureFields) -> pl.Expr:
    """BilledCost: the cost, except amortized rows of an AmortizedCost export (billed as the purchase)."""
    cost = get.money("cost")
    committed = (
        get.text("pricing_model").is_in(COMMITTED_MODELS).fill_null(False)
        & pl.coalesce(get.text("benefit_id"), get.text("reservation_id")).is_not_null()
    )
    unused = get.text("charge_type").is_in(AMORTIZED_CHARGE_TYPES).fill_null(False)
    amortized_row = (
        (dataset_of(export_version(get.schema)) == "AmortizedCost")
        & (committed | unused)
        & (get.text("charge_type") != "Purchase").fill_null(True)
    )
    return pl.when(amortized_row & cost.is_not_null()).then(pl.lit(0, dtype=MONEY)).otherwise(cost)
