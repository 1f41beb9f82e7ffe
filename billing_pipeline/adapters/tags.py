"""Tags as delivered, in one shape for every provider: a list of {key, value} structs.

Keys keep their delivered spelling here (FOCUS `Tags` is the tags as the provider knows them);
folding and aliasing belong to the tag policy in `billing_pipeline.spine.allocation`.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.adapters.cells import NULL_LITERALS

TAG = pl.Struct({"key": pl.String, "value": pl.String})
TAG_LIST = pl.List(TAG)


def _drop_empty(tags: pl.Expr) -> pl.Expr:
    value = pl.element().struct.field("value")
    return tags.list.eval(pl.element().filter(value.is_not_null() & ~value.is_in(NULL_LITERALS)))


def tags_from_columns(columns: dict[str, str]) -> pl.Expr:
    """One tag per column (legacy CUR `resourceTags/user:team`, Athena `resource_tags_user_team`)."""
    if not columns:
        return pl.lit([], dtype=TAG_LIST)
    structs = [
        pl.struct(
            pl.lit(key, dtype=pl.String).alias("key"),
            pl.col(column).cast(pl.String).str.strip_chars().alias("value"),
        )
        for key, column in columns.items()
    ]
    return _drop_empty(pl.concat_list(structs))


def tags_from_map(column: str) -> pl.Expr:
    """Tags from a native map column (CUR 2.0 `resource_tags`)."""
    return _drop_empty(pl.col(column).map.entries().cast(TAG_LIST))


def _json_string(expr: pl.Expr) -> pl.Expr:
    """A JSON string literal, escaped by polars' own JSON encoder (quotes, backslashes, every control
    character): `{"v":"..."}` of a one-field struct, stripped back to the quoted string."""
    return pl.struct(expr.alias("v")).struct.json_encode().str.slice(len('{"v":')).str.strip_suffix("}")


def tags_json(tags: pl.Expr) -> pl.Expr:
    """FOCUS `Tags`: a flat JSON object string, `{}` when a row has no tags."""
    pairs = tags.list.eval(
        pl.concat_str(
            [
                _json_string(pl.element().struct.field("key")),
                pl.lit(":"),
                _json_string(pl.element().struct.field("value")),
            ]
        )
    )
    return pl.concat_str([pl.lit("{"), pairs.list.join(","), pl.lit("}")])
