"""The delivered CUR frame on its way to FOCUS: CUR 2.0 names, typed cells, and kept values.

Both CUR flavours are brought to CUR 2.0's snake_case names first (legacy `lineItem/UnblendedCost`
becomes `line_item_unblended_cost`, exactly as the Athena integration names it), so there is one
mapping to FOCUS. `CurFrame` reads the delivered cells (a column the delivery lacks is a typed
null) and keeps the intermediate values the FOCUS columns share as temporary columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from billing_pipeline.adapters.cells import MONEY_LIMIT, parse_datetime, parse_money, text
from billing_pipeline.adapters.shared_columns import SharedColumns
from billing_pipeline.adapters.tags import tags_from_columns, tags_from_map
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.lookup import gather, key_index

MONEY_INPUTS = (
    "line_item_unblended_cost",
    "pricing_public_on_demand_cost",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "reservation_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee",
    "line_item_usage_amount",
    "pricing_public_on_demand_rate",
    "line_item_unblended_rate",
    "reservation_unused_quantity",
    "reservation_total_reserved_units",
)
# Quantities, not money: no MONEY_LIMIT (a usage amount in bytes or requests can be large).
QUANTITY_INPUTS = ("line_item_usage_amount", "reservation_unused_quantity", "reservation_total_reserved_units")
# Fields of CUR 2.0's `product` map that the mapping reads as columns of their own.
PRODUCT_MAP_FIELDS = ("product_name", "servicename", "region", "location")


def snake_case_legacy(name: str) -> str:
    """`lineItem/UnblendedCost` -> `line_item_unblended_cost`, the Athena / CUR 2.0 spelling."""
    if "/" not in name:
        return name
    category, _, field = name.partition("/")

    def snake(part: str) -> str:
        part = re.sub(r"[^0-9A-Za-z]+", "_", part)
        return re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower().strip("_").replace("__", "_")

    return f"{snake(category)}_{snake(field)}"


def _is_legacy_tag(name: str) -> bool:
    return name.startswith("resourceTags/")


def to_snake_frame(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Rename legacy slash columns (tag columns excepted) to CUR 2.0 names; CUR 2.0 passes through."""
    schema = raw.collect_schema()
    renames = {c: snake_case_legacy(c) for c in schema if "/" in c and not _is_legacy_tag(c)}
    # two legacy names may collapse to one snake name; keep the first, like Athena does
    seen: set[str] = set(c for c in schema if "/" not in c)
    mapping: dict[str, str] = {}
    for source, target in renames.items():
        if target in seen:
            continue
        seen.add(target)
        mapping[source] = target
    return raw.rename(mapping) if mapping else raw


def with_product_fields(frame: pl.LazyFrame) -> pl.LazyFrame:
    """CUR 2.0's `product` map fields the mapping reads as `product_<key>` columns (unless delivered)."""
    schema = frame.collect_schema()
    if "product" not in schema or not isinstance(schema["product"], pl.Map):
        return frame
    for key in PRODUCT_MAP_FIELDS:
        if f"product_{key}" not in schema:
            frame = frame.with_columns(pl.col("product").map.get(key).alias(f"product_{key}"))
    return frame


def tag_list(schema: pl.Schema) -> pl.Expr:
    """Resource tags in any CUR spelling: legacy `resourceTags/...` columns, the CUR 2.0 map, Athena columns."""
    legacy = [c for c in schema if _is_legacy_tag(c)]
    if legacy:
        return tags_from_columns({c.split("/", 1)[1]: c for c in legacy})
    if "resource_tags" in schema and isinstance(schema["resource_tags"], pl.Map):
        return tags_from_map("resource_tags")
    athena = [c for c in schema if c.startswith("resource_tags_")]
    if athena:
        return tags_from_columns({c.removeprefix("resource_tags_"): c for c in athena})
    return pl.lit([], dtype=pl.List(pl.Struct({"key": pl.String, "value": pl.String})))


def money_limit(name: str) -> int | None:
    """MONEY_LIMIT for money columns; none for quantities."""
    return None if name in QUANTITY_INPUTS else MONEY_LIMIT


class CurFrame:
    """A CUR delivery being mapped: typed reads of its columns, and values kept once per row.

    `schema` is the delivered schema (after renaming): a column is read only when the delivery
    has it. Each typed read and each `keep` is a shared column (`SharedColumns`), computed once per
    row; `frame` is the delivery with them, and the FOCUS columns are selected from it at the end.
    """

    def __init__(self, raw: pl.LazyFrame) -> None:
        self._delivered = with_product_fields(to_snake_frame(raw))
        self.schema = self._delivered.collect_schema()
        self._shared = SharedColumns()

    @property
    def frame(self) -> pl.LazyFrame:
        """The delivery with every value kept so far."""
        return self._shared.apply(self._delivered)

    def money(self, name: str) -> pl.Expr:
        """A money or quantity column as Decimal (null when absent or unusable)."""
        if name not in self.schema:
            return pl.lit(None, dtype=MONEY)
        return self._shared.share(
            f"money_{name}", lambda: parse_money(pl.col(name), self.schema[name], money_limit(name))
        )

    def string(self, name: str) -> pl.Expr:
        """A text column with placeholders as nulls (null when absent)."""
        if name not in self.schema:
            return pl.lit(None, dtype=pl.String)
        return self._shared.share(f"text_{name}", lambda: text(name))

    def when_time(self, name: str) -> pl.Expr:
        """A timestamp column in UTC (null when absent)."""
        if name not in self.schema:
            return pl.lit(None, dtype=pl.Datetime("us", "UTC"))
        return self._shared.share(f"datetime_{name}", lambda: parse_datetime(pl.col(name), self.schema[name]))

    def keep(self, name: str, expr: pl.Expr) -> pl.Expr:
        """Evaluate `expr` once per row as a shared column; later expressions read the column.

        The FOCUS columns reuse the same intermediate values many times over; inlined, each copy is
        planned and evaluated again (see `SharedColumns`). A name keeps one value.
        """
        key = f"keep_{name}"
        if key in self._shared:
            raise ValueError(f"{name!r} is already kept on this CUR frame")
        return self._shared.share(key, lambda: expr)

    def per_distinct(self, name: str, inputs: list[pl.Expr], transform: Callable[..., pl.Expr]) -> pl.Expr:
        """`transform(*inputs)` computed once per distinct input tuple, then looked up per row: the
        catalog's regexes and lookups run on thousands of values, not millions of rows. The
        distinct values are read in a narrow pass of their own (a few columns); the lookup is a
        streaming lookup on one composite key (`billing_pipeline.platform.lookup`), so row order is kept."""
        columns = [self.keep(f"{name}_in{i}", expr) for i, expr in enumerate(inputs)]
        key = pl.concat_str([c.cast(pl.String).fill_null("\x00") for c in columns], separator="\x1f")
        table = (
            self.frame.select(*columns)
            .unique()
            .collect(engine="streaming")
            .select(key.alias("key"), transform(*columns).alias("value"))
        )
        return self.keep(name, gather(key_index(key, table["key"]), table["value"]))

    def delivered_extras(self) -> list[pl.Expr]:
        """The delivery's own `x_` columns (lineage), passed through as they are."""
        return [pl.col(c) for c in self.schema if c.startswith("x_")]
