"""Reconciliation: does every cent of the delivery reach the curated tables, and match the invoice?

Per source, billing account and currency, for one day: the raw total as delivered, what went to
quarantine (bad rows, duplicates), the normalized, enriched and allocated totals, and, once the
provider's invoice for the month exists, month-to-date against it.

Invoices are CSV files under `invoices_url` with the header
`invoice_id,billing_account_id,billing_period,currency,amount` (`billing_period` is `YYYY-MM`,
`amount` a decimal in the billing currency); extra columns are ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal, localcontext
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import adapter_for
from billing_pipeline.adapters.base import listing_fingerprint
from billing_pipeline.platform.config import BillingConfig, ReconciliationConfig, SourceConfig
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import ENRICHED, NORMALIZED, RAW, RECONCILED
from billing_pipeline.platform.parallel import compute_clock
from billing_pipeline.platform.state import ABSENT, read_state
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.calendar import days_of_period, period_closed, period_of
from billing_pipeline.spine.layer_state import is_stale, record_layer_build, slice_identity

KEYS = ["BillingAccountId", "BillingCurrency"]
INVOICE_COLUMNS = ["invoice_id", "billing_account_id", "billing_period", "currency", "amount"]


def read_invoices(store: Store, invoices_url: str, workdir: Path) -> pl.DataFrame:
    """Every invoice row under `invoices_url` (a file or a folder of CSVs)."""
    files = [f.url for f in store.find(invoices_url) if f.url.lower().endswith(".csv")]
    if not files and invoices_url.lower().endswith(".csv") and store.exists(invoices_url):
        files = [invoices_url]
    frames = []
    for url in files:
        frame = pl.read_csv(store.stage(url, workdir), infer_schema=False)
        missing = [c for c in INVOICE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"invoice file {url} lacks columns {missing} (expected {INVOICE_COLUMNS})")
        frames.append(frame.select(INVOICE_COLUMNS))
    if not frames:
        return pl.DataFrame(schema={c: pl.String for c in INVOICE_COLUMNS}).with_columns(pl.col("amount").cast(MONEY))
    return pl.concat(frames).with_columns(pl.col("amount").str.strip_chars().cast(MONEY))


def _grouped(frame: pl.LazyFrame | None, aggregations: list[pl.Expr]) -> pl.LazyFrame | None:
    if frame is None:
        return None
    return frame.group_by(KEYS).agg(aggregations)


def _scan(store: Store, url: str, workdir: Path) -> pl.LazyFrame | None:
    return pl.scan_parquet(store.stage(url, workdir)) if store.exists(url) else None


def month_to_date_days(day: dt.date, by_invoice_month: bool = False) -> list[dt.date]:
    """The days whose normalized slices make `day`'s month to date (GCP: from the previous month on)."""
    first = day.replace(day=1)
    start = (first - dt.timedelta(days=1)).replace(day=1) if by_invoice_month else first
    return [start + dt.timedelta(days=offset) for offset in range((day - start).days + 1)]


def latest_reconciled_day(store: Store, lake_url: str, source: str, period: str, after: dt.date) -> dt.date | None:
    """The period's latest day after `after` whose reconciliation was built: its month to date (judged against
    the invoice once the period is closed, M7) reads `after`'s slice, so a restated `after` must re-run it."""
    for day in reversed(days_of_period(period)):
        if day <= after:
            return None
        if (read_state(store, lake_url, source, day).get("reconciliation") or {}).get("built_from"):
            return day
    return None


# A day's month to date reads every normalized slice of the month before it (of two months for GCP); in a backfill
# each slice was read again by every later day of its month. A slice's sums per billing account and currency are
# kept for the process by the slice's identity (path, size, ETag or mtime): a rebuilt slice is read again.
_SLICE_SUMS: KeptByIdentity[tuple[str, str], pl.DataFrame] = KeptByIdentity(limit=100_000)


def month_to_date(
    store: Store, lake_url: str, source: str, day: dt.date, workdir: Path, by_invoice_month: bool = False
) -> pl.LazyFrame | None:
    """Normalized BilledCost of the month up to and including `day`, from the lake's slices (exact: Decimal sums
    of each slice's sums).

    `by_invoice_month` (GCP): the rows invoiced in `day`'s month (BillingPeriodStart), whose usage
    may reach back into the previous month (late rows land on the next invoice).
    """
    first = day.replace(day=1)
    sums = []
    for current in month_to_date_days(day, by_invoice_month):
        url = slice_url(lake_url, NORMALIZED, current, source)
        try:
            identity = store.info(url).identity
        except FileNotFoundError:
            continue
        key = (identity, first.isoformat() if by_invoice_month else "")
        kept = _SLICE_SUMS.get(key)
        if kept is None:
            frame = pl.scan_parquet(store.stage(url, workdir))
            if by_invoice_month:
                frame = frame.filter(pl.col("BillingPeriodStart").dt.date() == first)
            kept = _SLICE_SUMS.keep(
                key, frame.group_by(KEYS).agg(pl.col("BilledCost").cast(MONEY).sum()).collect(engine="streaming")
            )
        sums.append(kept)
    if not sums:
        return None
    return pl.concat(sums).lazy().group_by(KEYS).agg(pl.col("BilledCost").sum().alias("month_to_date_total"))


def within_tolerance(delta: Decimal | None, invoice: Decimal | None, tolerances: ReconciliationConfig) -> bool:
    """|delta| <= absolute_tolerance, or |delta| <= relative_tolerance x |invoice|: exact decimal arithmetic,
    so a delta exactly at a tolerance is within it and the smallest step beyond is not."""
    if delta is None or invoice is None:
        return False
    with localcontext() as context:
        context.prec = 100  # money is Decimal(38, 18): products stay exact
        if abs(delta) <= tolerances.absolute_tolerance:
            return True
        return invoice != 0 and abs(delta) <= tolerances.relative_tolerance * abs(invoice)


RECONCILIATION_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "usage_date": pl.Date(),
    "BillingAccountId": pl.String(),
    "BillingCurrency": pl.String(),
    "invoice_id": pl.String(),
    "raw_rows": pl.Int64(),
    "raw_total": MONEY,
    "quarantined_rows": pl.Int64(),
    "quarantined_total": MONEY,
    "duplicate_rows": pl.Int64(),
    "duplicate_total": MONEY,
    "normalized_rows": pl.Int64(),
    "normalized_total": MONEY,
    "effective_total": MONEY,
    "enriched_total": MONEY,
    "allocated_total": MONEY,
    "conservation_delta": MONEY,
    "month_to_date_total": MONEY,
    "invoice_amount": MONEY,
    "invoice_delta": MONEY,
    "invoice_delta_relative": pl.Float64(),
    "status": pl.String(),
}


def empty_reconciliation() -> pl.DataFrame:
    return pl.DataFrame(schema=RECONCILIATION_SCHEMA)


def decimal_or_zero(value: object) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


MONEY_COLUMNS = (
    "raw_total",
    "quarantined_total",
    "duplicate_total",
    "normalized_total",
    "effective_total",
    "enriched_total",
    "allocated_total",
    "month_to_date_total",
)
COUNT_COLUMNS = ("raw_rows", "quarantined_rows", "duplicate_rows", "normalized_rows")


def _layer_totals(source: SourceConfig, day: dt.date, store: Store, lake_url: str, workdir: Path) -> list[pl.LazyFrame]:
    """Per billing account and currency, the totals of each layer and quarantine that has the day."""
    adapter = adapter_for(source.provider)
    raw = _scan(store, slice_url(lake_url, RAW, day, source.name), workdir)
    bad_rows = _scan(store, quarantine_url(lake_url, "rows", day, source.name), workdir)
    parts = [
        _grouped(
            adapter.raw_totals(raw) if raw is not None else None,
            [pl.len().alias("raw_rows"), pl.col("cost").sum().alias("raw_total")],
        ),
        _grouped(
            adapter.raw_totals(bad_rows) if bad_rows is not None else None,
            [pl.len().alias("quarantined_rows"), pl.col("cost").sum().alias("quarantined_total")],
        ),
        _grouped(
            _scan(store, quarantine_url(lake_url, "duplicates", day, source.name), workdir),
            [pl.len().alias("duplicate_rows"), pl.col("BilledCost").sum().alias("duplicate_total")],
        ),
        _grouped(
            _scan(store, slice_url(lake_url, NORMALIZED, day, source.name), workdir),
            [
                pl.len().alias("normalized_rows"),
                pl.col("BilledCost").sum().alias("normalized_total"),
                pl.col("EffectiveCost").sum().alias("effective_total"),
            ],
        ),
        _grouped(
            _scan(store, slice_url(lake_url, ENRICHED, day, source.name), workdir),
            [
                pl.col("BilledCost").sum().alias("enriched_total"),
                pl.col("BilledCost").filter(~pl.col("unallocated")).sum().alias("allocated_total"),
            ],
        ),
        month_to_date(
            store,
            lake_url,
            source.name,
            day,
            workdir,
            by_invoice_month=getattr(adapter, "bills_by_invoice_month", False),
        ),
    ]
    return [frame for frame in parts if frame is not None]


def _side_by_side(totals: list[pl.LazyFrame]) -> pl.DataFrame:
    """One row per billing account and currency with every total (absent ones 0, missing columns null)."""
    table = pl.concat([frame.select(KEYS) for frame in totals]).unique()
    for frame in totals:
        table = table.join(frame, on=KEYS, how="left", nulls_equal=True)
    collected = table.collect()
    missing = [
        pl.lit(None, dtype=dtype).alias(c) for c, dtype in RECONCILIATION_SCHEMA.items() if c not in collected.columns
    ]
    zero = pl.lit(0, dtype=MONEY)
    return collected.with_columns(missing).with_columns(
        [pl.col(c).cast(MONEY).fill_null(zero) for c in MONEY_COLUMNS]
        + [pl.col(c).cast(pl.Int64).fill_null(0) for c in COUNT_COLUMNS]
    )


def _with_invoices(table: pl.DataFrame, invoices: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The month's invoice ids and amount per billing account and currency, and the deltas against them."""
    month_invoices = (
        invoices.filter(pl.col("billing_period") == period_of(day))
        .group_by("billing_account_id", "currency")
        .agg(
            pl.col("invoice_id").sort().str.join(",").alias("invoice_id"),
            pl.col("amount").sum().alias("invoice_amount"),
        )
        .rename({"billing_account_id": "BillingAccountId", "currency": "BillingCurrency"})
    )
    table = table.drop("invoice_id", "invoice_amount").join(month_invoices, on=KEYS, how="left", nulls_equal=True)
    conservation = (
        pl.col("raw_total") - pl.col("quarantined_total") - pl.col("duplicate_total") - pl.col("normalized_total")
    )
    invoice_delta = pl.col("month_to_date_total") - pl.col("invoice_amount")
    return table.with_columns(
        conservation.alias("conservation_delta"),
        invoice_delta.alias("invoice_delta"),
        pl.when(pl.col("invoice_amount") != 0)
        .then(invoice_delta.cast(pl.Float64) / pl.col("invoice_amount").cast(pl.Float64))
        .alias("invoice_delta_relative"),
    )


def _with_status(table: pl.DataFrame, tolerances: ReconciliationConfig, day: dt.date) -> pl.DataFrame:
    """Each row's status, the first that applies: conservation_break, no_invoice_yet, month_in_progress,
    matched (within tolerance), mismatch."""
    # exact Decimal arithmetic (`within_tolerance`), on the few rows of a day (one per account and currency)
    within = pl.Series(
        "_within",
        [
            within_tolerance(delta, amount, tolerances)
            for delta, amount in zip(table["invoice_delta"].to_list(), table["invoice_amount"].to_list(), strict=True)
        ],
        dtype=pl.Boolean,
    )
    status = (
        pl.when((pl.col("conservation_delta") != 0) | (pl.col("enriched_total") != pl.col("normalized_total")))
        .then(pl.lit("conservation_break"))
        .when(pl.col("invoice_amount").is_null())
        .then(pl.lit("no_invoice_yet"))
        .when(not period_closed(day))
        .then(pl.lit("month_in_progress"))
        .when(pl.col("_within"))
        .then(pl.lit("matched"))
        .otherwise(pl.lit("mismatch"))
    )
    return table.with_columns(within).with_columns(status.alias("status")).drop("_within")


def build_reconciliation(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    invoices: pl.DataFrame,
    tolerances: ReconciliationConfig,
    workdir: Path,
) -> pl.DataFrame:
    """One row per billing account and currency of the source's day, with deltas and a status."""
    totals = _layer_totals(source, day, store, lake_url, workdir)
    if not totals:
        return empty_reconciliation()
    table = _with_status(_with_invoices(_side_by_side(totals), invoices, day), tolerances, day)
    return (
        table.with_columns(pl.lit(source.name).alias("source"), pl.lit(day).alias("usage_date"))
        .select(list(RECONCILIATION_SCHEMA))
        .cast(RECONCILIATION_SCHEMA)
        .sort(KEYS, nulls_last=True)
    )


def publish_reconciliation(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    invoices: pl.DataFrame,
    tolerances: ReconciliationConfig,
    workdir: Path,
) -> pl.DataFrame:
    """Build the source's reconciliation rows for the day and replace its slice atomically."""
    frame = build_reconciliation(source, day, store, lake_url, invoices, tolerances, workdir)
    target = slice_url(lake_url, RECONCILED, day, source.name)
    if frame.height:
        store.write_parquet(frame, target, workdir)
    else:
        store.remove(target)
    return frame


def invoices_digest(store: Store, invoices_url: str) -> str:
    """What the invoices are (their listing): a changed or new invoice file re-runs reconciliation."""
    files = store.find(invoices_url)
    return hashlib.sha256(listing_fingerprint(files).encode()).hexdigest()[:16]


def publish_reconciliation_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    config: BillingConfig,
    invoices: pl.DataFrame,
    invoices_id: str,
    workdir: Path,
) -> pl.DataFrame:
    """`publish_reconciliation`, unless its three input slices and the invoices are unchanged."""
    started = compute_clock()
    lake_url = config.lake_url
    inputs = [
        slice_identity(store, slice_url(lake_url, table, day, source.name)) for table in (RAW, NORMALIZED, ENRICHED)
    ]
    # the month to date reads the earlier days' normalized slices: a restated earlier day makes this one stale
    earlier = month_to_date_days(day, getattr(adapter_for(source.provider), "bills_by_invoice_month", False))[:-1]
    inputs += [slice_identity(store, slice_url(lake_url, NORMALIZED, d, source.name)) for d in earlier]
    built_from = "|".join([*inputs, invoices_id, config.reconciliation.model_dump_json()])
    target = slice_url(lake_url, RECONCILED, day, source.name)
    section = read_state(store, lake_url, source.name, day).get("reconciliation") or {}
    present = slice_identity(store, target) != ABSENT
    if not is_stale(section, built_from, present):
        return pl.read_parquet(store.stage(target, workdir)) if present else pl.DataFrame(schema=RECONCILIATION_SCHEMA)
    frame = publish_reconciliation(source, day, store, lake_url, invoices, config.reconciliation, workdir)
    record_layer_build(
        store, lake_url, source.name, day, "reconciliation", built_from, {"rows": frame.height}, started, target
    )
    return frame
