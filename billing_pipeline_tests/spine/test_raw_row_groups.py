"""Raw slices of text-only (CSV) deliveries are written in smaller row groups than typed ones, so a
reader of ~100 text columns holds a quarter of the rows at once; the rows themselves are the same."""

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.storage import PARQUET_OPTIONS, Store, scratch_dir
from billing_pipeline.spine.raw import build_raw_slice
from billing_pipeline.spine.raw_read import TEXT_ROW_GROUP_ROWS
from billing_pipeline.tools.generator.__main__ import main as generate

DAY = dt.date(2026, 10, 1)
ROWS = 60_000  # more than two text row groups, less than one typed row group


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    for only in ("aws_cur", "aws_cur2"):
        generate(["--out", str(out), "--only", only, "--days", "1", "--rows-per-day", str(ROWS)])
    return out


def raw_row_groups(landing: Path, tmp_path: Path, provider: str, url: str) -> tuple[list[int], int]:
    source = SourceConfig(name=f"s_{provider}", provider=provider, url=str(landing / url))
    lake = tmp_path / "lake"
    with scratch_dir(prefix="rg-") as workdir:
        build_raw_slice(source, DAY, Store(), str(lake), workdir)
    path = slice_url(str(lake), "raw_line_items", DAY, source.name)
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)], pl.scan_parquet(path).select(
        pl.len()
    ).collect().item()


def test_legacy_cur_csv_slice_is_written_in_text_row_groups(landing: Path, tmp_path: Path) -> None:
    groups, rows = raw_row_groups(landing, tmp_path, "aws_cur", "aws_cur/cur/legacy-cur")
    assert rows >= ROWS  # the day's rows, plus the re-sent file's duplicates
    assert sum(groups) == rows
    assert max(groups) <= TEXT_ROW_GROUP_ROWS < PARQUET_OPTIONS["row_group_size"]
    assert len(groups) >= -(-rows // TEXT_ROW_GROUP_ROWS)


def test_cur2_parquet_slice_keeps_the_typed_row_groups(landing: Path, tmp_path: Path) -> None:
    groups, rows = raw_row_groups(landing, tmp_path, "aws_cur2", "aws_cur2/cur2-daily")
    assert sum(groups) == rows and rows >= ROWS
    assert max(groups) > TEXT_ROW_GROUP_ROWS
