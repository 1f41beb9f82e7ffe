"""Where everything lives in the lake, and the DuckDB catalogue of views over it.

Curated tables: `<lake>/<asset>/date=YYYY-MM-DD/source=<name>/part-0.parquet` (hive layout, one
file per day and source, so a source's slice is replaced on its own and atomically).
Raw slices and quarantine: under the raw lake (`raw_lake_url`, by default the lake itself), because
they hold the rows as delivered, clear identifiers included (README, "Security"):
`<raw lake>/raw_line_items/...`, `<raw lake>/quarantine/...` (see README, "Bad input").
Day tables of every source at once: `<lake>/cost_anomalies/date=YYYY-MM-DD/part-0.parquet`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path

import duckdb
import yaml

from billing_pipeline.platform.escaping import sql_string
from billing_pipeline.platform.names import COST_ANOMALIES, RAW, SPINE
from billing_pipeline.platform.storage import Store, is_remote, join

CURATED_TABLES = SPINE  # one view per spine asset, named like its table
AUDIT_TABLES = {"audit_log": "audit_log"}  # `date=D/action=A/<run>.parquet`: append-only (lifecycle/audit_log.py)
QUARANTINE_TABLES = {
    "quarantine_records": "quarantine/records",
    "quarantine_rows": "quarantine/rows",
    "quarantine_duplicates": "quarantine/duplicates",
}
DAY_TABLES = (COST_ANOMALIES,)  # one file per day, no `source=` level
SLICE_FILE = "part-0.parquet"
QUARANTINE = "quarantine"
RAW_LAKE_TABLES = (RAW, QUARANTINE)  # top-level folders that live under the raw lake


class LakeUrl(str):
    """The lake's URL (curated tables, state, reports, audit log), which also knows the raw lake's.

    It is the string `lake_url` everywhere a URL is expected; the path helpers below put raw slices and
    the quarantine under `raw_url` instead, so no caller has to pass the raw lake along.
    """

    raw_url: str

    def __new__(cls, lake_url: str, raw_url: str | None = None) -> LakeUrl:
        made = super().__new__(cls, lake_url)
        made.raw_url = str(raw_url or lake_url)
        return made

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (LakeUrl, (str(self), self.raw_url))


for _dumper in (yaml.SafeDumper, yaml.Dumper):  # YAML writes a LakeUrl as the plain URL it is
    _dumper.add_representer(LakeUrl, lambda dumper, url: dumper.represent_str(str(url)))


def raw_lake(lake_url: str) -> str:
    """Where raw slices and the quarantine live: the raw lake of a `LakeUrl`, else the lake itself."""
    return getattr(lake_url, "raw_url", str(lake_url))


def table_root(lake_url: str, relative: str) -> str:
    """The folder of a table given relative to the lake (`raw_line_items`, `quarantine/rows`, `normalized_...`)."""
    top = relative.split("/", 1)[0]
    return join(raw_lake(lake_url) if top in RAW_LAKE_TABLES else lake_url, relative)


def slice_url(lake_url: str, table: str, day: dt.date, source: str) -> str:
    return join(table_root(lake_url, table), f"date={day.isoformat()}", f"source={source}", SLICE_FILE)


def quarantine_url(lake_url: str, kind: str, day: dt.date, source: str) -> str:
    """kind: records | rows | duplicates | bad_dates (under the raw lake)."""
    return join(raw_lake(lake_url), QUARANTINE, kind, f"date={day.isoformat()}", f"source={source}", SLICE_FILE)


def quarantined_file_url(lake_url: str, source: str, version: str, file_uri: str) -> str:
    safe_version = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)[-80:]
    return join(
        raw_lake(lake_url),
        "quarantine",
        "files",
        f"source={source}",
        f"version={safe_version}",
        file_uri.rstrip("/").rsplit("/", 1)[-1],
    )


def table_glob(lake_url: str, relative: str) -> str:
    """Every slice of a table partitioned by day and source."""
    return join(table_root(lake_url, relative), "*", "*", "*.parquet")


def day_table_glob(lake_url: str, relative: str) -> str:
    """Every file of a table partitioned by day only."""
    return join(table_root(lake_url, relative), "*", "*.parquet")


def view_globs(lake_url: str) -> dict[str, tuple[str, str]]:
    """DuckDB view -> (its table's folder, raw lake or lake, the glob of its files)."""
    by_source = {name: name for name in CURATED_TABLES} | QUARANTINE_TABLES | AUDIT_TABLES
    views = {view: (table_root(lake_url, rel), table_glob(lake_url, rel)) for view, rel in by_source.items()}
    return views | {name: (table_root(lake_url, name), day_table_glob(lake_url, name)) for name in DAY_TABLES}


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
    registered: set[str] = set()
    for url in (lake_url, raw_lake(lake_url)):  # the raw lake may live in another store
        protocol = url.split("://", 1)[0]
        if is_remote(url) and protocol not in registered:
            lake_fs, _ = store.fs(url)
            connection.register_filesystem(lake_fs)
            registered.add(protocol)


def create_views(connection: duckdb.DuckDBPyConnection, lake_url: str, store: Store) -> list[str]:
    """(Re)create in `connection` one view per table of the lake that has data; returns the views created.

    Every view is attempted; if any cannot be created (e.g. a damaged file), `CatalogueError` names them all
    after the others are in place.
    """
    created: list[str] = []
    failed: list[str] = []
    for view, (folder, files) in view_globs(lake_url).items():
        try:
            if not store.find(folder):
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
