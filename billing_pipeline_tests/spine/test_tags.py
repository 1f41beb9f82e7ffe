"""FOCUS `Tags` is a JSON object string: any delivered key or value must round-trip through a JSON parser."""

from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.adapters.tags import TAG_LIST, tags_json


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4), min_size=1, max_size=5))
def test_tags_json_parses_back_to_the_delivered_pairs(rows: list[dict[str, str]]) -> None:
    frame = pl.DataFrame(
        {"tags": [[{"key": k, "value": v} for k, v in row.items()] for row in rows]}, schema={"tags": TAG_LIST}
    )
    encoded = frame.select(tags_json(pl.col("tags"))).to_series().to_list()
    assert [json.loads(text) for text in encoded] == rows
