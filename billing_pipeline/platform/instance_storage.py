"""Dagster's SQLite instance storage, with its event log's database connections made cheaper.

Dagster's `SqliteEventLogStorage` creates an SQLAlchemy engine for every connection it opens and disposes of
it after: every statement of every event is compiled again (SQLAlchemy caches compiled statements per engine)
and every write opens the database file, reads its schema, commits and closes it, and closing the last
connection of a WAL database checkpoints it. A day of `billing_daily` writes about 45 events; a check
evaluation touches the run's database once and the index database twice, a materialization each once. This
storage keeps:
- one engine per database file for the process (the compiled statements with it);
- one open connection to the index database (`index.db`, shared by every run), used a transaction at a time;
- which tables the index has (Dagster asks before every check evaluation, through an engine of its own each
  time; a table, once there, stays: migrations add tables, `wipe` empties them).
  Run databases are still opened and closed per write, as Dagster does: the webserver's live run log watches
  each run's `.db` file for changes, which the checkpoint on close makes. Nothing watches the index's file.
The files, their layout under `$DAGSTER_HOME` and their schema are Dagster's (`storage: sqlite`): an instance
written by one reads with the other.

Used by the demo's instance (`tools/demo.py`) and `deploy/dagster.local.yaml` as
`storage: custom: {module: billing_pipeline.platform.instance_storage, class: SqliteStorageKeptEngines}`.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# A webserver reads many runs' databases; past this many kept engines the oldest run's is dropped (never the
# index's, which every write of every run uses).
MAX_KEPT_ENGINES = 64


class SqliteEventLogStorageKeptEngines(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose engines (one per run shard and the index) live as long as the storage."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        self._engines_pid = os.getpid()
        self._index_tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)  # creates the index database on first use

    def _engine_for_shard(self, shard: str) -> Engine:
        """The shard's engine, created on first use (called under Dagster's `_db_lock`, as every use of it is).
        The index's keeps one connection open (a pool of one); a run's opens and closes one per use. In a
        forked child the parent's engines are left alone (`dispose(close=False)`: an SQLite connection must not
        be used or closed across a fork) and new ones are made."""
        if self._engines_pid != os.getpid():
            for inherited in self._engines.values():
                inherited.dispose(close=False)
            self._engines, self._engines_pid = {}, os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            if len(self._engines) >= MAX_KEPT_ENGINES:
                oldest_run = next((name for name in self._engines if name != INDEX_SHARD_NAME), None)
                if oldest_run is not None:
                    self._engines.pop(oldest_run).dispose()
            pool: dict[str, Any] = {"pool_size": 1} if shard == INDEX_SHARD_NAME else {"poolclass": NullPool}
            engine = create_engine(
                self.conn_string_for_shard(shard), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **pool
            )
            self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's own `_connect`, but for where the engine comes from.
        with self._db_lock:
            engine = self._engine_for_shard(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Dagster's (an engine of its own, no lock: it is also asked with `_db_lock` held); a table found is
        # remembered, a missing one asked again
        if table_name not in self._index_tables and super().has_table(table_name):
            self._index_tables.add(table_name)
        return table_name in self._index_tables

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


class SqliteStorageKeptEngines(DagsterSqliteStorage):
    """Dagster's default SQLite storage (`storage: sqlite`, same layout under `base_dir`) with the event log
    above; runs and schedules are Dagster's own."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        # the same folder Dagster's layout gave its own event log (whose object holds no connection)
        self._event_log_storage = SqliteEventLogStorageKeptEngines(self._event_log_storage._base_dir)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> "SqliteStorageKeptEngines":
        return cls.from_local(inst_data=inst_data, **config_value)
