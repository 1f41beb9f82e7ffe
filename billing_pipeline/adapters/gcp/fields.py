"""Typed reads of a GCP delivery's (nested) fields: a field the delivery lacks is a typed null."""

from __future__ import annotations

import polars as pl

from billing_pipeline.adapters.cells import MONEY_LIMIT, money_problem, parse_money
from billing_pipeline.adapters.gcp.reading import CREDIT


class GcpFields:
    """A delivery's fields by column and struct path (`fields.text("service", "description")`)."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema

    def field(self, column: str, *path: str, dtype: pl.DataType = pl.String) -> pl.Expr:
        """A (nested) field, or a typed null when the delivery lacks it."""
        if column not in self.schema:
            return pl.lit(None, dtype=dtype)
        expr, current = pl.col(column), self.schema[column]
        for name in path:
            if not isinstance(current, pl.Struct) or name not in {f.name for f in current.fields}:
                return pl.lit(None, dtype=dtype)
            current = {f.name: f.dtype for f in current.fields}[name]
            expr = expr.struct.field(name)
        return expr

    def text(self, column: str, *path: str) -> pl.Expr:
        """A field as stripped text, empty text as null."""
        value = self.field(column, *path).cast(pl.String).str.strip_chars()
        return pl.when(value != "").then(value)

    def field_type(self, column: str, path: tuple[str, ...]) -> pl.DataType:
        """The delivered type of a top-level column; nested numbers are floats in the export."""
        return self.schema[column] if column in self.schema and not path else pl.Float64

    def money(self, column: str, *path: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
        """A money field as Decimal (`limit=None`: a quantity or rate); `problem` says why it cannot be used."""
        return parse_money(self.field(column, *path, dtype=pl.Float64), self.field_type(column, path), limit)

    def problem(self, column: str, *path: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
        """Why a money field cannot be used (quarantine reason), null where it can."""
        expr = self.field(column, *path, dtype=pl.Float64)
        return money_problem(expr, self.field_type(column, path), ".".join((column, *path)), limit)

    def credits(self) -> pl.Expr:
        """The credits list, also from the JSON text quarantined rows carry."""
        if "credits" not in self.schema:
            return pl.lit([], dtype=pl.List(CREDIT))
        if self.schema["credits"] == pl.String:
            return pl.col("credits").str.json_decode(pl.List(CREDIT))
        return pl.col("credits")


def distinct_values(raw: pl.LazyFrame, fields: GcpFields) -> dict[str, list[str | None]]:
    """The distinct services, units and regions of a delivery: the lookups are built on them.

    One narrow streaming pass over their combinations (a few dozen): `unique().implode()` per column
    ran in memory and held the four nested columns of the whole day (250 MiB at 1M rows).
    """
    combinations = (
        raw.select(
            fields.text("service", "description").alias("service"),
            fields.text("usage", "pricing_unit").alias("pricing_unit"),
            fields.text("usage", "unit").alias("unit"),
            fields.text("location", "region").alias("region"),
        )
        .unique()
        .collect(engine="streaming")
    )
    return {name: combinations[name].unique().sort(nulls_last=True).to_list() for name in combinations.columns}
