"""`<lake>/audit_log/`: an append-only Parquet table of what was done to the lake, by whom and when.

Layout `audit_log/date=<run day>/action=<action>/<run id>-<random>.parquet`: one file per run and action,
never rewritten (a name that exists is refused), so the DuckDB view `audit_log` reads it like the other
tables. Retention never expires it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import polars as pl

from billing_pipeline.lifecycle.tables import AUDIT_LOG
from billing_pipeline.platform.storage import Store, join

AUDIT_LOG_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Datetime("us", "UTC"),
    "action": pl.String(),
    "dry_run": pl.Boolean(),
    "who": pl.String(),
    "run_id": pl.String(),
    "table": pl.String(),
    "partition": pl.String(),
    "files": pl.Int64(),
    "bytes": pl.Int64(),
    "detail": pl.String(),
}


class AuditLogExistsError(RuntimeError):
    """An audit log file is never rewritten: its name was already taken."""


def audit_log_url(lake_url: str, at: dt.datetime, action: str, run_id: str) -> str:
    safe_run = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in run_id)[:64] or "run"
    name = f"{safe_run}-{uuid.uuid4().hex[:12]}.parquet"
    return join(lake_url, AUDIT_LOG, f"date={at.date().isoformat()}", f"action={action}", name)


def append_audit_records(store: Store, lake_url: str, records: pl.DataFrame, workdir: Path) -> str | None:
    """Publish one run's records of one action as a new file; returns its URL (None when there are none)."""
    if records.height == 0:
        return None
    records = records.select([pl.col(name).cast(dtype) for name, dtype in AUDIT_LOG_SCHEMA.items()])
    first = records.row(0, named=True)
    url = audit_log_url(lake_url, first["at"], first["action"], first["run_id"])
    if store.exists(url):
        raise AuditLogExistsError(f"audit log file {url} exists; it is never rewritten")
    store.write_parquet(records, url, workdir)
    return url


def read_audit_log(store: Store, lake_url: str, workdir: Path) -> pl.DataFrame:
    """Every audit record in the lake (staged locally first for an object store)."""
    files = [info.url for info in store.find(join(lake_url, AUDIT_LOG)) if info.url.endswith(".parquet")]
    if not files:
        return pl.DataFrame(schema=AUDIT_LOG_SCHEMA)
    staged = [str(store.stage(url, workdir)) for url in files]
    return pl.scan_parquet(staged, hive_partitioning=False).select(list(AUDIT_LOG_SCHEMA)).collect()
