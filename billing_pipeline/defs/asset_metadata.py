"""What the four spine assets report about a day: money per currency, previews people can read, and a
described column schema per asset.

Money is never added across currencies. Every amount in an asset's metadata is keyed by its currency
(`billed_cost_usd`, `billed_cost_eur`, ...), summed per `BillingCurrency` from the day's published
slices, so a slice left as it was (its input unchanged) is counted like a rebuilt one. Numeric metadata
is a float (the UI plots it); previews round to cents with thousands separators and the currency code
(`1,234.57 USD`); the tables keep every digit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import polars as pl
from dagster import TableColumn, TableSchema

from billing_pipeline.platform.config import TagPolicy
from billing_pipeline.platform.focus import LINEAGE_COLUMNS, LINEAGE_DESCRIPTIONS, MONEY, table_schema
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import ENRICHED, NORMALIZED
from billing_pipeline.platform.storage import Store, is_remote
from billing_pipeline.spine.reconcile import RECONCILIATION_SCHEMA

CURRENCY = "BillingCurrency"
UNKNOWN_CURRENCY = "unknown"  # a row without a currency: reported on its own, never added to a known one
CENT = Decimal("0.01")
Warn = Callable[[str], None]  # e.g. `context.log.warning`: a slice metadata cannot read never fails the step


def _warn(warn: Warn | None, source: str, url: str, error: Exception) -> None:
    if warn is not None:
        warn(
            f"source {source!r}: {url} not read for the asset's metadata ({type(error).__name__}: {error}); "
            f"its amounts and columns are left out of this materialization's metadata"
        )


# ---- money -------------------------------------------------------------------------------------------------------


def money_value(value: object) -> float:
    """Numeric metadata must be a float for the UI to plot it; the exact value stays in the tables."""
    return float(Decimal(str(value))) if value is not None else 0.0


def currency_key(name: str, currency: str | None) -> str:
    """`billed_cost` and `EUR` -> `billed_cost_eur`."""
    slug = re.sub(r"[^a-z0-9]+", "_", (currency or UNKNOWN_CURRENCY).lower()).strip("_")
    return f"{name}_{slug or UNKNOWN_CURRENCY}"


def amount_text(value: object, currency: str | None) -> str:
    """An amount for people: rounded to cents (half to even), thousands separators, the currency code;
    never an exponent (`0E-18`) or 18 decimals."""
    if value is None:
        return ""
    with localcontext() as context:
        context.prec = 80  # 38 digits of Decimal(38, 18) and more quantize without an error
        rounded = Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)
        if rounded == 0:
            rounded = Decimal("0.00")  # not `-0.00`
        return f"{rounded:,.2f} {currency or UNKNOWN_CURRENCY}"


def slice_sums(store: Store, url: str, sums: Mapping[str, pl.Expr], columns: Sequence[str]) -> pl.DataFrame | None:
    """`sums` (name -> summing expression) of one published slice per BillingCurrency, reading only
    `columns`: a local slice as one streaming aggregate, a remote one batch by batch (only those column
    chunks are fetched, never the whole file). None when the slice does not exist."""
    if not store.exists(url):
        return None

    def by_currency(frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.group_by(pl.col(CURRENCY).fill_null(UNKNOWN_CURRENCY)).agg(**sums)

    if not is_remote(url):
        return by_currency(pl.scan_parquet(url).select(columns)).collect(engine="streaming")
    import pyarrow.parquet as pq

    fs, path = store.fs(url)
    with fs.open(path, "rb") as handle:
        parts = [
            by_currency(pl.DataFrame(pl.from_arrow(batch)).lazy()).collect()
            for batch in pq.ParquetFile(handle).iter_batches(columns=list(columns))
        ]
    if not parts:
        return None
    return pl.concat(parts).group_by(CURRENCY).agg(pl.all().sum())  # sums of partial sums: exact


def day_sums(
    store: Store, urls: Mapping[str, str], sums: Mapping[str, pl.Expr], columns: Sequence[str], warn: Warn | None = None
) -> pl.DataFrame:
    """`source`, `BillingCurrency` and `sums` over the published slices (`urls`: source -> slice url);
    a slice that cannot be read (damaged in the lake) is left out with a warning."""
    frames = []
    for source, url in urls.items():
        try:
            frame = slice_sums(store, url, sums, columns)
        except Exception as error:  # noqa: BLE001 - metadata of one slice; the layer itself was built
            _warn(warn, source, url, error)
            continue
        if frame is not None and frame.height:
            frames.append(frame.select(pl.lit(source, dtype=pl.String).alias("source"), pl.all()))
    if not frames:
        return pl.DataFrame(schema={"source": pl.String, CURRENCY: pl.String, **{name: MONEY for name in sums}})
    return pl.concat(frames, how="diagonal_relaxed")


def normalized_money(
    store: Store, lake_url: str, day: dt.date, sources: Sequence[str], warn: Warn | None = None
) -> pl.DataFrame:
    """source x currency: `billed`, `effective` of the published normalized slices, `duplicate` of the
    rows dropped as duplicates (quarantine/duplicates); 0 where a source has none."""
    kept = day_sums(
        store,
        {s: slice_url(lake_url, NORMALIZED, day, s) for s in sources},
        {"billed": pl.col("BilledCost").sum(), "effective": pl.col("EffectiveCost").sum()},
        [CURRENCY, "BilledCost", "EffectiveCost"],
        warn,
    )
    dropped = day_sums(
        store,
        {s: quarantine_url(lake_url, "duplicates", day, s) for s in sources},
        {"duplicate": pl.col("BilledCost").sum()},
        [CURRENCY, "BilledCost"],
        warn,
    )
    return _zero_filled(
        kept.join(dropped, on=["source", CURRENCY], how="full", coalesce=True, nulls_equal=True),
        ["billed", "effective", "duplicate"],
    )


def enriched_money(
    store: Store, lake_url: str, day: dt.date, sources: Sequence[str], warn: Warn | None = None
) -> pl.DataFrame:
    """source x currency: `billed` and `unallocated` (no owner) of the published enriched slices."""
    return _zero_filled(
        day_sums(
            store,
            {s: slice_url(lake_url, ENRICHED, day, s) for s in sources},
            {
                "billed": pl.col("BilledCost").sum(),
                "unallocated": pl.col("BilledCost").filter(pl.col("unallocated")).sum(),
            },
            [CURRENCY, "BilledCost", "unallocated"],
            warn,
        ),
        ["billed", "unallocated"],
    )


def _zero_filled(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).cast(MONEY).fill_null(pl.lit(0, dtype=MONEY)) for c in columns).sort(
        "source", CURRENCY
    )


def reconciliation_money(table: pl.DataFrame) -> dict[str, float]:
    """Per currency, from the day's reconciliation rows: the normalized, effective and month-to-date
    totals, the invoiced amount (once an invoice exists) and the largest conservation and invoice deltas."""
    if not table.height:
        return {}
    totals = (
        table.group_by(pl.col(CURRENCY).fill_null(UNKNOWN_CURRENCY))
        .agg(
            pl.col("normalized_total").sum().alias("billed_cost"),
            pl.col("effective_total").sum().alias("effective_cost"),
            pl.col("month_to_date_total").sum().alias("month_to_date_cost"),
            pl.col("invoice_amount").sum().alias("invoice_amount"),
            pl.col("conservation_delta").abs().max().alias("max_abs_conservation_delta"),
            pl.col("invoice_delta").abs().max().alias("max_abs_invoice_delta"),
            pl.col("invoice_amount").is_not_null().any().alias("_invoiced"),
        )
        .sort(CURRENCY)
    )
    out: dict[str, float] = {}
    for row in totals.iter_rows(named=True):
        for name in ("billed_cost", "effective_cost", "month_to_date_cost", "max_abs_conservation_delta"):
            out[currency_key(name, row[CURRENCY])] = money_value(row[name])
        if row["_invoiced"]:
            for name in ("invoice_amount", "max_abs_invoice_delta"):
                out[currency_key(name, row[CURRENCY])] = money_value(row[name])
    return out


def per_currency(frame: pl.DataFrame, names: Mapping[str, str]) -> dict[str, float]:
    """`{<name>_<currency>: total}` for each `column -> name` of `frame`, summed within a currency only."""
    if not frame.height:
        return {}
    totals = frame.group_by(CURRENCY).agg(pl.col(list(names)).sum()).sort(CURRENCY)
    return {
        currency_key(name, row[CURRENCY]): money_value(row[column])
        for row in totals.iter_rows(named=True)
        for column, name in names.items()
    }


def percent_per_currency(frame: pl.DataFrame, part: str, whole: str, name: str) -> dict[str, float]:
    """`{<name>_<currency>: 100 * part / whole}` per currency (0 when the currency's whole is 0)."""
    if not frame.height:
        return {}
    totals = frame.group_by(CURRENCY).agg(pl.col(part).sum(), pl.col(whole).sum()).sort(CURRENCY)
    out: dict[str, float] = {}
    for row in totals.iter_rows(named=True):
        numerator, denominator = Decimal(str(row[part] or 0)), Decimal(str(row[whole] or 0))
        out[currency_key(name, row[CURRENCY])] = float(numerator / denominator * 100) if denominator else 0.0
    return out


def amounts_of(frame: pl.DataFrame, source: str, column: str) -> str:
    """A preview cell: the source's `column` per currency (`12.00 USD; 3,400.10 EUR`), never added up."""
    rows = frame.filter(pl.col("source") == source).sort(CURRENCY).select(CURRENCY, column).iter_rows()
    return "; ".join(amount_text(value, currency) for currency, value in rows) or "none"


def money_rows(rows: Sequence[dict[str, object]], money_columns: Sequence[str]) -> list[dict[str, object]]:
    """Reconciliation rows for a preview: the money columns as rounded amounts in the row's currency."""
    return [{k: amount_text(v, row.get(CURRENCY)) if k in money_columns else v for k, v in row.items()} for row in rows]


# ---- column schemas -----------------------------------------------------------------------------------------------


def slice_schemas(store: Store, urls: Mapping[str, str], warn: Warn | None = None) -> dict[str, pl.Schema]:
    """source -> the Parquet schema of its published slice (footers only; absent or unreadable slices
    left out, the latter with a warning)."""
    out: dict[str, pl.Schema] = {}
    for source, url in urls.items():
        try:
            if store.exists(url):
                out[source] = _parquet_schema(store, url)
        except Exception as error:  # noqa: BLE001 - metadata of one slice; the layer itself was built
            _warn(warn, source, url, error)
    return out


def _parquet_schema(store: Store, url: str) -> pl.Schema:
    if not is_remote(url):
        return pl.read_parquet_schema(url)
    import pyarrow.parquet as pq

    fs, path = store.fs(url)
    with fs.open(path, "rb") as handle:
        return pl.Schema(pl.DataFrame(pl.from_arrow(pq.read_schema(handle).empty_table())).schema)


def _union(schemas: Mapping[str, pl.Schema], skip: set[str]) -> dict[str, pl.DataType]:
    columns: dict[str, pl.DataType] = {}
    for schema in schemas.values():
        for name, dtype in schema.items():
            if name not in skip:
                columns.setdefault(name, dtype)
    return columns


def raw_schema(schemas: Mapping[str, pl.Schema], providers: Mapping[str, str]) -> TableSchema:
    """raw_line_items: the lineage columns, then every delivered column of the day's slices, as delivered."""
    columns = [
        TableColumn(name=name, type=str(dtype), description=LINEAGE_DESCRIPTIONS[name])
        for name, dtype in LINEAGE_COLUMNS.items()
    ]
    delivered: dict[str, dict[str, str]] = {}  # column -> source -> type
    for source, schema in schemas.items():
        for name, dtype in schema.items():
            if name not in LINEAGE_COLUMNS:
                delivered.setdefault(name, {})[source] = str(dtype)
    for name, by_source in delivered.items():
        where = ", ".join(f"{s} ({providers.get(s, 'export')})" for s in by_source)
        columns.append(
            TableColumn(
                name=name,
                type=" | ".join(dict.fromkeys(by_source.values())),
                description=f"Delivered column, values as delivered (from {where})",
            )
        )
    return TableSchema(columns=columns)


def normalized_schema(schemas: Mapping[str, pl.Schema]) -> TableSchema:
    """normalized_line_items: every FOCUS column, the lineage columns, and the slices' `x_` columns."""
    tags = {"x_TagList": pl.List(pl.Struct({"key": pl.String, "value": pl.String}))}
    return table_schema({**tags, **_union(schemas, set())})


def allocation_descriptions(policy: TagPolicy) -> dict[str, str]:
    """The columns the tag policy adds, each described from the policy itself."""
    owner = policy.owner_dimension
    out: dict[str, str] = {}
    for dimension, rule in policy.dimensions.items():
        out[dimension] = (
            f"Allocated {dimension}: the value of the first tag among {', '.join(rule.keys)} "
            f"(keys folded, in that order), else the account-to-owner table; null when neither decides"
        )
        out[f"{dimension}_rule"] = (
            f"Rule that decided {dimension}: tag:<delivered key> or account:<account id>; null when none did"
        )
    out["allocation_rule"] = f"Rule that decided the owner dimension ({owner}), or 'unallocated'"
    out["unallocated"] = f"True when the row has no {owner}: its cost is unallocated"
    return out


def enriched_schema(schemas: Mapping[str, pl.Schema], policy: TagPolicy) -> TableSchema:
    """tag_enriched_costs: the normalized columns, then one column per allocation dimension and its rule."""
    allocation = allocation_descriptions(policy)
    base = normalized_schema(
        {s: pl.Schema({n: t for n, t in schema.items() if n not in allocation}) for s, schema in schemas.items()}
    )
    added = [
        TableColumn(name=name, type="Boolean" if name == "unallocated" else "String", description=text)
        for name, text in allocation.items()
    ]
    return TableSchema(columns=list(base.columns) + added)


RECONCILIATION_DESCRIPTIONS: dict[str, str] = {
    "source": "Export source (billing.yaml `sources`) the row reconciles",
    "usage_date": "Usage day (UTC): the daily partition",
    "BillingAccountId": "Billing account (FOCUS BillingAccountId)",
    "BillingCurrency": "Currency of every amount in the row (FOCUS BillingCurrency); amounts are never added "
    "across currencies",
    "invoice_id": "The provider's invoice(s) of the account and currency for the month, comma-separated; "
    "null until one exists",
    "raw_rows": "Rows of the day in the raw slice, as delivered",
    "raw_total": "Cost of those rows as delivered (the provider's billed-cost column)",
    "quarantined_rows": "Rows set aside in quarantine/rows (unparseable values, outside the billing period)",
    "quarantined_total": "Delivered cost of the quarantined rows",
    "duplicate_rows": "Rows dropped as duplicates (kept in quarantine/duplicates)",
    "duplicate_total": "BilledCost of the duplicate rows",
    "normalized_rows": "Rows published in normalized_line_items",
    "normalized_total": "BilledCost of the rows published in normalized_line_items",
    "effective_total": "EffectiveCost of the rows published in normalized_line_items",
    "enriched_total": "BilledCost of tag_enriched_costs (must equal normalized_total)",
    "allocated_total": "BilledCost of the tag_enriched_costs rows that have an owner",
    "conservation_delta": "raw_total - quarantined_total - duplicate_total - normalized_total: must be 0",
    "month_to_date_total": "Normalized BilledCost of the month up to and including the day (GCP: of the invoice month)",
    "invoice_amount": "Amount of the provider's invoice for the month; null until it exists",
    "invoice_delta": "month_to_date_total - invoice_amount",
    "invoice_delta_relative": "invoice_delta / invoice_amount, a fraction (0.01 = 1 %)",
    "status": "The row's verdict (matched, mismatch, no_invoice_yet, month_in_progress, conservation_break, ...; "
    "see README, Reconciliation)",
}


def reconciliation_schema() -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(
                name=name,
                type=str(dtype),
                description=RECONCILIATION_DESCRIPTIONS.get(name) or f"reconciliation column {name}",
            )
            for name, dtype in RECONCILIATION_SCHEMA.items()
        ]
    )
