"""Shared columns (`adapters/shared_columns.py`): a mapping's intermediate values computed once per row give
the very frame the inlined expressions give, and a smaller plan."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from billing_pipeline.adapters import adapter_for
from billing_pipeline.adapters.aws.frame import CurFrame
from billing_pipeline.adapters.shared_columns import PREFIX, SharedColumns

SAMPLES = Path(__file__).parent.parent / "fixtures" / "samples"
# (provider, public sample): CSV as delivered, every cell text, with the raw layer's row id
CASES = [
    ("aws_cur", "focus_converters_sample-anonymous-aws-export-dataset.csv"),
    ("aws_cur", "koku_aws_2022-07-01-alt-columns.csv"),
    ("azure", "finops-toolkit_EA_AmortizedCost_Small.csv"),
    ("azure", "koku_camel_azure_version_2.csv"),
    ("azure", "opencost_headersets__German.csv"),
    ("azure", "focus_converters_sample-anonymous-ea-export-dataset.csv"),
]


def _raw(sample: str) -> pl.LazyFrame:
    frame = pl.scan_csv(SAMPLES / sample, infer_schema=False, encoding="utf8-lossy")
    return frame.with_row_index("x_RawRow").with_columns(pl.lit(f"s3://landing/{sample}").alias("x_FileUri"))


def _inlined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shared value written into each expression that reads it, as before shared columns; the CUR
    mapping's kept values (`CurFrame.keep`, `keep_` keys) were columns before too, and stay columns."""
    share = SharedColumns.share
    monkeypatch.setattr(
        SharedColumns,
        "share",
        lambda self, key, build: share(self, key, build) if key.startswith("keep_") else build(),
    )


@pytest.mark.parametrize(("provider", "sample"), CASES)
def test_a_mapping_with_shared_columns_equals_the_inlined_mapping(
    provider: str, sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared_plan = adapter_for(provider).to_focus(_raw(sample))
    shared = shared_plan.collect()
    with monkeypatch.context() as inline:
        _inlined(inline)
        inlined_plan = adapter_for(provider).to_focus(_raw(sample))
        inlined = inlined_plan.collect()

    assert shared.height == pl.scan_csv(SAMPLES / sample, infer_schema=False).select(pl.len()).collect().item() > 0
    assert not [c for c in shared.columns if c.startswith(PREFIX)]
    assert_frame_equal(shared, inlined)
    assert shared["BilledCost"].null_count() < shared.height  # the mapping read the sample's amounts
    # each delivered field is read into a typed value once, not once per FOCUS column that uses it
    assert len(shared_plan.explain(optimized=False)) < len(inlined_plan.explain(optimized=False))


def test_a_shared_value_is_built_once_and_after_the_values_it_reads() -> None:
    shared = SharedColumns()
    builds: list[str] = []

    def build(key: str, expr: pl.Expr) -> pl.Expr:
        def built() -> pl.Expr:
            builds.append(key)
            return expr

        return shared.share(key, built)

    cleaned = build("cleaned", pl.col("cell").str.strip_chars())
    number = build("number", cleaned.cast(pl.Int64))
    doubled = build("doubled", number * 2)
    assert build("cleaned", pl.lit("ignored")).meta.eq(cleaned)
    assert builds == ["cleaned", "number", "doubled"]

    frame = shared.apply(pl.LazyFrame({"cell": [" 1", "2 ", None]}))
    out = frame.select(doubled.alias("out"), (number + doubled).alias("sum")).collect()
    assert out.to_dict(as_series=False) == {"out": [2, 4, None], "sum": [3, 6, None]}
    # three levels of dependency: three `with_columns`, one per level
    assert frame.explain(optimized=False).count("WITH_COLUMNS") == 3


def test_a_cur_frame_keeps_one_value_per_name() -> None:
    """`CurFrame.keep` names a value; a second value under the same name is refused, never silently dropped."""
    cur = CurFrame(pl.LazyFrame({"line_item_unblended_cost": ["1.5"]}, schema={"line_item_unblended_cost": pl.String}))
    kept = cur.keep("billed", cur.money("line_item_unblended_cost"))
    with pytest.raises(ValueError, match="'billed' is already kept"):
        cur.keep("billed", pl.lit(0))
    assert cur.frame.select(kept).collect().item() == Decimal("1.5")
