"""Native FOCUS 1.x exports (CSV or Parquet) to the project's FOCUS 1.2 contract.

Native exports are already FOCUS, but with the gaps providers are known for: text placeholders
(`NULL`, empty strings: FOCUS requires null), `YYYY-MM-DD HH:MM:SS` datetimes, float money, 1.0
files without the 1.2 columns. Money is typed, never changed; columns 1.2 added are derived only
where the row itself determines them, and a value is canonicalized only where the delivered one is
an unambiguous spelling of it (the list, and what stays null: `derive_focus_12_columns`).
A gap the source leaves (a null ContractedCost, a ResourceType without ResourceId) is not patched:
the FOCUS validator reports it (README, "FOCUS conformance").
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.adapters.aws import catalog
from billing_pipeline.adapters.base import (
    MONEY_LIMIT,
    Delivery,
    discover_data_exports,
    files_delivery,
    money_is_missing,
    money_problem,
    parse_datetime,
    parse_money,
    read_export_file,
    text,
)
from billing_pipeline.adapters.tags import TAG, TAG_LIST
from billing_pipeline.platform.focus import (
    CAPACITY_RESERVATION_STATUSES,
    CHARGE_CATEGORIES,
    CHARGE_CLASSES,
    CHARGE_FREQUENCIES,
    COMMITMENT_DISCOUNT_CATEGORIES,
    COMMITMENT_DISCOUNT_STATUSES,
    FOCUS_COLUMNS,
    LINEAGE_COLUMNS,
    MONEY,
    PRICING_CATEGORIES,
    SERVICE_CATEGORIES,
    TIMESTAMP,
)
from billing_pipeline.platform.lookup import lookup, per_distinct_value
from billing_pipeline.platform.storage import Store, join

ENUMERATIONS: dict[str, tuple[str, ...]] = {
    "ChargeCategory": CHARGE_CATEGORIES,
    "ChargeFrequency": CHARGE_FREQUENCIES,
    "ChargeClass": CHARGE_CLASSES,
    "CommitmentDiscountStatus": COMMITMENT_DISCOUNT_STATUSES,
    "CommitmentDiscountCategory": COMMITMENT_DISCOUNT_CATEGORIES,
    "CapacityReservationStatus": CAPACITY_RESERVATION_STATUSES,
    "PricingCategory": PRICING_CATEGORIES,
}


# Decimal columns that count things, not money: no MONEY_LIMIT on them.
QUANTITY_COLUMNS = ("PricingQuantity", "ConsumedQuantity", "CommitmentDiscountQuantity")


def money_limit(name: str) -> int | None:
    return None if name in QUANTITY_COLUMNS else MONEY_LIMIT


def canonical_enumeration(name: str, allowed: tuple[str, ...]) -> pl.Expr:
    """`Usage-based` -> `Usage-Based`: the spec's spelling of a value that differs only in case.

    Any other value is left as delivered, so that the FOCUS contract rejects it loudly.
    """
    value = text(name)
    return lookup(value.str.to_lowercase(), {spelling.lower(): spelling for spelling in allowed}, default=value)


_PAIR = r'"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?[0-9.eE+]+|true|false|null)'


def _unquote(expr: pl.Expr) -> pl.Expr:
    stripped = pl.when(expr.str.starts_with('"')).then(expr.str.slice(1, expr.str.len_chars() - 2)).otherwise(expr)
    return stripped.str.replace_all(r'\\"', '"').str.replace_all(r"\\\\", r"\\")


def tags_from_json(column: pl.Expr) -> pl.Expr:
    """A flat JSON object string -> list of {key, value}; invalid or empty JSON gives no tags."""
    pairs = column.str.extract_all(_PAIR)
    return (
        pairs.list.eval(
            pl.struct(
                _unquote(pl.element().str.extract(_PAIR, 1)).alias("key"),
                _unquote(pl.element().str.extract(_PAIR, 2)).alias("value"),
            )
        )
        .fill_null(pl.lit([], dtype=TAG_LIST))
        .cast(pl.List(TAG))
    )


_HASH, _FILE, _PAIR_HASH, _ROW = "_identity_hash", "_identity_file", "_identity_pair", "_identity_row"


def with_file_identity(
    frame: pl.LazyFrame, row_hash: pl.Expr, file: pl.Expr, occurrence: str, content: str
) -> pl.LazyFrame:
    """`frame` plus, per row, `occurrence`: its rank (1, 2, ...) in row order among the rows of its file
    with the same `row_hash`, and `content`: its file's rows and the sums of the high and low halves of
    their hashes (the same whatever the row order). Together with the row's values they tell a file
    delivered twice (every row repeats all three) from identical rows inside one file (kept).

    Streaming, so that memory does not grow with the day: the file totals are a `group_by` over the
    files joined back, and only the rows whose hash repeats inside their file (few) are numbered in
    memory; every other row is occurrence 1. Window expressions (`.over(file)`) held the whole day's
    frame: 12.5 GB at 10M rows of FOCUS.
    """
    schema = frame.collect_schema()
    row = "x_RawRow" if "x_RawRow" in schema else _ROW
    hashed = frame if row in schema else frame.with_row_index(_ROW)
    hashed = hashed.with_columns(row_hash.alias(_HASH), file.alias(_FILE))
    hashed = hashed.with_columns(pl.struct(_HASH, _FILE).hash(seed=0).alias(_PAIR_HASH))
    narrow = hashed.select(row, _HASH, _FILE, _PAIR_HASH)
    totals = (
        narrow.group_by(_FILE)
        .agg(
            pl.len().alias("rows"),
            (pl.col(_HASH) // 2**32).sum().alias("high"),
            (pl.col(_HASH) % 2**32).sum().alias("low"),
        )
        .select(_FILE, pl.struct("rows", "high", "low").alias(content))
    )
    # a 64-bit hash of (row hash, file) finds the candidates; they are then numbered on the pair itself
    repeated = narrow.group_by(_PAIR_HASH).agg(pl.len().alias("_n")).filter(pl.col("_n") > 1).select(_PAIR_HASH)
    numbered = (
        narrow.join(repeated, on=_PAIR_HASH, how="semi")
        .group_by(_HASH, _FILE)
        .agg(pl.col(row).sort())
        .select(row, pl.int_ranges(1, pl.col(row).list.len() + 1, dtype=pl.Int32).alias(occurrence))
        .explode(row, occurrence)
    )
    return (
        hashed.join(totals, on=_FILE, how="left", nulls_equal=True, maintain_order="left")
        .join(numbered, on=row, how="left", maintain_order="left")
        .with_columns(pl.col(occurrence).fill_null(1))
        .drop(_HASH, _FILE, _PAIR_HASH, *([] if row in schema else [row]))
    )


def with_delivered_identity(focus: pl.LazyFrame, row: str, occurrence: str, content: str) -> pl.LazyFrame:
    """`with_file_identity` of a mapped frame whose column `row` holds each row as delivered, per file of
    `x_FileUri` (one file when there is none); the frame unchanged when it has no such column. Shared by the
    FOCUS and Azure adapters' `identify`."""
    schema = focus.collect_schema()
    if row not in schema:
        return focus
    file = pl.col("x_FileUri") if "x_FileUri" in schema else pl.lit("")
    return with_file_identity(focus, pl.col(row).hash(seed=0), file, occurrence, content)


class FocusAdapter:
    """FOCUS exports: the AWS Data Exports layout when it has manifests, else every file under the root."""

    provider = "focus"

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        if store.find(join(root, "metadata")):
            return discover_data_exports(store, source, root, billing_period, file_format)
        files = [
            f
            for f in store.find(root)
            if f.url.lower().endswith((".csv", ".csv.gz", ".parquet", ".gz")) and "/_" not in f.url
        ]
        return files_delivery(source, billing_period, files, file_format, "files")

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_export_file(local_file, file_format)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        if "ChargePeriodStart" not in schema:
            raise ValueError("not a FOCUS export: no ChargePeriodStart column")
        return parse_datetime(pl.col("ChargePeriodStart"), schema["ChargePeriodStart"])

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        """FOCUS has no row id, and identical rows are legitimate (several charges of one resource and
        hour). A row's key is the row as delivered (every column, nulls equal), its occurrence among
        identical rows of its file, and a digest of its file's content: repeats inside a file are kept,
        while a file delivered twice (under another name, or listed twice) repeats all three and is
        dropped. As delivered, not as mapped: two rows of one file that differ only in spelling (`12.5` /
        `12.50`, `usage` / `Usage`) map to equal values, yet were delivered as two charges (as Azure)."""
        return ["_focus_row", "_focus_occurrence", "_focus_file"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        schema = raw.collect_schema()
        return raw.select(
            text("BillingAccountId").alias("BillingAccountId"),
            text("BillingCurrency").alias("BillingCurrency"),
            parse_money(pl.col("BilledCost"), schema["BilledCost"], MONEY_LIMIT).alias("cost"),
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        schema = raw.collect_schema()
        exprs: list[pl.Expr] = []
        present = set(schema)
        for column in FOCUS_COLUMNS:
            if column.name not in present:
                continue
            if column.dtype == MONEY:
                exprs.append(
                    parse_money(pl.col(column.name), schema[column.name], money_limit(column.name)).alias(column.name)
                )
            elif column.dtype == TIMESTAMP:
                exprs.append(parse_datetime(pl.col(column.name), schema[column.name]).alias(column.name))
            elif column.name in ENUMERATIONS:
                exprs.append(canonical_enumeration(column.name, ENUMERATIONS[column.name]).alias(column.name))
            else:
                exprs.append(text(column.name).alias(column.name))
        tag_list = (
            per_distinct_value(raw, text("Tags"), {"tags": tags_from_json})["tags"]
            if "Tags" in present
            else pl.lit([], dtype=TAG_LIST)
        )
        extras = [
            pl.col(c).alias(c if c.startswith("x_") else f"x_{c}")
            for c in schema
            if c not in {f.name for f in FOCUS_COLUMNS} and c not in LINEAGE_COLUMNS
        ]
        lineage = [pl.col(c) for c in LINEAGE_COLUMNS if c in present]
        bad = pl.concat_str(
            [
                money_problem(pl.col(c.name), schema[c.name], c.name, money_limit(c.name))
                for c in FOCUS_COLUMNS
                if c.dtype == MONEY and c.name in present
            ]
            + [
                pl.when(
                    money_is_missing(pl.col("BilledCost"), schema["BilledCost"])
                    if "BilledCost" in present
                    else pl.lit(True)
                ).then(pl.lit("missing cost in BilledCost"))
            ],
            separator="; ",
            ignore_nulls=True,
        )
        delivered_row = pl.struct([c for c in schema if c not in LINEAGE_COLUMNS and c != "x_RawRow"])
        frame = raw.select(
            *exprs,
            tag_list.alias("x_TagList"),
            *extras,
            *lineage,
            pl.when(bad != "").then(bad).alias("_bad_reason"),
            delivered_row.alias("_focus_row"),
        )
        return derive_focus_12_columns(frame)

    def identify(self, focus: pl.LazyFrame) -> pl.LazyFrame:
        """Each row's occurrence among identical delivered rows of its file (`_focus_occurrence`) and what its
        file holds (`_focus_file`): `with_file_identity` over the delivered rows (`_focus_row`)."""
        return with_delivered_identity(focus, "_focus_row", "_focus_occurrence", "_focus_file")


# Account types a row's own id spells out (`/subscriptions/<guid>` is an Azure subscription).
SUB_ACCOUNT_TYPES: tuple[tuple[str, str], ...] = (
    (r"^/subscriptions/[0-9a-fA-F-]{36}$", "Subscription"),
    (r"^ocid\d\.tenancy\.", "Tenancy"),
    (r"^ocid\d\.compartment\.", "Compartment"),
    (r"^projects/[^/]+$", "Project"),
)
BILLING_ACCOUNT_TYPES: tuple[tuple[str, str], ...] = (
    (r"^/providers/Microsoft\.Billing/billingAccounts/[^/]+$", "Billing Account"),
    (r"^/providers/Microsoft\.Billing/billingAccounts/[^/]+/billingProfiles/[^/]+$", "Billing Profile"),
)
# Service names of other providers whose FOCUS 1.2 subcategory is unambiguous.
SERVICE_SUBCATEGORIES: dict[str, str] = {
    "Virtual Machines": "Virtual Machines",
    "Virtual Machine Scale Sets": "Virtual Machines",
    "Azure Kubernetes Service": "Containers",
    "Azure Machine Learning": "Machine Learning",
    "Azure DB for MySQL": "Relational Databases",
    "Azure Database for MySQL": "Relational Databases",
    "Azure Database for PostgreSQL": "Relational Databases",
    "Azure Cosmos DB": "NoSQL Databases",
    "Azure Functions": "Serverless Compute",
    "BLOCK_STORAGE": "Block Storage",
    "OBJECT_STORAGE": "Object Storage",
}


def _first_match(value: pl.Expr, patterns: tuple[tuple[str, str], ...]) -> pl.Expr:
    return pl.coalesce([pl.when(value.str.contains(pattern)).then(pl.lit(label)) for pattern, label in patterns])


def derive_focus_12_columns(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Fill the columns FOCUS 1.1/1.2 added where a row determines them, and nowhere else.

    Derived only when the export lacks the column (a 1.2 export's own values, nulls included, are
    kept), and never money:
    - PricingCurrency = BillingCurrency, and PricingCurrencyEffectiveCost/ContractedUnitPrice/
      ListUnitPrice = their billing-currency columns: a 1.0 export has one currency.
    - BillingAccountType / SubAccountType where the row names the kind: AWS has one kind of each
      (the payer "Billing Account" and the "AWS Account" it pays for, as the CUR adapter writes
      them); elsewhere by the shape of the id: `/subscriptions/<guid>` (Subscription),
      `ocid1.tenancy...` (Tenancy), `.../billingAccounts/<id>` (Billing Account). Other ids stay
      null: the row does not say what kind of account they are.
    - ServiceSubcategory: the subcategory of a known service name (AWS product names from
      `aws.catalog`, a few unambiguous others) when it belongs to the row's ServiceCategory, else
      `Other (<ServiceCategory>)`, FOCUS's catch-all child of that category.
    - CapacityReservation*, CommitmentDiscountQuantity/Unit, SkuMeter, SkuPriceDetails, InvoiceId:
      not determined by a 1.0 row, left null.
    Canonicalized in every export (the delivered value kept in an `x_` column):
    - units to the FOCUS Unit Format (`GB Months` -> `GB-Months`, `Lambda-GB-Seconds` ->
      `GB-Seconds`; `x_PricingUnit`, `x_ConsumedUnit`), see `aws.catalog.focus_unit`;
    - InvoiceIssuerName `Amazon Web Services, Inc.` / `... EMEA SARL` / ... -> `AWS` on rows whose
      ProviderName is `AWS`: the same company under the provider's name, as the CUR adapter writes
      it (`x_InvoicingEntity` keeps the legal entity). FOCUS 1.2 reads ProviderName !=
      InvoiceIssuerName as "paid to a third party" (then BilledCost must be 0).
    """
    schema = frame.collect_schema()
    additions: list[pl.Expr] = []
    if "PricingCurrency" not in schema and "BillingCurrency" in schema:
        additions.append(pl.col("BillingCurrency").alias("PricingCurrency"))
    pairs = {
        "PricingCurrencyEffectiveCost": "EffectiveCost",
        "PricingCurrencyContractedUnitPrice": "ContractedUnitPrice",
        "PricingCurrencyListUnitPrice": "ListUnitPrice",
    }
    for target, origin in pairs.items():
        if target not in schema and origin in schema:
            additions.append(pl.col(origin).alias(target))
    provider = pl.col("ProviderName") if "ProviderName" in schema else pl.lit(None, dtype=pl.String)
    if "BillingAccountType" not in schema and "BillingAccountId" in schema:
        account = pl.col("BillingAccountId")
        aws = pl.when((provider == "AWS") & account.is_not_null()).then(pl.lit("Billing Account"))
        additions.append(pl.coalesce(_first_match(account, BILLING_ACCOUNT_TYPES), aws).alias("BillingAccountType"))
    if "SubAccountType" not in schema and "SubAccountId" in schema:
        account = pl.col("SubAccountId")
        aws = pl.when((provider == "AWS") & account.is_not_null()).then(pl.lit("AWS Account"))
        additions.append(pl.coalesce(_first_match(account, SUB_ACCOUNT_TYPES), aws).alias("SubAccountType"))
    if "ServiceSubcategory" not in schema and "ServiceCategory" in schema and "ServiceName" in schema:
        category, name = pl.col("ServiceCategory"), pl.col("ServiceName")
        other = pl.when(category.is_in(SERVICE_CATEGORIES)).then(pl.format("Other ({})", category))
        known = pl.coalesce(
            catalog.subcategory_for_name(name, category),
            lookup(name, SERVICE_SUBCATEGORIES),
        )
        additions.append(pl.coalesce(known, other).alias("ServiceSubcategory"))
    for unit in ("PricingUnit", "ConsumedUnit"):
        if unit in schema:
            additions += [pl.col(unit).alias(f"x_{unit}"), catalog.focus_unit(pl.col(unit)).alias(unit)]
    if "CommitmentDiscountUnit" in schema:
        additions.append(catalog.focus_unit(pl.col("CommitmentDiscountUnit")).alias("CommitmentDiscountUnit"))
    if "InvoiceIssuerName" in schema:
        issuer = pl.col("InvoiceIssuerName")
        aws_entity = (provider == "AWS") & issuer.str.contains(r"^(?:Amazon Web Services|AWS)\b")
        additions += [
            issuer.alias("x_InvoicingEntity"),
            pl.when(aws_entity).then(provider).otherwise(issuer).alias("InvoiceIssuerName"),
        ]
    return frame.with_columns(additions) if additions else frame
