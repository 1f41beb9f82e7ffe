"""`<lake>/audit_log/`: an append-only Parquet table of what was done to the lake, by whom and when.

Layout `audit_log/date=<run day>/action=<action>/<run id>-<random>.parquet`: one file per run and action,
never rewritten (a name that exists is refused), so the DuckDB view `audit_log` reads it like the other
tables. Retention never expires it.

Actions: `retention_delete` (lifecycle/retention.py), and the operator actions the spine records
(spine/raw.py): `accept_held_back` and `closed_month_rerun`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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


# ---- operator actions ---------------------------------------------------------------------------------------------

ACCEPT_HELD_BACK = "accept_held_back"  # a held-back smaller delivery published on an operator's acceptance
CLOSED_MONTH_RERUN = "closed_month_rerun"  # a day of a closed billing period materialized again
REQUESTED_BY_TAG = "billing/requested_by"
UNKNOWN_OPERATOR = "unknown"


@dataclass(frozen=True)
class OperatorRun:
    """The run an operator action happens in: who launched it (for the audit log) and its id."""

    run_id: str
    who: str = UNKNOWN_OPERATOR
    at: dt.datetime | None = None  # None: now (UTC)

    @classmethod
    def from_tags(cls, run_id: str, tags: Mapping[str, str]) -> OperatorRun:
        """Who from the run's tags: `billing/requested_by`, else Dagster's `dagster/user`, else unknown."""
        return cls(run_id, tags.get(REQUESTED_BY_TAG) or tags.get("dagster/user") or UNKNOWN_OPERATOR)


def append_operator_action(
    store: Store,
    lake_url: str,
    run: OperatorRun,
    action: str,
    *,
    who: str,
    table: str,
    partition: str,
    detail: str,
    workdir: Path,
    files: int = 0,
    size: int = 0,
) -> str | None:
    """One audit record of an operator action (never a dry run); returns the audit file's URL."""
    record = pl.DataFrame(
        [
            {
                "at": run.at or dt.datetime.now(dt.UTC),
                "action": action,
                "dry_run": False,
                "who": who,
                "run_id": run.run_id,
                "table": table,
                "partition": partition,
                "files": files,
                "bytes": size,
                "detail": detail,
            }
        ],
        schema=AUDIT_LOG_SCHEMA,
    )
    return append_audit_records(store, lake_url, record, workdir)
