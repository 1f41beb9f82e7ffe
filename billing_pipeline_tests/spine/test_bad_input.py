"""Bad input: each case names source, file and reason, lands in the lake's quarantine, is counted,
and loses nothing; an incomplete delivery holds the day back instead of publishing it short."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.guard import DeliveryIncompleteError
from billing_pipeline.spine.raw import build_raw_slice

from ..conftest import run_spine, sample_as_cur2_frame, write_config, write_data_export

DAY = dt.date(2023, 11, 1)
SOURCE = "cur2"


@pytest.fixture
def sample() -> pl.DataFrame:
    return sample_as_cur2_frame()


def _config(tmp_path: Path) -> BillingConfig:
    return load_config(
        write_config(
            tmp_path,
            [{"name": SOURCE, "provider": "aws_cur2", "url": str(tmp_path / "landing" / "cur2-export")}],
            start_date="2023-11-01",
        )
    )


def _root(tmp_path: Path) -> Path:
    return tmp_path / "landing" / "cur2-export"


def _records(config: BillingConfig) -> pl.DataFrame:
    return pl.read_parquet(quarantine_url(config.lake_url, "records", DAY, SOURCE))


def _day_cost(frame: pl.DataFrame) -> Decimal:
    rows = frame.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == DAY.isoformat())
    return sum((Decimal(v) for v in rows["line_item_unblended_cost"]), Decimal(0))


def _normalized(config: BillingConfig) -> pl.DataFrame:
    return pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", DAY, SOURCE))


def _halves(sample: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    middle = sample.height // 2
    return sample.slice(0, middle), sample.slice(middle)


BAD_FILES = pytest.mark.parametrize(
    ("bad_name", "bad_bytes", "kind"),
    [
        ("part-2.snappy.parquet", None, "unreadable"),  # truncated Parquet (filled in below)
        ("part-2.csv.gz", b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 20, "unreadable"),  # corrupt gzip
        ("part-2.snappy.parquet", b"", "empty"),  # zero-byte file
    ],
    ids=["truncated-parquet", "corrupt-gzip", "empty-file"],
)


def _truncated(tmp_path: Path, frame: pl.DataFrame) -> bytes:
    whole = tmp_path / "whole.parquet"
    frame.write_parquet(whole)
    return whole.read_bytes()[: whole.stat().st_size // 2]


@BAD_FILES
def test_a_bad_file_makes_its_delivery_incomplete_and_the_previous_one_stays(
    tmp_path: Path, sample: pl.DataFrame, bad_name: str, bad_bytes: bytes | None, kind: str
) -> None:
    """Invariant 5: a newer delivery with a file that cannot be read to its end is incomplete; the
    previous complete delivery stays current, the bad file is quarantined byte for byte."""
    good, other = _halves(sample)
    bad_bytes = _truncated(tmp_path, other) if bad_bytes is None else bad_bytes
    write_data_export(_root(tmp_path), "exec-1", {"part-1.snappy.parquet": sample}, export_time="2023-11-20T00:00:00Z")
    config = _config(tmp_path)
    run_spine(config, DAY)
    write_data_export(
        _root(tmp_path),
        "exec-2",
        {"part-1.snappy.parquet": good, bad_name: bad_bytes},
        export_time="2023-11-21T00:00:00Z",
    )
    run = run_spine(config, DAY)

    assert run.raw[0].version == "exec-1" and run.raw[0].passed_over_versions == ["exec-2"]
    problems = run.raw[0].problems
    assert [p.kind for p in problems] == [kind]
    assert bad_name in problems[0].file_uri and "exec-2 is incomplete" in problems[0].reason
    assert SOURCE in problems[0].describe(SOURCE)
    records = _records(config)
    assert records.height == 1 and records["kind"].item() == kind and bad_name in records["file_uri"].item()
    copy = Path(records["quarantined_copy"].item())
    assert copy.read_bytes() == bad_bytes  # the bad file is kept, byte for byte
    assert (_root(tmp_path) / "data" / "BILLING_PERIOD=2023-11" / "exec-2" / bad_name).exists()  # landing untouched
    assert sum(Decimal(str(v)) for v in _normalized(config)["BilledCost"]) == _day_cost(sample)


@BAD_FILES
def test_a_bad_file_without_a_previous_delivery_holds_the_day_back_naming_it(
    tmp_path: Path, sample: pl.DataFrame, bad_name: str, bad_bytes: bytes | None, kind: str
) -> None:
    good, other = _halves(sample)
    bad_bytes = _truncated(tmp_path, other) if bad_bytes is None else bad_bytes
    write_data_export(_root(tmp_path), "exec-1", {"part-1.snappy.parquet": good, bad_name: bad_bytes})
    config = _config(tmp_path)
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match=rf"'cur2'.*{bad_name}.*unreadable"):
        build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)
    assert not Path(slice_url(config.lake_url, "raw_line_items", DAY, SOURCE)).exists()
    assert _records(config)["kind"].to_list() == [kind]


def test_a_manifest_naming_a_missing_file_holds_the_day_back(tmp_path: Path, sample: pl.DataFrame) -> None:
    write_data_export(
        _root(tmp_path),
        "exec-1",
        {"part-1.snappy.parquet": sample},
        extra_uris=[
            "s3://aws-origin-bucket/exports/cur2-export/data/BILLING_PERIOD=2023-11/exec-1/part-9.snappy.parquet"
        ],
    )
    config = _config(tmp_path)
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match=r"cur2.*part-9.*not delivered"):
        build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)
    assert not Path(slice_url(config.lake_url, "raw_line_items", DAY, SOURCE)).exists()
    assert _records(config)["kind"].to_list() == ["missing"]


def test_an_incomplete_restatement_keeps_the_previous_complete_version(tmp_path: Path, sample: pl.DataFrame) -> None:
    first, _ = _halves(sample)
    write_data_export(_root(tmp_path), "exec-1", {"part-1.snappy.parquet": first}, export_time="2023-11-20T00:00:00Z")
    write_data_export(
        _root(tmp_path),
        "exec-2",
        {"part-1.snappy.parquet": sample},
        export_time="2023-11-21T00:00:00Z",
        extra_uris=["s3://b/exports/cur2-export/data/BILLING_PERIOD=2023-11/exec-2/part-2.parquet"],
    )
    config = _config(tmp_path)
    run = run_spine(config, DAY)
    assert run.raw[0].version == "exec-1"
    assert run.raw[0].passed_over_versions == ["exec-2"]
    assert sum(Decimal(str(v)) for v in _normalized(config)["BilledCost"]) == _day_cost(first)


def test_a_file_outside_the_manifest_prefix_is_never_read(tmp_path: Path, sample: pl.DataFrame) -> None:
    secret = tmp_path / "landing" / "elsewhere.parquet"
    secret.parent.mkdir(parents=True, exist_ok=True)
    sample.write_parquet(secret)
    write_data_export(
        _root(tmp_path),
        "exec-1",
        {"part-1.snappy.parquet": sample},
        extra_uris=[
            "s3://aws-origin-bucket/exports/cur2-export/data/BILLING_PERIOD=2023-11/../../elsewhere.parquet",
            "s3://other-bucket/private/data.parquet",
        ],
    )
    config = _config(tmp_path)
    run = run_spine(config, DAY)
    assert [p.kind for p in run.raw[0].problems] == ["outside_prefix", "outside_prefix"]
    assert all("outside" in p.reason for p in run.raw[0].problems)
    assert sum(Decimal(str(v)) for v in _normalized(config)["BilledCost"]) == _day_cost(sample)
    assert _records(config).height == 2


def test_unparseable_costs_are_quarantined_row_by_row(tmp_path: Path, sample: pl.DataFrame) -> None:
    on_day = sample.with_row_index("i").filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == "2023-11-01")
    broken_ids = on_day["i"].head(3).to_list()
    broken = (
        sample.with_row_index("i")
        .with_columns(
            pl.when(pl.col("i").is_in(broken_ids))
            .then(pl.lit("12,5O"))
            .otherwise(pl.col("line_item_unblended_cost"))
            .alias("line_item_unblended_cost")
        )
        .drop("i")
    )
    write_data_export(_root(tmp_path), "exec-1", {"part-1.csv.gz": broken}, file_format="csv")
    config = _config(tmp_path)
    run = run_spine(config, DAY)
    normalized = run.normalized[0]
    assert normalized.quarantined_rows == 3
    assert normalized.raw_rows == normalized.rows + normalized.quarantined_rows + normalized.duplicate_rows
    assert list(normalized.reasons) == ["unparseable number 12,5O in line_item_unblended_cost"]
    rows = pl.read_parquet(quarantine_url(config.lake_url, "rows", DAY, SOURCE))
    assert rows.height == 3 and set(rows["line_item_unblended_cost"]) == {"12,5O"}
    assert set(rows["x_FileUri"]) == {str(_root(tmp_path) / "data/BILLING_PERIOD=2023-11/exec-1/part-1.csv.gz")}
    assert sum(Decimal(str(v)) for v in _normalized(config)["BilledCost"]) == _day_cost(
        sample.with_row_index("i").filter(~pl.col("i").is_in(broken_ids)).drop("i")
    )
    assert (run.reconciliation["conservation_delta"] == 0).all()


def test_unparseable_usage_dates_are_quarantined_once_per_delivery(tmp_path: Path, sample: pl.DataFrame) -> None:
    broken = (
        sample.with_row_index("i")
        .with_columns(
            pl.when(pl.col("i") < 4)
            .then(pl.lit("31/11/2023 25:00"))
            .otherwise(pl.col("line_item_usage_start_date"))
            .alias("line_item_usage_start_date")
        )
        .drop("i")
    )
    write_data_export(_root(tmp_path), "exec-1", {"part-1.csv.gz": broken}, file_format="csv")
    config = _config(tmp_path)
    run = run_spine(config, DAY)
    assert run.raw[0].bad_date_rows == 4
    bad = pl.read_parquet(quarantine_url(config.lake_url, "bad_dates", DAY, SOURCE))
    assert bad.height == 4 and set(bad["line_item_usage_start_date"]) == {"31/11/2023 25:00"}
    later = run_spine(config, dt.date(2023, 11, 2))
    assert later.raw[0].bad_date_rows == 0  # counted once, on the first day of the billing period


def test_an_empty_export_is_recorded_and_publishes_nothing(tmp_path: Path) -> None:
    write_data_export(_root(tmp_path), "exec-1", {})
    config = _config(tmp_path)
    run = run_spine(config, DAY)
    assert run.raw[0].rows == 0 and run.raw[0].version is None
    assert [p.kind for p in run.raw[0].problems] == ["empty"]
    assert "empty export" in _records(config)["reason"].item()
    assert not Path(slice_url(config.lake_url, "normalized_line_items", DAY, SOURCE)).exists()


def test_an_unreadable_manifest_holds_the_day_back(tmp_path: Path, sample: pl.DataFrame) -> None:
    write_data_export(_root(tmp_path), "exec-1", {"part-1.snappy.parquet": sample})
    manifest = next((_root(tmp_path) / "metadata").rglob("*-Manifest.json"))
    manifest.write_text('{"executionId": "exec-1", "dataFiles": [')
    config = _config(tmp_path)
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match="not readable JSON"):
        build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)


def test_a_file_with_a_sound_footer_but_corrupt_pages_is_quarantined(tmp_path: Path, sample: pl.DataFrame) -> None:
    """The delivery is read in one pass; when that pass fails past the footers, each file is read on
    its own so that the broken one is named and quarantined; its delivery is incomplete, so the
    previous complete delivery stays current."""
    good, other = _halves(sample)
    whole = tmp_path / "whole.parquet"
    other.write_parquet(whole, compression="zstd")
    garbled = bytearray(whole.read_bytes())
    for index in range(200, len(garbled) // 3):  # data pages only: the footer at the end stays intact
        garbled[index] ^= 0x5A
    assert len(pl.scan_parquet(whole).collect_schema()) == len(other.columns)
    write_data_export(_root(tmp_path), "exec-1", {"part-1.snappy.parquet": good}, export_time="2023-11-20T00:00:00Z")
    config = _config(tmp_path)
    run_spine(config, DAY)
    write_data_export(
        _root(tmp_path),
        "exec-2",
        {"part-1.snappy.parquet": good, "part-2.snappy.parquet": bytes(garbled)},
        export_time="2023-11-21T00:00:00Z",
    )
    run = run_spine(config, DAY)

    problems = run.raw[0].problems
    assert [p.kind for p in problems] == ["unreadable"]
    assert "part-2.snappy.parquet" in problems[0].file_uri
    assert problems[0].reason.startswith("unreadable export file: ComputeError: parquet")
    assert run.raw[0].version == "exec-1" and run.raw[0].files_read == 1
    copy = Path(_records(config)["quarantined_copy"].item())
    assert copy.read_bytes() == bytes(garbled)
    assert sum(Decimal(str(v)) for v in _normalized(config)["BilledCost"]) == _day_cost(good)
