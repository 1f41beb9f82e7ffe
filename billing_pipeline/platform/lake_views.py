"""When the DuckDB views over the lake need creating again, so that a run does not re-list the whole lake.

`platform/lake.py` `refresh_views` (re)creates one view per table that has data, listing every file of
every table to decide. A view reads its table by a glob, so the days and sources written since show up
in it by themselves; only a table that appears or disappears, or a DuckDB file replaced, needs the views
created again. The spine and `cost_anomalies` call `refresh_views_if_tables_changed` once per run.
"""

from __future__ import annotations

import json
from pathlib import Path

from billing_pipeline.platform.encryption import make_private_file
from billing_pipeline.platform.lake import refresh_views, view_globs
from billing_pipeline.platform.storage import Store

VIEWS_SIGNATURE_SUFFIX = ".views.json"  # beside the DuckDB file: what its views were last created over


def refresh_views_if_tables_changed(lake_url: str, duckdb_file: str | None, store: Store) -> bool:
    """`refresh_views` unless the tables that exist and the DuckDB file are those of the last refresh.

    A view reads its table's files by a glob, so a new day or source shows up in it by itself: only a table
    that appears or disappears (the first quarantined row, a lake emptied) or a DuckDB file replaced since
    needs the views created again. Deciding that costs one `exists` per table, instead of listing every file
    of every table on each run. Returns whether the views were refreshed."""
    if duckdb_file is None:
        return False
    tables = sorted(view for view, (folder, _) in view_globs(lake_url).items() if store.exists(folder))
    signature_file = Path(duckdb_file + VIEWS_SIGNATURE_SUFFIX)
    database = Path(duckdb_file)
    wanted = {"lake_url": lake_url, "tables": tables}
    if database.exists() and signature_file.exists():
        recorded = json.loads(signature_file.read_text())
        if recorded.get("database_mtime_ns") == database.stat().st_mtime_ns and recorded | wanted == recorded:
            return False
    refresh_views(lake_url, duckdb_file, store)
    if database.exists():
        signature_file.write_text(json.dumps(wanted | {"database_mtime_ns": database.stat().st_mtime_ns}))
        make_private_file(signature_file)  # it sits in a local lake: the lake's file mode
    return True
