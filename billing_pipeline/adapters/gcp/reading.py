"""GCP export files (newline-delimited JSON, optionally gzip, or Parquet) read into one typed shape.

Both formats are conformed to `SCHEMA`, the export table's columns as typed in BigQuery: a field
a file lacks is a typed null, a field beyond the canonical ones is kept, timestamps are UTC.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.adapters.base import EmptyExportFileError
from billing_pipeline.adapters.cells import parse_datetime
from billing_pipeline.platform.focus import TIMESTAMP

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
TIME_COLUMNS = ("usage_start_time", "usage_end_time", "export_time")
JSON_SAMPLE_ROWS = 1000

KEY_VALUE = pl.Struct({"key": pl.String, "value": pl.String})
CREDIT = pl.Struct(
    {"name": pl.String, "amount": pl.Float64, "full_name": pl.String, "id": pl.String, "type": pl.String}
)
# The export table's columns (standard and detailed), as typed in BigQuery.
SCHEMA: dict[str, pl.DataType] = {
    "billing_account_id": pl.String(),
    "service": pl.Struct({"id": pl.String, "description": pl.String}),
    "sku": pl.Struct({"id": pl.String, "description": pl.String}),
    "usage_start_time": TIMESTAMP,
    "usage_end_time": TIMESTAMP,
    "project": pl.Struct(
        {
            "id": pl.String,
            "number": pl.String,
            "name": pl.String,
            "labels": pl.List(KEY_VALUE),
            "ancestry_numbers": pl.String,
            "ancestors": pl.List(pl.Struct({"resource_name": pl.String, "display_name": pl.String})),
        }
    ),
    "labels": pl.List(KEY_VALUE),
    "system_labels": pl.List(KEY_VALUE),
    "location": pl.Struct({"location": pl.String, "country": pl.String, "region": pl.String, "zone": pl.String}),
    "resource": pl.Struct({"name": pl.String, "global_name": pl.String}),
    "tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String, "inherited": pl.Boolean, "namespace": pl.String})),
    "price": pl.Struct(
        {
            "effective_price": pl.Float64,
            "tier_start_amount": pl.Float64,
            "unit": pl.String,
            "pricing_unit_quantity": pl.Float64,
        }
    ),
    "subscription": pl.Struct({"instance_id": pl.String}),
    "transaction_type": pl.String(),
    "seller_name": pl.String(),
    "export_time": TIMESTAMP,
    "cost": pl.Float64(),
    "cost_at_list": pl.Float64(),
    "currency": pl.String(),
    "currency_conversion_rate": pl.Float64(),
    "usage": pl.Struct(
        {"amount": pl.Float64, "unit": pl.String, "amount_in_pricing_units": pl.Float64, "pricing_unit": pl.String}
    ),
    "credits": pl.List(CREDIT),
    "invoice": pl.Struct({"month": pl.String, "publisher_type": pl.String}),
    "cost_type": pl.String(),
    "adjustment_info": pl.Struct({"id": pl.String, "description": pl.String, "mode": pl.String, "type": pl.String}),
}


def gcp_time(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """BigQuery's timestamp spellings (`2020-11-09 23:00:00 UTC`, `...+00:00`, Parquet INT64) as UTC."""
    return parse_datetime(expr, dtype)


def conform_expr(expr: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    """`expr` (of type `have`) in the canonical type `want`; fields the file lacks become nulls.

    Fields the file has beyond the canonical ones are kept (appended), so nothing delivered is lost.
    """
    if have == want:
        return expr
    if isinstance(have, pl.Null) or (isinstance(have, pl.List) and isinstance(have.inner, pl.Null)):
        return expr.cast(want)
    if isinstance(want, pl.Datetime):
        return gcp_time(expr, have)
    if isinstance(want, pl.Struct) and isinstance(have, pl.Struct):
        have_fields = {f.name: f.dtype for f in have.fields}
        fields = [
            conform_expr(expr.struct.field(f.name), have_fields[f.name], f.dtype).alias(f.name)
            if f.name in have_fields
            else pl.lit(None, dtype=f.dtype).alias(f.name)
            for f in want.fields
        ]
        wanted = {f.name for f in want.fields}
        fields += [expr.struct.field(name) for name in have_fields if name not in wanted]
        return pl.when(expr.is_not_null()).then(pl.struct(fields))
    if isinstance(want, pl.List) and isinstance(have, pl.List):
        return expr.list.eval(conform_expr(pl.element(), have.inner, want.inner))
    if want.is_numeric() and have.is_numeric():
        return expr.cast(want)
    if want == pl.String and not have.is_nested():
        return expr.cast(pl.String)
    return expr  # a type the adapter cannot use: left as delivered (schema drift reports it)


def _json_schema(want: pl.DataType) -> pl.DataType:
    """The canonical type as JSON spells it (timestamps are text there)."""
    if isinstance(want, pl.Datetime):
        return pl.String()
    if isinstance(want, pl.Struct):
        return pl.Struct({f.name: _json_schema(f.dtype) for f in want.fields})
    if isinstance(want, pl.List):
        return pl.List(_json_schema(want.inner))
    return want


def is_json(name: str) -> bool:
    return name.lower().endswith(JSON_SUFFIXES)


def read_gcp_file(local_file: Path) -> pl.LazyFrame:
    """One exported file in the canonical typed shape: JSON with the table's schema (plus any column
    the first rows show beyond it), Parquet as typed by BigQuery, both conformed to `SCHEMA`."""
    if local_file.stat().st_size == 0:
        raise EmptyExportFileError("the file is empty (0 bytes)")
    if is_json(local_file.name):
        sample = pl.read_ndjson(local_file, n_rows=JSON_SAMPLE_ROWS, infer_schema_length=JSON_SAMPLE_ROWS)
        schema = {name: _json_schema(dtype) for name, dtype in SCHEMA.items()}
        schema |= {name: dtype for name, dtype in sample.schema.items() if name not in SCHEMA}
        frame = pl.scan_ndjson(local_file, schema=schema)
    else:
        pl.read_parquet_schema(local_file)  # fails fast on a truncated file (no footer)
        frame = pl.scan_parquet(local_file)
    present = frame.collect_schema()
    known = [
        conform_expr(pl.col(name), present[name], dtype).alias(name)
        if name in present
        else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in SCHEMA.items()
    ]
    return frame.select(*known, *[pl.col(name) for name in present if name not in SCHEMA])
