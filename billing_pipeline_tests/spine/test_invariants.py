"""DESIGN.md invariants 1-3 on hand-built deliveries: exact conservation (property-based), no double
counting across versions, duplicate files and rows, and idempotent, atomic partition writes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine import normalize

from ..conftest import legacy_cur_landing, run_spine, sample_as_cur2_frame, write_config, write_data_export

DAY = dt.date(2023, 11, 1)


def _cur2_config(folder: Path) -> BillingConfig:
    return load_config(
        write_config(
            folder,
            [{"name": "cur2", "provider": "aws_cur2", "url": str(folder / "landing" / "cur2-export")}],
            start_date="2023-11-01",
        )
    )


def _day_rows(frame: pl.DataFrame, day: dt.date = DAY) -> pl.DataFrame:
    return frame.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == day.isoformat())


def _total(frame: pl.DataFrame, column: str = "line_item_unblended_cost") -> Decimal:
    return sum((Decimal(str(v)) for v in frame[column] if v not in (None, "")), Decimal(0))


def _normalized(config: BillingConfig, source: str = "cur2", day: dt.date = DAY) -> pl.DataFrame:
    return pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, source))


# ---- invariant 1: conservation, property-based --------------------------------------------------

_money = st.decimals(
    min_value=Decimal("-1000"), max_value=Decimal("100000"), places=10, allow_nan=False, allow_infinity=False
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    costs=st.lists(
        st.tuples(_money, st.sampled_from(["111", "222"]), st.sampled_from(["USD", "EUR"])), min_size=1, max_size=40
    ),
    duplicated=st.sets(st.integers(min_value=0, max_value=39), max_size=5),
    broken=st.sets(st.integers(min_value=0, max_value=39), max_size=5),
)
def test_conservation_holds_for_any_mix_of_rows(tmp_path_factory, costs, duplicated, broken) -> None:
    folder = tmp_path_factory.mktemp("conservation")
    rows = [
        {
            "identity_line_item_id": f"line-{i}",
            "identity_time_interval": "2023-11-01T00:00:00Z/2023-11-02T00:00:00Z",
            "bill_payer_account_id": account,
            "line_item_currency_code": currency,
            "line_item_line_item_type": "Usage",
            "line_item_usage_start_date": "2023-11-01T00:00:00Z",
            "line_item_usage_end_date": "2023-11-02T00:00:00Z",
            "bill_billing_period_start_date": "2023-11-01T00:00:00Z",
            "bill_billing_period_end_date": "2023-12-01T00:00:00Z",
            "line_item_unblended_cost": "n/a" if i in broken else str(cost),
        }
        for i, (cost, account, currency) in enumerate(costs)
    ]
    copies = [rows[i] for i in sorted(duplicated) if i < len(rows)]
    frame = pl.DataFrame(rows + copies)
    write_data_export(folder / "landing" / "cur2-export", "exec-1", {"part-1.csv.gz": frame}, file_format="csv")
    config = _cur2_config(folder)
    run = run_spine(config, DAY)

    # expectation, computed independently: first copy of each good line counts, per account/currency
    expected: dict[tuple[str, str], Decimal] = {}
    seen: set[str] = set()
    for row in rows + copies:
        if row["line_item_unblended_cost"] == "n/a" or row["identity_line_item_id"] in seen:
            continue
        seen.add(row["identity_line_item_id"])
        key = (row["bill_payer_account_id"], row["line_item_currency_code"])
        expected[key] = expected.get(key, Decimal(0)) + Decimal(row["line_item_unblended_cost"])
    normalized = _normalized(config)
    actual: dict[tuple[str, str], Decimal] = {}
    for account, currency, cost in normalized.select("BillingAccountId", "BillingCurrency", "BilledCost").iter_rows():
        actual[(account, currency)] = actual.get((account, currency), Decimal(0)) + cost
    assert actual == expected

    stats = run.normalized[0]
    n_broken = len([i for i in broken if i < len(rows)])
    n_dup_good = len([c for c in copies if c["line_item_unblended_cost"] != "n/a"])
    assert stats.raw_rows == len(rows) + len(copies)
    assert stats.quarantined_rows == n_broken + (len(copies) - n_dup_good)
    assert stats.duplicate_rows == n_dup_good
    assert stats.raw_rows == stats.rows + stats.quarantined_rows + stats.duplicate_rows
    assert (run.reconciliation["conservation_delta"] == 0).all()


# ---- invariant 2: no double counting ------------------------------------------------------------


def test_only_the_latest_complete_cur2_execution_counts(tmp_path: Path) -> None:
    sample = sample_as_cur2_frame()
    restated = sample.with_columns(
        (pl.col("line_item_unblended_cost").cast(pl.Float64) * 2).cast(pl.String).alias("line_item_unblended_cost")
    )
    root = tmp_path / "landing" / "cur2-export"
    write_data_export(root, "exec-1", {"part-1.csv.gz": sample}, export_time="2023-11-10T00:00:00Z", file_format="csv")
    write_data_export(
        root, "exec-3", {"part-1.csv.gz": restated}, export_time="2023-11-12T00:00:00Z", file_format="csv"
    )
    write_data_export(root, "exec-2", {"part-1.csv.gz": sample}, export_time="2023-11-11T00:00:00Z", file_format="csv")
    config = _cur2_config(tmp_path)
    run = run_spine(config, DAY)
    assert run.raw[0].version == "exec-3"
    assert _total(_normalized(config), "BilledCost") == _total(_day_rows(restated))
    assert run.normalized[0].duplicate_rows == 0


def test_legacy_cur_reads_only_the_assembly_the_period_manifest_names(tmp_path: Path) -> None:
    report = legacy_cur_landing(tmp_path / "landing", assembly="old")
    legacy_cur_landing(tmp_path / "landing", assembly="new")  # overwrites the period manifest, like AWS
    old_manifest = report / "20231101-20231201" / "old" / "sample-Manifest.json"
    os.utime(old_manifest, (time.time() - 3600, time.time() - 3600))
    config = load_config(
        write_config(tmp_path, [{"name": "cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01")
    )
    run = run_spine(config, DAY)
    assert run.raw[0].version == "new"
    assert set(_normalized(config, "cur")["x_FileUri"].str.contains("/new/")) == {True}
    assert run.normalized[0].duplicate_rows == 0


@pytest.mark.parametrize("in_memory", [True, False], ids=["candidates-in-memory", "candidates-streamed"])
def test_a_file_delivered_twice_is_counted_once_and_its_copies_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: bool
) -> None:
    if not in_memory:  # a delivery sent twice at scale: the repeated rows are not collected into memory
        monkeypatch.setattr(normalize, "CANDIDATES_IN_MEMORY", 0)
    sample = sample_as_cur2_frame()
    root = tmp_path / "landing" / "cur2-export"
    write_data_export(root, "exec-1", {"part-1.snappy.parquet": sample, "part-1-copy.snappy.parquet": sample})
    config = _cur2_config(tmp_path)
    run = run_spine(config, DAY)
    day_rows = _day_rows(sample)
    assert run.normalized[0].duplicate_rows == day_rows.height
    assert _total(_normalized(config), "BilledCost") == _total(day_rows)
    duplicates = pl.read_parquet(quarantine_url(config.lake_url, "duplicates", DAY, "cur2"))
    assert duplicates.height == day_rows.height
    assert set(duplicates["x_FileUri"].str.contains("part-1-copy")) == {True}
    row = run.reconciliation.row(0, named=True)
    assert row["duplicate_rows"] == day_rows.height
    assert row["conservation_delta"] == 0


# ---- invariant 3: idempotence and atomic writes -------------------------------------------------


def test_rematerializing_with_unchanged_inputs_gives_the_same_rows(tmp_path: Path) -> None:
    write_data_export(tmp_path / "landing" / "cur2-export", "exec-1", {"part-1.snappy.parquet": sample_as_cur2_frame()})
    config = _cur2_config(tmp_path)
    tables = ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")
    run_spine(config, DAY)
    first = {t: pl.read_parquet(slice_url(config.lake_url, t, DAY, "cur2")) for t in tables}
    run_spine(config, DAY)
    for table in tables:
        again = pl.read_parquet(slice_url(config.lake_url, table, DAY, "cur2"))
        drop = [c for c in ("x_IngestedAt",) if c in again.columns]  # when it ran, by definition
        order = [c for c in ("x_RawRow", "BillingAccountId", "BillingCurrency") if c in again.columns][:1]
        # the same rows; their order inside a Parquet file carries no meaning
        assert again.drop(drop).sort(order).equals(first[table].drop(drop).sort(order)), table
    files = sorted(
        p.name
        for p in Path(config.lake_url).rglob("*")
        if p.is_file() and "quarantine" not in str(p) and "_state" not in p.parts
    )
    assert all(name in ("part-0.parquet", "lake.duckdb", "lake.duckdb.lock") for name in files), files


def test_a_failed_write_leaves_the_previous_slice_intact(tmp_path: Path, monkeypatch) -> None:
    target = str(tmp_path / "lake" / "t" / "date=2023-11-01" / "source=s" / "part-0.parquet")
    store = Store()
    with scratch_dir() as workdir:
        store.write_parquet(pl.DataFrame({"a": [1, 2, 3]}), target, workdir)
        failing = pl.LazyFrame({"a": ["1", "x"]}).select(pl.col("a").cast(pl.Int64, strict=True))
        with pytest.raises(Exception):  # noqa: B017 - any failure mid-write
            store.write_parquet(failing, target, workdir)
    assert pl.read_parquet(target)["a"].to_list() == [1, 2, 3]
    assert [p.name for p in Path(target).parent.iterdir()] == ["part-0.parquet"]


_KILLED_WRITER = """
import sys, polars as pl
from pathlib import Path
from billing_pipeline.platform.storage import Store
frame = pl.LazyFrame({"i": range(60_000_000)}).with_columns(pl.col("i").cast(pl.String).alias("s"))
Store().write_parquet(frame, sys.argv[1], Path(sys.argv[2]))
"""


def test_a_run_killed_mid_write_leaves_the_previous_slice_intact(tmp_path: Path) -> None:
    target = tmp_path / "lake" / "t" / "date=2023-11-01" / "source=s" / "part-0.parquet"
    with scratch_dir() as workdir:
        Store().write_parquet(pl.DataFrame({"a": [7]}), str(target), workdir)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target), str(scratch)])
    deadline = time.monotonic() + 60
    while not list(scratch.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(scratch.glob(".tmp-*")), "the writer never started writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert pl.read_parquet(target)["a"].to_list() == [7]
    assert not [p for p in target.parent.iterdir() if p.suffix == ".parquet" and p.name != "part-0.parquet"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    wanted=st.sets(st.integers(min_value=0, max_value=49), min_size=1, max_size=12),
    block=st.integers(min_value=1, max_value=20),
)
def test_rows_read_by_blocks_are_exactly_the_wanted_rows(tmp_path_factory, monkeypatch, wanted, block) -> None:
    """Repeated rows are re-read block by block (slices of the raw file): none lost, none extra."""
    monkeypatch.setattr(normalize, "ROW_GROUP_ROWS", block)
    path = tmp_path_factory.mktemp("blocks") / "raw.parquet"
    pl.DataFrame({"cost": [f"{i}.5" for i in range(50)]}).write_parquet(path, row_group_size=7)
    raw = pl.scan_parquet(path).with_row_index("x_RawRow")
    ids = pl.Series("x_RawRow", sorted(wanted), dtype=pl.UInt32)
    got = normalize._rows_in_blocks(raw, ids).collect()
    assert sorted(got["x_RawRow"].to_list()) == sorted(wanted)
    assert sorted(got["cost"].to_list()) == sorted(f"{i}.5" for i in wanted)


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 3)), min_size=1, max_size=60),
    buckets=st.integers(1, 7),
    rows_per_file=st.integers(1, 20),
)
def test_keys_compared_bucket_by_bucket_find_the_rows_compared_at_once(
    tmp_path_factory: pytest.TempPathFactory, keys: list[tuple[str | None, int]], buckets: int, rows_per_file: int
) -> None:
    """More duplicate candidates than memory should hold are compared a bucket of the key's hash at a time
    (a bucket written as several files of `rows_per_file` rows): the rows that repeat an earlier row's key
    are the same as when every key is compared at once."""
    frame = pl.DataFrame(
        {"x_RawRow": list(range(len(keys)))[::-1], "k": [k for k, _ in keys][::-1], "n": [n for _, n in keys][::-1]},
        schema={"x_RawRow": pl.UInt32, "k": pl.String, "n": pl.Int64},
    )
    at_once = normalize._not_first_distinct(frame, ["k", "n"])
    expected = [i for i, key in enumerate(keys) if key in keys[:i]]  # a second, plain computation
    assert at_once.to_list() == expected
    folder = tmp_path_factory.mktemp("b")
    bucketed = normalize._first_distinct_by_bucket(frame.lazy(), ["k", "n"], buckets, folder, rows_per_file)
    assert bucketed.to_list() == expected
