"""Conversion to the reporting currency with the European Central Bank's daily reference rates.

The ECB publishes, for each TARGET business day, how many units of each currency one euro buys
(`eurofxref-hist.csv`: `Date,USD,JPY,...`, newest first, `N/A` where a currency has no rate that day,
a trailing comma on every line). A usage day converts at the last rate published on or before it
(weekends and holidays take the previous business day), never older than `max_rate_age_days`; a
missing rate is an error naming the currency and day, never a silent 1.0.

Rounding rule: amounts are Decimal(38, 18), the lake's money type. The cross rate of a (day,
currency) is `rate(reporting) / rate(billing)` rounded half to even to 18 decimals, and each amount
times that rate is rounded half to even to 18 decimals (polars' Decimal arithmetic does both). A
currency equal to the reporting currency converts at exactly 1.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import polars as pl

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store

BASE_CURRENCY = "EUR"
MISSING = ("N/A", "")


class MissingRateError(ValueError):
    """No usable reference rate for a currency on a usage day (named in the message)."""


def _csv_bytes(data: bytes) -> bytes:
    """The CSV itself, from the bytes of the CSV or of the ECB's zip holding one."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
        if len(members) != 1:
            raise ValueError(f"expected one CSV in the FX rates zip, found {members}")
        return archive.read(members[0])


def parse_ecb_rates(data: bytes) -> pl.DataFrame:
    """`(rate_date, currency, rate)` from an ECB-layout CSV (or zip), EUR at exactly 1 on every date."""
    wide = pl.read_csv(io.BytesIO(_csv_bytes(data)), infer_schema=False)
    if "Date" not in wide.columns:
        raise ValueError(f"not an ECB reference-rate CSV: no `Date` column in {wide.columns[:5]}")
    wide = wide.select("Date", *[c for c in wide.columns if c.strip() and c != "Date"])
    long = (
        wide.unpivot(index="Date", variable_name="currency", value_name="text")
        .with_columns(pl.col("text").str.strip_chars(), pl.col("currency").str.strip_chars())
        .filter(pl.col("text").is_not_null() & ~pl.col("text").is_in(MISSING))
        .select(
            pl.col("Date").str.strip_chars().str.to_date("%Y-%m-%d").alias("rate_date"),
            "currency",
            pl.col("text").cast(MONEY, strict=True).alias("rate"),
        )
    )
    base = wide.select(
        pl.col("Date").str.strip_chars().str.to_date("%Y-%m-%d").alias("rate_date"),
        pl.lit(BASE_CURRENCY).alias("currency"),
        pl.lit(1, dtype=MONEY).alias("rate"),
    )
    return pl.concat([long, base]).sort("currency", "rate_date")


def read_rates(store: Store, url: str) -> pl.DataFrame:
    """The reference rates at `url` (local path, `s3://`, `gs://`), parsed."""
    return parse_ecb_rates(store.read_bytes(url))


def _as_of(needed: pl.DataFrame, rates: pl.DataFrame, currency: pl.Expr, suffix: str) -> pl.DataFrame:
    """`needed` with the last rate of `currency` on or before each date: `rate_<suffix>`, `rate_date_<suffix>`."""
    left = needed.with_columns(currency.alias("_currency")).sort("date")
    right = rates.rename({"currency": "_currency", "rate": f"rate_{suffix}", "rate_date": f"rate_date_{suffix}"})
    return left.join_asof(
        right.sort(f"rate_date_{suffix}"),
        left_on="date",
        right_on=f"rate_date_{suffix}",
        by="_currency",
        strategy="backward",
        check_sortedness=False,
    ).drop("_currency")


def _stale(suffix: str, max_age_days: int) -> pl.Expr:
    age = pl.col("date") - pl.col(f"rate_date_{suffix}")
    return pl.col(f"rate_{suffix}").is_null() | (age > pl.duration(days=max_age_days))


def cross_rates(needed: pl.DataFrame, rates: pl.DataFrame, reporting: str, max_age_days: int) -> pl.DataFrame:
    """`(date, currency, fx_rate)` for each needed (usage day, billing currency): amount x fx_rate is the
    amount in `reporting`. Raises `MissingRateError` naming every currency and day without a rate."""
    pairs = needed.select(pl.col("date").cast(pl.Date), pl.col("currency").cast(pl.String)).unique()
    joined = _as_of(_as_of(pairs, rates, pl.col("currency"), "billing"), rates, pl.lit(reporting), "reporting")
    foreign = pl.col("currency") != reporting
    missing = joined.filter(foreign & (_stale("billing", max_age_days) | _stale("reporting", max_age_days)))
    if missing.height:
        _raise_missing(missing, reporting, max_age_days)
    return joined.select(
        "date",
        "currency",
        pl.when(foreign)
        .then(pl.col("rate_reporting") / pl.col("rate_billing"))
        .otherwise(pl.lit(1, dtype=MONEY))
        .cast(MONEY)
        .alias("fx_rate"),
    ).sort("date", "currency")


def _raise_missing(missing: pl.DataFrame, reporting: str, max_age_days: int) -> None:
    def first_gap(row: dict[str, object]) -> str:
        currency = row["currency"] if _is_gap(row, "billing", max_age_days) else reporting
        return f"{currency} on {row['date']}"

    gaps = sorted({first_gap(row) for row in missing.head(20).to_dicts()})
    raise MissingRateError(
        f"no reference rate (EUR base) for {', '.join(gaps)}"
        f"{' and more' if missing.height > 20 else ''}: no rate published on or before the day, or the last "
        f"one is more than {max_age_days} days older (reporting.fx_rates_url, reporting.max_rate_age_days)"
    )


def _is_gap(row: dict[str, object], suffix: str, max_age_days: int) -> bool:
    rate_date = row[f"rate_date_{suffix}"]
    day = row["date"]
    assert isinstance(day, dt.date)
    return rate_date is None or (day - rate_date).days > max_age_days  # type: ignore[operator]


def to_reporting(frame: pl.LazyFrame, fx: pl.DataFrame, columns: dict[str, str]) -> pl.LazyFrame:
    """`frame` (with `date` and `BillingCurrency`) plus each `source -> target` column converted."""
    rates = fx.lazy().rename({"currency": "BillingCurrency"})
    return (
        frame.join(rates, on=["date", "BillingCurrency"], how="left")
        .with_columns(
            (pl.col(source) * pl.col("fx_rate")).cast(MONEY).alias(target) for source, target in columns.items()
        )
        .drop("fx_rate")
    )
