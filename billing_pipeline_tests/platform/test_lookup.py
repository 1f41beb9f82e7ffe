"""`billing_pipeline.platform.lookup`: the streaming stand-in for `replace_strict` must answer exactly like a dict."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.platform.lookup import lookup

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
