"""Quarantine records: one row per problem the spine found, with source, day, file, reason and kind.

`<lake>/quarantine/records/date=D/source=S/part-0.parquet`; each stage (the raw step's is `raw`)
replaces its own records of the slice and keeps the other stages'.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import FileProblem
from billing_pipeline.platform.lake import quarantine_url
from billing_pipeline.platform.storage import Store

QUARANTINE_RECORD_SCHEMA = {
    "source": pl.String,
    "usage_date": pl.Date,
    "stage": pl.String,
    "kind": pl.String,
    "file_uri": pl.String,
    "export_version": pl.String,
    "reason": pl.String,
    "rows": pl.Int64,
    "quarantined_copy": pl.String,
    "detected_at": pl.Datetime("us", "UTC"),
}


def write_records(
    store: Store, lake_url: str, day: dt.date, source: str, records: list[dict], workdir: Path, stage: str
) -> None:
    """Replace this stage's quarantine records for the slice (other stages' records are kept)."""
    url = quarantine_url(lake_url, "records", day, source)
    new = pl.DataFrame(records, schema=QUARANTINE_RECORD_SCHEMA)
    if store.exists(url):
        old = pl.read_parquet(store.stage(url, workdir)).filter(pl.col("stage") != stage)
        new = pl.concat([old, new], how="vertical_relaxed")
    if new.height:
        store.write_parquet(new, url, workdir)
    else:
        store.remove(url)


def quarantine_record(
    source: str,
    day: dt.date,
    problem: FileProblem,
    version: str,
    at: dt.datetime,
    rows: int = 0,
    copy: str | None = None,
) -> dict:
    """One row of `quarantine/records` (raw stage): source, day, file, reason, kind."""
    return {
        "source": source,
        "usage_date": day,
        "stage": "raw",
        "kind": problem.kind,
        "file_uri": problem.file_uri,
        "export_version": version,
        "reason": problem.reason,
        "rows": rows,
        "quarantined_copy": copy,
        "detected_at": at,
    }
