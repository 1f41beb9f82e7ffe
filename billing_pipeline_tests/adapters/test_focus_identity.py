"""Row identity of exports without a row id (native FOCUS, Azure): identical rows inside one file are kept,
a file delivered twice is dropped as duplicates even with its rows in another order, and a file that shares
only some rows with another is kept. The identity is computed by streaming aggregates, not by windows over
the day (which held the whole day in memory: 12.5 GB at 10M rows)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.adapters.azure import AzureAdapter
from billing_pipeline.adapters.focus_native import FocusAdapter, with_file_identity
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import slice_url

from ..conftest import FOCUS_SAMPLE, SAMPLES, run_spine, write_config

FOCUS_DAY = dt.date(2024, 9, 25)
EA_ACTUAL = SAMPLES / "finops-toolkit_EA_ActualCost_Small.csv"


def _frame() -> pl.DataFrame:
    """Rows repeated inside files, a file that is another's rows in reverse order, a null file name."""
    base = [("a", 1), ("b", 2), ("a", 1), ("c", None), ("a", 1), ("b", 2)]
    rows = [(*row, "f1") for row in base]
    rows += [(*row, "f2") for row in reversed(base)]
    rows += [("a", 1, "f3"), ("d", 4, None), ("d", 4, None), ("a", 1, "f3")]
    return pl.DataFrame(rows, schema={"k": pl.String, "v": pl.Int64, "x_FileUri": pl.String}, orient="row")


@pytest.mark.parametrize("with_row_ids", [True, False])
def test_occurrence_and_file_content_match_an_independent_count(with_row_ids: bool) -> None:
    frame = _frame()
    hashes = frame.select(pl.struct("k", "v").hash(seed=0)).to_series().to_list()
    seen: Counter[tuple[object, ...]] = Counter()
    occurrence = []
    for (_, _, file), h in zip(frame.iter_rows(), hashes, strict=True):
        seen[(h, file)] += 1
        occurrence.append(seen[(h, file)])
    rows: Counter[object] = Counter()
    sums: dict[object, list[int]] = defaultdict(lambda: [0, 0])
    for (_, _, file), h in zip(frame.iter_rows(), hashes, strict=True):
        rows[file] += 1
        sums[file][0] += h >> 32
        sums[file][1] += h & 0xFFFFFFFF
    content = [
        {"rows": rows[file], "high": sums[file][0], "low": sums[file][1]} for file in frame["x_FileUri"].to_list()
    ]
    lazy = frame.with_row_index("x_RawRow").lazy() if with_row_ids else frame.lazy()
    got = with_file_identity(lazy, pl.struct("k", "v").hash(seed=0), pl.col("x_FileUri"), "occ", "content")
    got = got.collect(engine="streaming")

    assert got.columns == [*lazy.collect_schema(), "content", "occ"]
    assert got["occ"].to_list() == occurrence
    assert got["content"].to_list() == content
    assert got["occ"].to_list()[:6] == [1, 1, 2, 1, 3, 2]  # repeats inside f1 numbered in row order
    f1, f2 = got.filter(pl.col("x_FileUri") == "f1"), got.filter(pl.col("x_FileUri") == "f2")
    assert f1["content"][0] == f2["content"][0]  # the same rows in another order: the same content


def test_the_mappings_have_no_window_over_the_day() -> None:
    """A window (`.over(file)`) needs the whole frame at once: the mapping would not stream."""
    focus = pl.read_csv(FOCUS_SAMPLE, infer_schema=False).with_columns(pl.lit("f1").alias("x_FileUri"))
    azure = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy").with_columns(
        pl.lit("f1").alias("x_FileUri")
    )
    for adapter, raw in ((FocusAdapter(), focus), (AzureAdapter(), azure)):
        plan = adapter.identify(adapter.to_focus(raw.with_row_index("x_RawRow").lazy())).explain(optimized=False)
        assert ".over(" not in plan, type(adapter).__name__


def test_the_identity_is_joined_only_where_duplicates_are_decided() -> None:
    """The published slice's pass maps rows without the identity's joins over the day (they cost 2.3 of 14.5 s
    of that pass on a 1M-row FOCUS slice); `identify` adds them for the plans that decide duplicates."""
    focus = pl.read_csv(FOCUS_SAMPLE, infer_schema=False).with_columns(pl.lit("f1").alias("x_FileUri"))
    azure = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy").with_columns(
        pl.lit("f1").alias("x_FileUri")
    )
    for adapter, raw, identity in (
        (FocusAdapter(), focus, ["_focus_occurrence", "_focus_file"]),
        (AzureAdapter(), azure, ["_az_occurrence", "_az_file"]),
    ):
        mapped = adapter.to_focus(raw.with_row_index("x_RawRow").lazy())
        identified = adapter.identify(mapped)
        assert "JOIN" not in mapped.explain(optimized=False), type(adapter).__name__
        assert "JOIN" in identified.explain(optimized=False), type(adapter).__name__
        assert not set(identity) & set(mapped.collect_schema())
        assert set(adapter.dedup_key(identified.collect_schema())) <= set(identified.collect_schema())
        got = identified.collect(engine="streaming")
        assert got.height == raw.height and got["x_RawRow"].to_list() == list(range(raw.height))


def test_focus_repeats_kept_a_reordered_copy_dropped_a_partial_overlap_kept(tmp_path: Path) -> None:
    sample = pl.read_csv(FOCUS_SAMPLE, infer_schema=False)
    day = sample.filter(pl.col("ChargePeriodStart").str.starts_with(FOCUS_DAY.isoformat()))
    assert day.height >= 5
    original = pl.concat([day, day.head(2), day.head(1)])  # three copies of row 0, two of row 1: legitimate
    landing = tmp_path / "landing" / "focus"
    landing.mkdir(parents=True)
    original.write_csv(landing / "a.csv")
    original.reverse().write_csv(landing / "b.csv")  # the same file again, rows in another order
    original.head(3).write_csv(landing / "c.csv")  # shares three rows with a.csv, but is another file
    config = load_config(
        write_config(tmp_path, [{"name": "src", "provider": "focus", "url": str(landing)}], start_date="2024-09-01")
    )

    run = run_spine(config, FOCUS_DAY)

    (stats,) = run.normalized
    assert stats.raw_rows == 2 * original.height + 3
    assert stats.duplicate_rows == original.height
    assert stats.rows == original.height + 3
    published = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", FOCUS_DAY, "src"))
    expected = sum((Decimal(v) for v in [*original["BilledCost"], *original.head(3)["BilledCost"]]), Decimal(0))
    assert sum((Decimal(str(v)) for v in published["BilledCost"]), Decimal(0)) == expected
    files = Counter(uri.rsplit("/", 1)[-1] for uri in published["x_FileUri"])
    assert files in (Counter({"a.csv": original.height, "c.csv": 3}), Counter({"b.csv": original.height, "c.csv": 3}))


def test_focus_rows_that_differ_only_in_spelling_are_two_charges(tmp_path: Path) -> None:
    """Rows of one file that map to equal FOCUS values (`12.5` / `12.50`, `usage` / `Usage`) are charges
    delivered separately: each is kept. Its identity is the row as delivered, as for Azure, so the same file
    delivered again under another name still repeats every row and is dropped."""
    sample = pl.read_csv(FOCUS_SAMPLE, infer_schema=False)
    day = sample.filter(pl.col("ChargePeriodStart").str.starts_with(FOCUS_DAY.isoformat()))
    row = day.filter(pl.col("BilledCost").cast(pl.Float64) != 0).head(1)
    cost = row["BilledCost"].item()
    assert cost is not None and Decimal(cost) != 0
    respelled = row.with_columns(pl.lit(cost + "0" if "." in cost else cost + ".0").alias("BilledCost"))
    recased = row.with_columns(pl.col("ChargeCategory").str.to_lowercase())
    delivered = pl.concat([row, respelled, recased])
    assert delivered.unique().height == 3
    landing = tmp_path / "landing" / "focus"
    landing.mkdir(parents=True)
    delivered.write_csv(landing / "a.csv")
    delivered.write_csv(landing / "a-again.csv")
    config = load_config(
        write_config(tmp_path, [{"name": "src", "provider": "focus", "url": str(landing)}], start_date="2024-09-01")
    )

    (stats,) = run_spine(config, FOCUS_DAY).normalized

    assert (stats.raw_rows, stats.rows, stats.duplicate_rows) == (6, 3, 3)
    published = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", FOCUS_DAY, "src"))
    assert sum((Decimal(str(v)) for v in published["BilledCost"]), Decimal(0)) == 3 * Decimal(cost)
    assert published["x_FileUri"].n_unique() == 1
