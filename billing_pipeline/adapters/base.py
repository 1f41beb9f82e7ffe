"""What every provider adapter shares: deliveries, file problems, and reading one export file.

An adapter is two pure steps: `discover` (which deliveries of a billing period exist, and which
files each one lists) and `to_focus` (raw rows as delivered -> FOCUS columns). Everything with side
effects (staging, writing, quarantining) lives in `billing_pipeline.spine` (raw_read, raw_publish, quarantine).

The shared helpers live by job: `cells` (text, timestamps, money), `deliveries` (deliveries and
the current one), `manifests` (finding a delivery's files). This module keeps the adapter protocol
and reading one export file, and re-exports the helpers under the names other rooms import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import polars as pl

from billing_pipeline.adapters.cells import (
    DATETIME_FORMATS,
    MONEY_LIMIT,
    MONEY_NULLS,
    NULL_LITERALS,
    column_or_null,
    modified_at,
    money_is_missing,
    money_problem,
    parse_datetime,
    parse_money,
    parse_timestamp,
    text,
)
from billing_pipeline.adapters.deliveries import Delivery, DeliveryChoice, FileProblem, choose_current, describe_tie
from billing_pipeline.adapters.manifests import (
    check_listed_file,
    discover_data_exports,
    files_delivery,
    is_inside,
    listing_fingerprint,
    load_manifest,
    relative_to_anchor,
)
from billing_pipeline.platform.storage import Store


class EmptyExportFileError(ValueError):
    """A delivered file with no bytes at all (an interrupted upload, or an empty export)."""


class Adapter(Protocol):
    """One export format. `discover` lists deliveries; `read`/`usage_start`/`to_focus` are pure."""

    provider: str

    def discover(
        self, store: Store, source: str, root: str, billing_period: str, file_format: str
    ) -> list[Delivery]: ...

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame: ...

    def usage_start(self, schema: pl.Schema) -> pl.Expr: ...

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame: ...

    def identify(self, focus: pl.LazyFrame) -> pl.LazyFrame:
        """`to_focus`'s frame plus the key columns a row alone does not give (its rank among identical rows
        of its file, what its file holds): joins over the whole day, added only to the plans that decide
        duplicates, so that the published slice's pass does not compute them."""
        ...

    def dedup_key(self, schema: pl.Schema) -> list[str]: ...

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame: ...


def detect_format(uri: str, configured: str = "auto") -> str:
    """`parquet` or `csv` from a file's name, unless the source configures its format."""
    if configured != "auto":
        return configured
    name = uri.lower()
    if name.endswith((".parquet", ".snappy.parquet", ".gz.parquet")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.zip", ".gz")):
        return "csv"
    raise ValueError(f"cannot tell the format of {uri} from its name (set `format` on the source)")


def read_export_file(local_file: Path, file_format: str) -> pl.LazyFrame:
    """Scan one delivered file as it is: CSV with every column as text, Parquet with its own types.

    CSV is read as text on purpose: real exports carry empty strings and literals like `None` in
    numeric columns, and a value must never change on the way into `raw_line_items`.
    """
    if local_file.stat().st_size == 0:
        raise EmptyExportFileError("the file is empty (0 bytes)")
    if detect_format(local_file.name, file_format) == "parquet":
        pl.read_parquet_schema(local_file)  # fails fast on a truncated file (no footer)
        return pl.scan_parquet(local_file)
    return pl.scan_csv(local_file, infer_schema=False, encoding="utf8-lossy")


def in_column_order(columns: dict[str, pl.Expr], order: tuple[str, ...]) -> list[pl.Expr]:
    """The column groups' expressions, aliased and in the adapter's output order.

    Each column group returns its FOCUS columns by name; the output order is what the layers after
    an adapter see (the FOCUS validator, the ground truth), so each adapter spells it out once and a
    column missing from either side is a bug, raised here.
    """
    mismatch = set(order) ^ set(columns)
    if mismatch:
        raise ValueError(f"column groups and column order disagree on {sorted(mismatch)}")
    return [columns[name].alias(name) for name in order]


__all__ = [
    "DATETIME_FORMATS",
    "MONEY_LIMIT",
    "MONEY_NULLS",
    "NULL_LITERALS",
    "Adapter",
    "Delivery",
    "DeliveryChoice",
    "EmptyExportFileError",
    "FileProblem",
    "check_listed_file",
    "choose_current",
    "column_or_null",
    "describe_tie",
    "detect_format",
    "discover_data_exports",
    "files_delivery",
    "in_column_order",
    "is_inside",
    "listing_fingerprint",
    "load_manifest",
    "modified_at",
    "money_is_missing",
    "money_problem",
    "parse_datetime",
    "parse_money",
    "parse_timestamp",
    "read_export_file",
    "relative_to_anchor",
    "text",
]
