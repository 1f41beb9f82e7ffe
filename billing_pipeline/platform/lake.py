"""Where everything lives in the lake, and the DuckDB catalogue of views over it.

Curated tables: `<lake>/<asset>/date=YYYY-MM-DD/source=<name>/part-0.parquet` (hive layout, one
file per day and source, so a source's slice is replaced on its own and atomically).
Quarantine: `<lake>/quarantine/...` (see README, "Bad input").
Day tables of every source at once: `<lake>/cost_anomalies/date=YYYY-MM-DD/part-0.parquet`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

import duckdb

from billing_pipeline.platform.escaping import sql_string
from billing_pipeline.platform.names import COST_ANOMALIES, SPINE
from billing_pipeline.platform.storage import Store, is_remote, join

log = logging.getLogger(__name__)

CURATED_TABLES = SPINE  # one view per spine asset, named like its table
AUDIT_TABLES = {"audit_log": "audit_log"}  # `date=D/action=A/<run>.parquet`: append-only (lifecycle/audit_log.py)
QUARANTINE_TABLES = {
    "quarantine_records": "quarantine/records",
    "quarantine_rows": "quarantine/rows",
    "quarantine_duplicates": "quarantine/duplicates",
}
DAY_TABLES = (COST_ANOMALIES,)  # one file per day, no `source=` level
SLICE_FILE = "part-0.parquet"


def slice_url(lake_url: str, table: str, day: dt.date, source: str) -> str:
    return join(lake_url, table, f"date={day.isoformat()}", f"source={source}", SLICE_FILE)


def quarantine_url(lake_url: str, kind: str, day: dt.date, source: str) -> str:
    """kind: records | rows | duplicates."""
    return join(lake_url, "quarantine", kind, f"date={day.isoformat()}", f"source={source}", SLICE_FILE)


def quarantined_file_url(lake_url: str, source: str, version: str, file_uri: str) -> str:
    safe_version = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)[-80:]
    return join(
        lake_url,
        "quarantine",
        "files",
        f"source={source}",
        f"version={safe_version}",
        file_uri.rstrip("/").rsplit("/", 1)[-1],
    )


def table_glob(lake_url: str, relative: str) -> str:
    """Every slice of a table partitioned by day and source."""
    return join(lake_url, relative, "*", "*", "*.parquet")


def day_table_glob(lake_url: str, relative: str) -> str:
    """Every file of a table partitioned by day only."""
    return join(lake_url, relative, "*", "*.parquet")


def view_globs(lake_url: str) -> dict[str, tuple[str, str]]:
    """DuckDB view -> (its table's folder under the lake, the glob of its files)."""
    by_source = {name: name for name in CURATED_TABLES} | QUARANTINE_TABLES | AUDIT_TABLES
    views = {view: (relative, table_glob(lake_url, relative)) for view, relative in by_source.items()}
    return views | {name: (name, day_table_glob(lake_url, name)) for name in DAY_TABLES}


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """One writer across processes, by a lock file on local disk (the DuckDB catalogue, the alert state)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CatalogueError(RuntimeError):
    """The DuckDB catalogue over the lake could not be (fully) built; the message names the lake, views and why."""


def register_lake_filesystem(connection: duckdb.DuckDBPyConnection, lake_url: str, store: Store) -> None:
    """Let DuckDB read an object-store lake through the store's own s3fs / gcsfs client (same endpoint and
    credentials as the pipeline), so no DuckDB extension is downloaded: this works offline."""
    if is_remote(lake_url):
        lake_fs, _ = store.fs(lake_url)
        connection.register_filesystem(lake_fs)


def create_views(connection: duckdb.DuckDBPyConnection, lake_url: str, store: Store) -> list[str]:
    """(Re)create in `connection` one view per table of the lake that has data; returns the views created.

    Every view is attempted; if any cannot be created (e.g. a damaged file), `CatalogueError` names them all
    after the others are in place.
    """
    created: list[str] = []
    failed: list[str] = []
    for view, (relative, files) in view_globs(lake_url).items():
        try:
            if not store.find(join(lake_url, relative)):
                connection.execute(f"DROP VIEW IF EXISTS {view}")
                continue
            connection.execute(  # DDL takes no bound parameters: the lake path is quoted as a literal
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet("
                f"{sql_string(files)}, hive_partitioning = true, union_by_name = true)"
            )
        except (duckdb.Error, OSError) as error:
            failed.append(f"{view} ({files}): {type(error).__name__}: {error}")
            continue
        created.append(view)
    if failed:
        raise CatalogueError(f"DuckDB views over {lake_url} not created: " + "; ".join(failed))
    return created


def refresh_views(lake_url: str, duckdb_file: str | None, store: Store) -> list[str]:
    """(Re)create the catalogue file's views, one per table that has data; returns the views created.

    A finance analyst then answers a question with one query, e.g.
    `SELECT BillingAccountId, sum(BilledCost) FROM normalized_line_items GROUP BY 1`, or lists the week's
    anomalies with `SELECT * FROM cost_anomalies WHERE date >= DATE '2024-03-01'`.

    The views of an object-store lake are bound through the store's fsspec client and stored over the
    lake's `s3://` / `gs://` URLs: `platform.catalogue.connect` reads them offline the same way, and the
    DuckDB CLI reads them with its httpfs extension (README, "Querying the lake with DuckDB").
    """
    if duckdb_file is None:
        return []
    with exclusive_lock(Path(duckdb_file + ".lock")):
        connection = duckdb.connect(duckdb_file)
        try:
            register_lake_filesystem(connection, lake_url, store)
            return create_views(connection, lake_url, store)
        finally:
            connection.close()
