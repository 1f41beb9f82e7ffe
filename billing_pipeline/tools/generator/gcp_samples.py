"""GCP export files in the shape Google delivers them, from what the project has: the public koku
samples (a *flattened* CSV that koku's own BigQuery query produced, `service.description`,
Python-repr lists for `labels` and `credits`) and the generator's frames.

Why a builder: Google never delivers that CSV. The billing export is a BigQuery table with nested
columns, exported to newline-delimited JSON or Parquet, so the samples are rebuilt into that shape
(dotted names -> structs, repr lists -> lists of structs, text timestamps -> TIMESTAMP) and
written as BigQuery's `EXPORT DATA` writes them: JSON with timestamps as `YYYY-MM-DD HH:MM:SS[.f]
UTC` text, Parquet with typed columns. Values are not changed: costs stay the floats of the CSV.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl

from billing_pipeline.adapters.gcp import CREDIT, SCHEMA, TIME_COLUMNS

_KV = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))


def _repr_list(column: str, dtype: pl.DataType) -> pl.Expr:
    """koku's Python-repr list (`[{'key': 'a', 'value': None}]`) as a typed list of structs."""
    as_json = (
        pl.col(column)
        .str.replace_all("'", '"')
        .str.replace_all(r"\bNone\b", "null")
        .str.replace_all(r"\bTrue\b", "true")
        .str.replace_all(r"\bFalse\b", "false")
    )
    return as_json.str.json_decode(dtype)


def _text(column: str) -> pl.Expr:
    value = pl.col(column).str.strip_chars()
    return pl.when(value != "").then(value)


def koku_csv_to_nested(path: Path) -> pl.DataFrame:
    """A koku flattened GCP CSV as rows of the native export table (nested columns, typed)."""
    raw = pl.read_csv(path, infer_schema=False)

    def col(name: str) -> pl.Expr:
        return _text(name) if name in raw.columns else pl.lit(None, dtype=pl.String)

    def number(name: str) -> pl.Expr:
        return col(name).cast(pl.Float64)

    def when(name: str) -> pl.Expr:
        return col(name).str.to_datetime(time_unit="us", time_zone="UTC")

    frame = raw.select(
        col("billing_account_id").alias("billing_account_id"),
        pl.struct(col("service.id").alias("id"), col("service.description").alias("description")).alias("service"),
        pl.struct(col("sku.id").alias("id"), col("sku.description").alias("description")).alias("sku"),
        when("usage_start_time").alias("usage_start_time"),
        when("usage_end_time").alias("usage_end_time"),
        pl.struct(
            col("project.id").alias("id"),
            pl.lit(None, dtype=pl.String).alias("number"),
            col("project.name").alias("name"),
            _repr_list("project.labels", _KV).alias("labels"),
            col("project.ancestry_numbers").alias("ancestry_numbers"),
        ).alias("project"),
        _repr_list("labels", _KV).alias("labels"),
        _repr_list("system_labels", _KV).alias("system_labels"),
        pl.struct(*[col(f"location.{f}").alias(f) for f in ("location", "country", "region", "zone")]).alias(
            "location"
        ),
        *(
            [
                pl.struct(col("resource.name").alias("name"), col("resource.global_name").alias("global_name")).alias(
                    "resource"
                )
            ]
            if "resource.name" in raw.columns
            else []
        ),
        when("export_time").alias("export_time"),
        number("cost").alias("cost"),
        col("currency").alias("currency"),
        number("currency_conversion_rate").alias("currency_conversion_rate"),
        pl.struct(
            number("usage.amount").alias("amount"),
            col("usage.unit").alias("unit"),
            number("usage.amount_in_pricing_units").alias("amount_in_pricing_units"),
            col("usage.pricing_unit").alias("pricing_unit"),
        ).alias("usage"),
        _repr_list("credits", pl.List(CREDIT)).alias("credits"),
        pl.struct(col("invoice.month").alias("month")).alias("invoice"),
        col("cost_type").alias("cost_type"),
    )
    return frame.with_columns(pl.col(c).cast(SCHEMA[c]) for c in frame.columns if isinstance(SCHEMA[c], pl.Struct))


def bigquery_json_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as BigQuery's JSON export spells them (`2020-11-09 23:00:00 UTC`)."""
    return frame.with_columns(
        pl.col(c)
        .dt.convert_time_zone("UTC")
        .dt.strftime("%Y-%m-%d %H:%M:%S%.f UTC")
        .str.replace(r"\.000000 UTC$", " UTC")
        for c in TIME_COLUMNS
        if c in frame.columns
    )


def write_ndjson(frame: pl.DataFrame, path: Path, chunk_rows: int = 200_000) -> Path:
    """Newline-delimited JSON as `EXPORT DATA (format='JSON')` writes it; gzip when the name ends `.gz`.

    Written `chunk_rows` at a time, so a 10M-row batch never holds its whole text in memory (deflate's
    output does not depend on how its input is split, so the bytes are the same as in one write).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw:
        handle = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.name.endswith(".gz") else raw
        try:
            for start in range(0, max(frame.height, 1), chunk_rows):
                buffer = io.BytesIO()
                bigquery_json_text(frame.slice(start, chunk_rows)).write_ndjson(buffer)
                handle.write(buffer.getvalue())
        finally:
            if handle is not raw:
                handle.close()
    return path


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path
