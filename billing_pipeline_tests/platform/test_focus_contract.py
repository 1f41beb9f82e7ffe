"""The FOCUS contract a normalized slice must meet before it is published (`validate_focus_file`): pandera
checks the file's schema and one streaming aggregate checks the schema's row rules over every row. Held to
the verdict of pandera validating the whole frame with every check (schema and data), on a real slice (the
public FOCUS sample, normalized) broken one way at a time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.errors import SchemaError, SchemaErrors

from billing_pipeline.platform.focus import (
    ALLOWED_VALUES,
    PATTERNS,
    FocusContractError,
    focus_dataframe_schema,
    validate_focus_file,
)
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import NORMALIZED

from ..conftest import run_spine


@pytest.fixture
def focus_slice(sample_focus_config) -> pl.DataFrame:
    day = dt.date(2024, 9, 1)
    run_spine(sample_focus_config, day)
    frame = pl.read_parquet(slice_url(sample_focus_config.lake_url, NORMALIZED, day, "sample_focus"))
    assert frame.height > 10
    return frame


def _pandera_says_broken(frame: pl.DataFrame) -> bool:
    """The oracle: pandera with every check of the schema, over every row (an eager frame's default depth)."""
    try:
        focus_dataframe_schema().validate(frame, lazy=True)
    except (SchemaError, SchemaErrors):
        return True
    return False


def _we_say_broken(frame: pl.DataFrame, path: Path) -> bool:
    frame.write_parquet(path)
    try:
        assert validate_focus_file(str(path)) == frame.height
    except FocusContractError:
        return True
    return False


def _at_row(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    dtype = frame.schema[column]
    new = pl.lit(value).cast(dtype, strict=False) if value is not None else pl.lit(None, dtype=dtype)
    return frame.with_columns(pl.when(pl.int_range(pl.len()) == row).then(new).otherwise(pl.col(column)).alias(column))


VALUES = sorted({v for values in ALLOWED_VALUES.values() for v in values}) + ["Bogus", "usd", "EUR", "EURO", ""]


@st.composite
def breakages(draw: st.DrawFn, frame: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """One way a slice can be wrong (or not wrong at all): a null, a value, a type, a missing column."""
    column = draw(st.sampled_from(sorted(frame.columns)))
    row = draw(st.integers(0, frame.height - 1))
    kind = draw(st.sampled_from(["null", "value", "type", "drop"]))
    if kind == "null":  # half the time in a column that may hold none
        never_null = sorted(n for n, c in focus_dataframe_schema().columns.items() if not c.nullable and n in frame)
        column = draw(st.sampled_from(never_null)) if draw(st.booleans()) else column
        return f"null in {column} row {row}", _at_row(frame, column, row, None)
    if kind == "value":
        texts = [c for c in [*ALLOWED_VALUES, *PATTERNS] if frame.schema.get(c) == pl.String]
        column = draw(st.sampled_from(texts))
        value = draw(st.sampled_from(VALUES))
        return f"{column} row {row} = {value!r}", _at_row(frame, column, row, value)
    if kind == "type":  # a flat column delivered as text (a nested one, the tag list, cannot be cast to it)
        column = draw(st.sampled_from(sorted(c for c, dtype in frame.schema.items() if not dtype.is_nested())))
        return f"{column} as text", frame.with_columns(pl.col(column).cast(pl.String))
    return f"without {column}", frame.drop(column)


def test_the_clean_slice_meets_the_contract(focus_slice: pl.DataFrame, tmp_path: Path) -> None:
    assert not _pandera_says_broken(focus_slice)
    assert not _we_say_broken(focus_slice, tmp_path / "clean.parquet")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_contract_gives_pandera_s_verdict_on_every_breakage(
    focus_slice: pl.DataFrame, tmp_path: Path, data: st.DataObject
) -> None:
    what, broken = data.draw(breakages(focus_slice))
    assert _we_say_broken(broken, tmp_path / "broken.parquet") == _pandera_says_broken(broken), what


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("BilledCost", None, "BilledCost: null values: 1 rows"),
        ("ChargeCategory", "Refund", "ChargeCategory: values outside"),
        ("BillingCurrency", "usd", "BillingCurrency: values not matching"),
    ],
)
def test_a_broken_last_row_is_named(
    focus_slice: pl.DataFrame, tmp_path: Path, column: str, value: object, reason: str
) -> None:
    """Every row is checked (the last one too), and the error names the file, the rule and the rows."""
    path = tmp_path / "broken.parquet"
    _at_row(focus_slice, column, focus_slice.height - 1, value).write_parquet(path)
    with pytest.raises(FocusContractError, match=reason) as raised:
        validate_focus_file(str(path))
    assert str(path) in str(raised.value)


def test_pandera_judges_a_schema_once_and_every_file_s_rows_still(focus_slice: pl.DataFrame, tmp_path: Path) -> None:
    """Slices of one schema (a source's days in a backfill) ask pandera once; the row rules run on each."""
    from billing_pipeline.platform import focus

    focus._schema_verdict.cache_clear()
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    focus_slice.write_parquet(good)
    _at_row(focus_slice, "ChargeCategory", 0, "Refund").write_parquet(bad)
    assert validate_focus_file(str(good)) == focus_slice.height
    with pytest.raises(FocusContractError, match="ChargeCategory: values outside"):
        validate_focus_file(str(bad))
    assert (focus._schema_verdict.cache_info().misses, focus._schema_verdict.cache_info().hits) == (1, 1)
