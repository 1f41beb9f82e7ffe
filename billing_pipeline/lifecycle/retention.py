"""The retention pass: delete whole lake partitions past their family's age, and audit every deletion.

A partition is deleted only when all three hold:
- its last day (the day of `date=D`, the last day of `period=P`, else its newest file's day) is before the
  family's cutoff (`retention:` in billing.yaml);
- its billing period is closed: older than the source's `lookback_months` (the months still restated);
- no unresolved quarantine record refers to it (same source and day or period, or its quarantined copy).
  Every record in `quarantine/records` counts as unresolved except an operator's `accepted` one.

A dry run (the default) plans and audits the same records with `dry_run = true` and deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from billing_pipeline.lifecycle.audit_log import append_audit_records
from billing_pipeline.lifecycle.tables import LAKE_TABLES, QUARANTINE_RECORDS
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.lake import table_root
from billing_pipeline.platform.storage import Store, is_remote

log = logging.getLogger(__name__)

RETENTION_ACTION = "retention_delete"
RESOLVED_KINDS = ("accepted",)  # an operator let the held-back version through: nothing left to look at

KEPT_YOUNG = "within retention"
KEPT_OPEN = "billing period still open"
KEPT_QUARANTINE = "referenced by an unresolved quarantine record"
EXPIRED = "past retention"

_PARTITION = r"^((?:[^/=]+=[^/]+/)+)"


@dataclass(frozen=True)
class RetentionRun:
    """Who asks, when, and whether to really delete."""

    who: str
    run_id: str
    dry_run: bool = True
    at: dt.datetime | None = None  # None: now (UTC)

    @property
    def started(self) -> dt.datetime:
        return self.at or dt.datetime.now(dt.UTC)


@dataclass
class RetentionResult:
    plan: pl.DataFrame  # one row per partition: table, partition, files, bytes, last_day, decision
    audit: pl.DataFrame  # the audit records written (deleted, or would be deleted in a dry run)
    audit_url: str | None

    @property
    def deleted_partitions(self) -> int:
        return self.audit.height


def _files(store: Store, lake_url: str) -> pl.DataFrame:
    """Every file of every retention table, with its family, table and size."""
    rows = [
        {
            "family": table.family,
            "table": table.relative,
            "root": table_root(lake_url, table.relative),
            "url": info.url,
            "bytes": info.size,
            "modified": info.modified,
        }
        for table in LAKE_TABLES
        for info in store.find(table_root(lake_url, table.relative))
    ]
    schema = {"family": pl.String, "table": pl.String, "root": pl.String, "url": pl.String}
    return pl.DataFrame(rows, schema={**schema, "bytes": pl.Int64, "modified": pl.String})


def _modified_day() -> pl.Expr:
    """A listing's modification time as a day: epoch seconds (local disk) or ISO text (object stores)."""
    text = pl.col("modified")
    epoch = pl.from_epoch((text.cast(pl.Float64, strict=False) * 1_000_000).cast(pl.Int64), time_unit="us")
    return pl.coalesce(epoch.dt.date(), text.str.slice(0, 10).str.to_date(strict=False))


def list_partitions(store: Store, lake_url: str) -> pl.DataFrame:
    """One row per partition: family, table, partition, source, date, period, version, files, bytes, last_day."""
    files = _files(store, lake_url).with_columns(
        partition=pl.col("url").str.strip_prefix(pl.col("root") + "/").str.extract(_PARTITION, 1).str.strip_suffix("/"),
        modified_day=_modified_day(),
    )
    grouped = (
        files.lazy()
        .filter(pl.col("partition").is_not_null())
        .group_by("family", "table", "root", "partition")
        .agg(files=pl.len(), bytes=pl.col("bytes").sum(), newest_file_day=pl.col("modified_day").max())
    )
    part = pl.col("partition")
    period_start = (part.str.extract(r"(?:^|/)period=(\d{4}-\d{2})(?:/|$)", 1) + "-01").str.to_date(strict=False)
    return (
        grouped.with_columns(
            source=part.str.extract(r"(?:^|/)source=([^/]+)", 1),
            date=part.str.extract(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})(?:/|$)", 1).str.to_date(strict=False),
            period_end=period_start.dt.month_end(),
            version=part.str.extract(r"(?:^|/)version=([^/]+)", 1),
        )
        .with_columns(last_day=pl.coalesce("date", "period_end", "newest_file_day"))
        .sort("table", "partition")
        .collect()
    )


def unresolved_references(store: Store, lake_url: str, workdir: Path) -> pl.DataFrame:
    """The partition keys (`<source or *>|date=D`, `|period=P`, `|version=V`) unresolved records refer to."""
    urls = [f.url for f in store.find(table_root(lake_url, QUARANTINE_RECORDS)) if f.url.endswith(".parquet")]
    if not urls:
        return pl.DataFrame({"key": []}, schema={"key": pl.String})
    records = (
        pl.scan_parquet([str(store.stage(url, workdir)) for url in urls], hive_partitioning=False)
        .select("source", "usage_date", "kind", "quarantined_copy")
        .filter(~pl.col("kind").is_in(RESOLVED_KINDS))
    )
    day = pl.col("usage_date").cast(pl.String)
    version = pl.col("quarantined_copy").str.extract(r"/version=([^/]+)/", 1)
    keys = [
        pl.col("source") + "|date=" + day,
        pl.lit("*|date=") + day,
        pl.col("source") + "|period=" + day.str.slice(0, 7),
        pl.col("source") + "|version=" + version,
    ]
    return records.select(key=pl.concat_list(keys)).explode("key").drop_nulls().unique().collect()


def _partition_key() -> pl.Expr:
    """The key a partition is protected by, matching `unresolved_references`."""
    kind = (
        pl.when(pl.col("date").is_not_null())
        .then(pl.lit("date=") + pl.col("date").cast(pl.String))
        .when(pl.col("period_end").is_not_null())
        .then(pl.lit("period=") + pl.col("period_end").cast(pl.String).str.slice(0, 7))
        .otherwise(pl.lit("version=") + pl.col("version"))
    )
    return pl.col("source").fill_null("*") + "|" + kind


def open_period_starts(config: BillingConfig, today: dt.date) -> tuple[dict[str, dt.date], dt.date]:
    """Per source, the first day of its oldest billing period still open; and the earliest over all sources
    (for partitions of no source or of a source no longer configured)."""
    month = today.year * 12 + today.month - 1

    def start(lookback: int) -> dt.date:
        year, index = divmod(month - (lookback - 1), 12)
        return dt.date(year, index + 1, 1)

    starts = {source.name: start(source.lookback_months) for source in config.sources}
    return starts, min(starts.values())


def plan_retention(
    config: BillingConfig, store: Store, today: dt.date, workdir: Path, lake_url: str | None = None
) -> pl.DataFrame:
    """Every partition of the lake with its cutoff and the decision (`decision == EXPIRED` is deleted)."""
    lake = lake_url or config.lake_url
    partitions = list_partitions(store, lake)
    families = ("raw", "quarantine", "state", "reports", "curated")
    cutoffs = {family: config.retention.age(family).cutoff(today) for family in families}
    ages = {family: str(config.retention.age(family)) for family in families}
    starts, earliest = open_period_starts(config, today)
    protected = unresolved_references(store, lake, workdir)["key"]
    return partitions.with_columns(
        cutoff=pl.col("family").replace_strict(cutoffs, return_dtype=pl.Date),
        kept_for=pl.col("family").replace_strict(ages, return_dtype=pl.String),
        open_from=pl.col("source").replace_strict(starts, default=earliest, return_dtype=pl.Date).fill_null(earliest),
        protected=_partition_key().is_in(protected.implode()),
    ).with_columns(
        decision=pl.when(pl.col("last_day") >= pl.col("cutoff"))
        .then(pl.lit(KEPT_YOUNG))
        .when(pl.col("last_day") >= pl.col("open_from"))
        .then(pl.lit(KEPT_OPEN))
        .when(pl.col("protected"))
        .then(pl.lit(KEPT_QUARANTINE))
        .otherwise(pl.lit(EXPIRED))
    )


def _audit_records(expired: pl.DataFrame, run: RetentionRun) -> pl.DataFrame:
    return expired.select(
        at=pl.lit(run.started, dtype=pl.Datetime("us", "UTC")),
        action=pl.lit(RETENTION_ACTION),
        dry_run=pl.lit(run.dry_run),
        who=pl.lit(run.who),
        run_id=pl.lit(run.run_id),
        table=pl.col("table"),
        partition=pl.col("partition"),
        files=pl.col("files").cast(pl.Int64),
        bytes=pl.col("bytes").cast(pl.Int64),
        detail=pl.format("kept {}; last day {} before {}", "kept_for", "last_day", "cutoff"),
    )


def _prune_empty_folders(removed_url: str, lake_url: str) -> None:
    """On a local lake, remove the folders a deletion left empty (`date=D` after its last `source=S`);
    `lake_url`: the lake (or raw lake) the removed partition was in, which is never removed."""
    if is_remote(removed_url):
        return  # object stores have no folders
    folder, root = Path(removed_url).parent, Path(lake_url)
    while folder != root and root in folder.parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def apply_retention(config: BillingConfig, store: Store, run: RetentionRun, workdir: Path) -> RetentionResult:
    """Plan, delete the expired partitions (unless a dry run), and append what was (to be) deleted to the audit log.

    The audit file is written even when a deletion fails midway, listing the partitions already gone.
    """
    plan = plan_retention(config, store, run.started.date(), workdir)
    expired = plan.filter(pl.col("decision") == EXPIRED)
    done: list[int] = []
    try:
        if not run.dry_run:
            for index, (root, table, partition) in enumerate(expired.select("root", "table", "partition").rows()):
                url = f"{root}/{partition}"
                store.remove(url)
                _prune_empty_folders(url, lake_url=root.removesuffix("/" + table))
                done.append(index)
                log.info("retention deleted %s", url)
        else:
            done = list(range(expired.height))
    finally:
        audit = _audit_records(expired[done] if done else expired.clear(), run)
        audit_url = append_audit_records(store, config.lake_url, audit, workdir)
    return RetentionResult(plan=plan, audit=audit, audit_url=audit_url)
