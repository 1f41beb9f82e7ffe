"""Cost anomalies (SLI M8): spend per service, account and team against a weekday-seasonal baseline.

Cloud spend has a strong weekly rhythm (batch jobs on weekdays, quiet weekends), so a day is compared
with the *same weekday* of the previous weeks: the baseline is their median, the spread their median
absolute deviation (robust to one odd week). A key is anomalous when it moves by more than
`mad_threshold` robust standard deviations (1.4826 x MAD), and by more than both an absolute floor
and a relative floor (so a flat history with MAD 0 does not flag cents). A burn-rate rule fires when
the day's total spend exceeds `burn_rate_factor` x the projected daily rate (the mean of the trailing
days). Each anomaly names what moved, by how much, and the rows behind it (a count, the largest
rows, and a DuckDB query that lists them all). The `cost_anomalies` asset stores the day's table at
`<lake>/cost_anomalies/date=D/part-0.parquet` (`publish`); the M8 check and the alerts read it back.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import polars as pl

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import markdown_table, sql_identifier, sql_string
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.names import COST_ANOMALIES, ENRICHED
from billing_pipeline.platform.ops_config import AnomalyConfig
from billing_pipeline.platform.storage import FileInfo, Store, join, scratch_dir

TABLE = COST_ANOMALIES
V = TypeVar("V")
ROBUST_SIGMA = 1.4826

ANOMALY_SCHEMA: dict[str, pl.DataType] = {
    "usage_date": pl.Date(),
    "kind": pl.String(),  # spend_anomaly | burn_rate
    "dimension": pl.String(),  # service | account | team | total
    "key": pl.String(),
    "spend": pl.Float64(),
    "baseline": pl.Float64(),
    "mad": pl.Float64(),
    "delta": pl.Float64(),
    "delta_percent": pl.Float64(),
    "score": pl.Float64(),
    "history_points": pl.Int64(),
    "rows": pl.Int64(),
    "top_rows": pl.String(),
    "query": pl.String(),
    "message": pl.String(),
}

ROW_LABEL_COLUMNS = ("x_Source", "x_LineItemId", "ResourceId", "SubAccountId")


def anomalies_url(lake_url: str, day: dt.date) -> str:
    return join(lake_url, TABLE, f"date={day.isoformat()}", "part-0.parquet")


def dimension_columns(config: BillingConfig) -> dict[str, str]:
    return {"service": "ServiceName", "account": "SubAccountId", "team": config.tag_policy.owner_dimension}


def _enriched_files(store: Store, lake_url: str, day: dt.date) -> list[FileInfo]:
    return [f for f in store.find(join(lake_url, ENRICHED, f"date={day.isoformat()}")) if f.url.endswith(".parquet")]


def read_day(
    store: Store, lake_url: str, day: dt.date, workdir: Path, columns: tuple[str, ...] = ()
) -> pl.DataFrame | None:
    """The day's allocated rows of every source (only the columns anomaly detection needs)."""
    files = _enriched_files(store, lake_url, day)
    return _read_files(store, files, workdir, columns) if files else None


# A day's burn rate compares it with the mean of the days before it; in a backfill each of those days was summed
# by every one of the days after it (28 reads a day). A day's total is kept for the process by the identities of
# its enriched slices (path, size, ETag or mtime): a rebuilt slice has another identity and is summed again.
_TOTAL_BY_SLICES: KeptByIdentity[tuple[tuple[str, ...], tuple[str, ...]], float] = KeptByIdentity(limit=100_000)


# Each day is also the history of the four same weekdays after it: its spend per key of each dimension is kept
# the same way (a few keys per dimension, whatever the rows), so a later day does not read its slices again.
_KEY_SUMS_BY_SLICES: KeptByIdentity[tuple[tuple[str, ...], tuple[str, ...]], dict[str, dict[str, float]]] = (
    KeptByIdentity(limit=10_000)
)


def _kept_for_day(
    kept: KeptByIdentity[tuple[tuple[str, ...], tuple[str, ...]], V],
    store: Store,
    lake_url: str,
    day: dt.date,
    columns: tuple[str, ...],
    derive: Callable[[list[FileInfo]], V],
) -> V | None:
    """`derive(files)` of the day's enriched slices, kept by their identities and `columns` (None: no slice)."""
    files = _enriched_files(store, lake_url, day)
    if not files:
        return None
    key = (tuple(f.identity for f in files), columns)
    value = kept.get(key)
    return value if value is not None else kept.keep(key, derive(files))


def day_key_sums(
    store: Store, lake_url: str, day: dt.date, workdir: Path, columns: tuple[str, ...]
) -> dict[str, dict[str, float]] | None:
    """The day's allocated spend per key of each of `columns` its slices have (None: no slice of the day)."""

    def sums(files: list[FileInfo]) -> dict[str, dict[str, float]]:
        frame = _read_files(store, files, workdir, columns)
        return {c: _by_key(frame, c) for c in columns if c in frame.columns}

    return _kept_for_day(_KEY_SUMS_BY_SLICES, store, lake_url, day, columns, sums)


def day_total(store: Store, lake_url: str, day: dt.date, workdir: Path) -> float | None:
    """The day's allocated spend of every source (None: no slice of the day)."""

    def total(files: list[FileInfo]) -> float:
        return float(_read_files(store, files, workdir)["BilledCost"].sum() or 0.0)

    return _kept_for_day(_TOTAL_BY_SLICES, store, lake_url, day, (), total)


def _read_files(store: Store, files: list[FileInfo], workdir: Path, columns: tuple[str, ...] = ()) -> pl.DataFrame:
    frames = []
    for info in files:
        frame = pl.scan_parquet(store.stage(info.url, workdir))
        schema = frame.collect_schema()
        wanted = {"BilledCost", "ServiceName", "SubAccountId", "BillingAccountId", *ROW_LABEL_COLUMNS, *columns}
        frames.append(frame.select([c for c in schema if c in wanted]))
    out = pl.concat(frames, how="diagonal_relaxed").collect()
    if "SubAccountId" in out.columns and "BillingAccountId" in out.columns:
        out = out.with_columns(pl.coalesce("SubAccountId", "BillingAccountId").alias("SubAccountId"))
    return out.with_columns(pl.col("BilledCost").cast(pl.Float64))


def _sql(day: dt.date, column: str | None, key: str | None) -> str:
    """The query listing the rows behind an anomaly, for a human to run: the key is a delivered tag value
    and the column comes from billing.yaml, so both are quoted."""
    where = f"date = DATE '{day.isoformat()}'"
    if column is not None and key is not None:
        where += f" AND {sql_identifier(column)} = {sql_string(key)}"
    return f"SELECT * FROM {ENRICHED} WHERE {where} ORDER BY abs(BilledCost) DESC"


def _top_rows(frame: pl.DataFrame, limit: int) -> str:
    if limit == 0 or frame.is_empty():
        return ""
    labels = [c for c in ROW_LABEL_COLUMNS if c in frame.columns]
    top = frame.sort(pl.col("BilledCost").abs(), descending=True).head(limit)
    return "; ".join(
        " ".join(f"{c}={row[c]}" for c in labels if row[c] is not None) + f" cost={row['BilledCost']:.4f}"
        for row in top.iter_rows(named=True)
    )


def _by_key(frame: pl.DataFrame, column: str) -> dict[str, float]:
    grouped = frame.group_by(pl.col(column).cast(pl.String).fill_null("(none)")).agg(pl.col("BilledCost").sum())
    return {k: float(v or 0.0) for k, v in grouped.iter_rows()}


def _spend_record(
    day: dt.date,
    dimension: str,
    column: str,
    key: str,
    spend: float,
    values: list[float],
    today: pl.DataFrame,
    rules: AnomalyConfig,
) -> dict | None:
    """One key of one dimension against the median and MAD of its same-weekday history (None: not anomalous).

    One key per team / service / account: a handful per day, so `statistics.median` on a short list."""
    baseline = statistics.median(values)
    mad = statistics.median(abs(v - baseline) for v in values)
    delta = spend - baseline
    threshold = max(
        rules.mad_threshold * ROBUST_SIGMA * mad, rules.min_relative_change * abs(baseline), rules.min_abs_change
    )
    if abs(delta) <= threshold:
        return None
    rows = today.filter(pl.col(column).cast(pl.String).fill_null("(none)") == key)
    spread = ROBUST_SIGMA * mad
    return {
        "usage_date": day,
        "kind": "spend_anomaly",
        "dimension": dimension,
        "key": key,
        "spend": spend,
        "baseline": baseline,
        "mad": mad,
        "delta": delta,
        "delta_percent": (delta / baseline * 100) if baseline else None,
        "score": (delta / spread) if spread else None,
        "history_points": len(values),
        "rows": rows.height,
        "top_rows": _top_rows(rows, rules.max_rows_listed),
        "query": _sql(day, column, key),
        "message": (
            f"{dimension} {key!r} spent {spend:,.2f} on {day:%A %Y-%m-%d}, {delta:+,.2f} against the "
            f"median {baseline:,.2f} of the same weekday over {len(values)} week(s)"
        ),
    }


def _spend_anomalies(
    config: BillingConfig, day: dt.date, today: pl.DataFrame, history: list[dict[str, dict[str, float]]]
) -> list[dict]:
    """Spend per key of each configured dimension against the same weekday of the previous weeks (`history`:
    each week's spend per key, by column: `day_key_sums`)."""
    records = []
    for dimension in config.anomalies.dimensions:
        column = dimension_columns(config)[dimension]
        if column not in today.columns:
            continue
        current = _by_key(today, column)
        past = [week.get(column, {}) for week in history]
        for key in sorted(set(current) | {k for p in past for k in p}):
            record = _spend_record(
                day,
                dimension,
                column,
                key,
                current.get(key, 0.0),
                [p.get(key, 0.0) for p in past],
                today,
                config.anomalies,
            )
            if record is not None:
                records.append(record)
    return records


def _burn_rate_anomaly(day: dt.date, today: pl.DataFrame, totals: list[float], rules: AnomalyConfig) -> dict | None:
    """The day's whole spend against the trailing daily mean (None: within `burn_rate_factor`)."""
    spend = float(today["BilledCost"].sum() or 0.0)
    if len(totals) < rules.burn_rate_min_history_days:
        return None
    projected = sum(totals) / len(totals)
    if projected <= 0 or spend <= rules.burn_rate_factor * projected:
        return None
    return {
        "usage_date": day,
        "kind": "burn_rate",
        "dimension": "total",
        "key": "all spend",
        "spend": spend,
        "baseline": projected,
        "mad": None,
        "delta": spend - projected,
        "delta_percent": (spend - projected) / projected * 100,
        "score": spend / projected,
        "history_points": len(totals),
        "rows": today.height,
        "top_rows": _top_rows(today, rules.max_rows_listed),
        "query": _sql(day, None, None),
        "message": (
            f"burn rate: {spend:,.2f} spent on {day}, {spend / projected:.1f}x the projected daily rate "
            f"{projected:,.2f} (limit {rules.burn_rate_factor:g}x)"
        ),
    }


def detect(config: BillingConfig, store: Store, day: dt.date) -> pl.DataFrame:
    """All anomalies of `day` (an empty table when there is nothing to compare with, or nothing moved)."""
    rules = config.anomalies
    records: list[dict] = []
    owner = (config.tag_policy.owner_dimension,)
    with scratch_dir("billing-anomalies-") as workdir:
        today = read_day(store, config.lake_url, day, workdir, owner)
        if today is None:
            return pl.DataFrame(schema=ANOMALY_SCHEMA)
        columns = tuple(dimension_columns(config)[dimension] for dimension in rules.dimensions)
        weeks = [
            day_key_sums(store, config.lake_url, day - dt.timedelta(days=7 * k), workdir, columns)
            for k in range(1, rules.weeks + 1)
        ]
        history = [w for w in weeks if w is not None]
        if len(history) >= rules.min_history_weeks:
            records += _spend_anomalies(config, day, today, history)
        trailing = [
            day_total(store, config.lake_url, day - dt.timedelta(days=k), workdir)
            for k in range(1, rules.burn_rate_history_days + 1)
        ]
        totals = [total for total in trailing if total is not None]
        burn = _burn_rate_anomaly(day, today, totals, rules)
        if burn is not None:
            records.append(burn)
    return pl.DataFrame(records, schema=ANOMALY_SCHEMA) if records else pl.DataFrame(schema=ANOMALY_SCHEMA)


def publish(config: BillingConfig, store: Store, day: dt.date) -> pl.DataFrame:
    """Detect and replace the day's anomaly table in the lake (removed when nothing is anomalous)."""
    table = detect(config, store, day)
    url = anomalies_url(config.lake_url, day)
    if table.height:
        with scratch_dir("billing-anomalies-") as workdir:
            store.write_parquet(table, url, workdir)
    else:
        store.remove(url)
    return table


def read_published(store: Store, lake_url: str, day: dt.date) -> pl.DataFrame:
    """The day's stored anomaly table (empty when the day had none, or was never evaluated)."""
    url = anomalies_url(lake_url, day)
    if not store.exists(url):
        return pl.DataFrame(schema=ANOMALY_SCHEMA)
    return pl.read_parquet(store.read_bytes(url))


def preview(table: pl.DataFrame, limit: int = 20) -> str:
    """The first anomalies as a Markdown table; keys are delivered tag values, so every cell is escaped."""
    return markdown_table(
        [
            {
                "kind": r["kind"],
                "dimension": r["dimension"],
                "key": r["key"],
                "spend": f"{r['spend']:.2f}",
                "baseline": f"{r['baseline']:.2f}",
                "delta": f"{r['delta']:+.2f}",
                "rows": r["rows"],
            }
            for r in table.head(limit).iter_rows(named=True)
        ],
        empty="_no anomaly_",
    )
