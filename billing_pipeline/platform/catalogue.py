"""Querying the lake with DuckDB: the project's query entry point, and whether the catalogue can be built.

`connect(config)` returns an in-memory DuckDB connection with one view per lake table. An object-store
lake is read through the store's own s3fs / gcsfs client, registered with
`connection.register_filesystem`, so it works offline (no DuckDB extension is downloaded) with the same
endpoint and credentials as the pipeline. `connect(config, use_httpfs=True)` lets DuckDB read an `s3://`
lake itself instead (faster on large scans), through a pre-installed httpfs extension and a temporary
secret built from the lake's storage options; credentials stay in the connection, never in a log.

A DuckDB file cannot keep a Python filesystem between connections, so the catalogue file
(`duckdb_file`, written by `lake.refresh_views`) stores views over the lake's URLs: the DuckDB CLI reads
them with httpfs and a secret (README, "Querying the lake with DuckDB"); Python users call `connect`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import duckdb

from billing_pipeline.platform.config import BillingConfig, ConfigError, load_config
from billing_pipeline.platform.escaping import sql_string
from billing_pipeline.platform.lake import CatalogueError, create_views, exclusive_lock, register_lake_filesystem
from billing_pipeline.platform.storage import Store, is_remote

HTTPFS = "httpfs"
LAKE_SECRET = "billing_lake"


def httpfs_installed(connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether DuckDB's httpfs extension is on this machine (loading it then needs no network)."""
    row = connection.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [HTTPFS]).fetchone()
    return bool(row and row[0])


def load_httpfs(connection: duckdb.DuckDBPyConnection) -> None:
    """LOAD (never INSTALL: no download at query time) httpfs, or say how to pre-install it."""
    try:
        connection.execute(f"LOAD {HTTPFS}")
    except duckdb.Error as error:
        directory = connection.execute("SELECT current_setting('extension_directory')").fetchone()
        raise CatalogueError(
            f"DuckDB {duckdb.__version__} has no httpfs extension installed (extension directory "
            f"{directory[0] if directory and directory[0] else '~/.duckdb/extensions'}): run "
            f'`duckdb -c "INSTALL httpfs"` on a machine with network and copy its httpfs.duckdb_extension '
            f"to the path DuckDB names, or query without use_httpfs (the store's own client, offline). "
            f"DuckDB said: {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from None


def _s3_credentials(options: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(key id, secret, session token): from the options as s3fs takes them, else botocore's chain (the
    environment, a profile, the instance role), the way s3fs itself finds them."""
    if options.get("key") and options.get("secret"):
        return options["key"], options["secret"], options.get("token")
    if options.get("anon"):
        return None, None, None
    import botocore.session  # noqa: PLC0415 - only the httpfs route needs it

    credentials = botocore.session.Session(profile=options.get("profile")).get_credentials()
    if credentials is None:
        return None, None, None
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def s3_secret_sql(scope: str, options: dict[str, Any]) -> str:
    """`CREATE OR REPLACE TEMPORARY SECRET` giving httpfs the s3fs options of `scope` (a URL prefix):
    endpoint (path-style URLs, TLS as the endpoint's scheme says), region and credentials.

    The statement holds credentials: execute it, never log or print it.
    """
    client_kwargs = options.get("client_kwargs") or {}
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    region = client_kwargs.get("region_name") or options.get("region_name")
    key, secret, token = _s3_credentials(options)
    parts = ["TYPE s3", f"SCOPE {sql_string(scope)}"]
    if endpoint:
        parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        parts += [
            f"ENDPOINT {sql_string(parsed.netloc)}",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}",
        ]
    if region:
        parts.append(f"REGION {sql_string(region)}")
    if key and secret:
        parts += [f"KEY_ID {sql_string(key)}", f"SECRET {sql_string(secret)}"]
        if token:
            parts.append(f"SESSION_TOKEN {sql_string(token)}")
    return f"CREATE OR REPLACE TEMPORARY SECRET {LAKE_SECRET} ({', '.join(parts)})"


def connect(config: BillingConfig, store: Store | None = None, use_httpfs: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the lake (the caller closes it).

    By default an object-store lake is read through the store's s3fs / gcsfs client: offline, with the
    storage options of the lake's location. `use_httpfs=True` reads an `s3://` lake with DuckDB's own
    httpfs (pre-installed) and a secret from those options; a `gs://` lake is always read through gcsfs
    (httpfs reaches GCS only with HMAC keys, which gcsfs does not use).
    """
    store = store or config.store()
    connection = duckdb.connect()
    try:
        if use_httpfs and config.lake_url.startswith(("s3://", "s3a://")):
            load_httpfs(connection)
            connection.execute(s3_secret_sql(config.lake_url, store.options(config.lake_url)))
        else:
            register_lake_filesystem(connection, config.lake_url, store)
        create_views(connection, config.lake_url, store)
    except BaseException:
        connection.close()
        raise
    return connection


def view_names(connection: duckdb.DuckDBPyConnection) -> list[str]:
    return sorted(
        row[0] for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    )


@dataclass(frozen=True)
class CatalogueHealth:
    """Whether the lake's DuckDB views can be built and read, and if not, why (ERROR check `lake_catalogue`)."""

    passed: bool
    reason: str
    views: list[str] = field(default_factory=list)
    file_views: list[str] | None = None  # those of the catalogue file, None when there is none
    httpfs_installed: bool = False

    def metadata(self) -> dict[str, object]:
        return {
            "catalogue/views": len(self.views),
            "catalogue/file_views": -1 if self.file_views is None else len(self.file_views),
            "catalogue/httpfs_installed": self.httpfs_installed,
            "views": ", ".join(self.views) or "(none)",
        }


def _file_views_problem(duckdb_file: str, views: list[str]) -> tuple[list[str], str]:
    """The catalogue file's views, and what is wrong with them ("" when it has a view for each lake table).

    Their files are not read again: `connect` has just bound the same globs, and the refresh that wrote
    the file bound them too; a view missing here is a refresh that failed.
    """
    if not Path(duckdb_file).exists():
        return [], f"catalogue file {duckdb_file} does not exist: the views were never refreshed"
    with exclusive_lock(Path(duckdb_file + ".lock")):
        connection = duckdb.connect(duckdb_file, read_only=True)
        try:
            file_views = view_names(connection)
        finally:
            connection.close()
    missing = sorted(set(views) - set(file_views))
    if missing:
        return file_views, (
            f"catalogue file {duckdb_file} lacks the views {missing} although the lake has their tables: "
            f"its last refresh failed (see the runs' 'DuckDB views not refreshed' warnings)"
        )
    return file_views, ""


def catalogue_health(config: BillingConfig, store: Store | None = None) -> CatalogueHealth:
    """Build the views as `connect` does and read the catalogue file's; fail with the reason, never silently."""
    store = store or config.store()
    try:
        connection = connect(config, store)
    except Exception as error:  # noqa: BLE001 - any cause is the check's reason, named in full
        route = "the store's fsspec client" if is_remote(config.lake_url) else "the local disk"
        return CatalogueHealth(False, f"DuckDB views over {config.lake_url} cannot be built through {route}: {error}")
    try:
        views, installed = view_names(connection), httpfs_installed(connection)
    finally:
        connection.close()
    file_views: list[str] | None = None
    if config.duckdb_file is not None:
        try:
            file_views, problem = _file_views_problem(config.duckdb_file, views)
        except (duckdb.Error, OSError) as error:
            file_views, problem = [], f"catalogue file {config.duckdb_file} cannot be opened: {error}"
        if problem:
            return CatalogueHealth(False, problem, views, file_views, installed)
    where = f"; catalogue file {config.duckdb_file}" if config.duckdb_file else ""
    return CatalogueHealth(
        True, f"{len(views)} DuckDB views over {config.lake_url}{where}", views, file_views, installed
    )


def write_result(relation: duckdb.DuckDBPyRelation | None, out: TextIO, as_csv: bool, max_rows: int) -> None:
    """Print a query's result: a table (at most `max_rows` rows) or every row as CSV."""
    if relation is None:  # a statement without a result, e.g. SET
        return
    if as_csv:
        writer = csv.writer(out)
        writer.writerow(relation.columns)
        writer.writerows(relation.fetchall())
        return
    rows = relation.limit(max_rows + 1).fetchall()
    shown = rows[:max_rows]
    widths = [len(name) for name in relation.columns]
    cells = [["" if value is None else str(value) for value in row] for row in shown]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    for row in (relation.columns, ["-" * width for width in widths], *cells):
        out.write(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
    if len(rows) > max_rows:
        out.write(f"(first {max_rows} rows; --csv prints them all)\n")


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """`python -m billing_pipeline.query "SELECT ..."`: one query over the lake's views, printed."""
    parser = argparse.ArgumentParser(
        prog="python -m billing_pipeline.query",
        description="Query the lake's DuckDB views (one per table), offline through the pipeline's own store client.",
    )
    parser.add_argument("sql", nargs="?", help="the query; without it, the views are listed")
    parser.add_argument("--config", help="billing.yaml (default: $BILLING_CONFIG, else ./billing.yaml)")
    parser.add_argument("--csv", action="store_true", help="print every row as CSV instead of a table")
    parser.add_argument("--max-rows", type=int, default=50, help="rows of the table printed (default 50)")
    parser.add_argument("--httpfs", action="store_true", help="read an s3:// lake with DuckDB's pre-installed httpfs")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        connection = connect(config, use_httpfs=args.httpfs)
    except (ConfigError, CatalogueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.sql is None:
            for view in view_names(connection):
                out.write(view + "\n")
            return 0
        try:
            relation = connection.sql(args.sql)
        except duckdb.Error as error:
            print(f"error: query failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        write_result(relation, out, args.csv, args.max_rows)
        return 0
    finally:
        connection.close()
