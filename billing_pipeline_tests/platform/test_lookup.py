"""`billing_pipeline.platform.lookup`: the streaming stand-in for `replace_strict` must answer exactly like a dict."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.platform.lookup import lookup, per_distinct_value

_keys = st.text(alphabet="abcxyz-: ", max_size=4)


@settings(max_examples=80, deadline=None)
@given(
    table=st.dictionaries(_keys, st.one_of(st.none(), st.text(max_size=3)), max_size=8),
    column=st.lists(st.one_of(st.none(), _keys), max_size=30),
    default=st.sampled_from(["none", "literal", "expression"]),
)
def test_lookup_answers_like_a_dict(table: dict[str, str | None], column: list[str | None], default: str) -> None:
    frame = pl.DataFrame({"key": column}, schema={"key": pl.String})
    fallback = {"none": None, "literal": "?", "expression": pl.col("key")}[default]
    got = frame.lazy().select(lookup(pl.col("key"), table, default=fallback).alias("v")).collect(engine="streaming")

    def expected(key: str | None) -> str | None:
        if key is not None and key in table:
            return table[key]
        return {"none": None, "literal": "?", "expression": key}[default]

    assert got["v"].to_list() == [expected(k) for k in column]


def test_lookup_keeps_integer_values_and_their_dtype() -> None:
    frame = pl.DataFrame({"key": ["a", "b", None]})
    got = frame.select(lookup(pl.col("key"), {"a": 1}, default=0, return_dtype=pl.Int64).alias("v"))
    assert got.schema["v"] == pl.Int64 and got["v"].to_list() == [1, 0, 0]


def _parsed_tags(value: pl.Expr) -> pl.Expr:
    """A per-row transform of the kind `per_distinct_value` is for (regexes over delivered tag text)."""
    from billing_pipeline.adapters.focus_native import tags_from_json

    return tags_from_json(value)


_tag_texts = st.one_of(
    st.none(),
    st.sampled_from(['{"team":"a"}', '{"team":"b","env":"prod"}', "{}", "", "not json", '"k": "v"']),
    st.text(alphabet='{}":,ab ', max_size=12),
)


@settings(max_examples=60, deadline=None)
@given(column=st.lists(_tag_texts, max_size=40), over_limit=st.booleans())
def test_per_distinct_value_answers_like_the_transform_per_row(column: list[str | None], over_limit: bool) -> None:
    import billing_pipeline.platform.lookup as lookup_module

    frame = pl.LazyFrame({"tags": column}, schema={"tags": pl.String})
    limit = lookup_module.PER_DISTINCT_LIMIT
    lookup_module.PER_DISTINCT_LIMIT = -1 if over_limit else limit  # -1: the per-row fallback
    try:
        got = per_distinct_value(frame, pl.col("tags"), {"tags": _parsed_tags, "n": lambda v: v.str.len_chars()})
    finally:
        lookup_module.PER_DISTINCT_LIMIT = limit
    expected = frame.select(_parsed_tags(pl.col("tags")).alias("tags"), pl.col("tags").str.len_chars().alias("n"))
    assert frame.select(got["tags"].alias("tags"), got["n"].alias("n")).collect().equals(expected.collect())


def test_per_distinct_value_runs_the_transform_on_the_distinct_values_only() -> None:
    frame = pl.LazyFrame({"tags": ['{"team":"a"}', '{"team":"b"}', None] * 1_000})
    got = per_distinct_value(frame, pl.col("tags"), {"tags": _parsed_tags})["tags"]
    plan = frame.select(got).explain()
    # the row plan looks values up (an Enum position, a gather); the regexes ran on the 3 distinct values
    assert "extract" not in plan and "gather" in plan
    assert "extract" in frame.select(_parsed_tags(pl.col("tags"))).explain()
