"""The raw read of a day reads only the files that hold rows of it (GCP appends: every file from the
period on is the period's delivery), with the same slice, fingerprints, quarantine and guard as a read
of every file."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.adapters.gcp import GcpAdapter, read_gcp_file
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.fingerprint import SCHEME, delivery_day_fingerprints
from billing_pipeline.spine.guard import DeliveryIncompleteError
from billing_pipeline.spine.raw import build_raw_slice, build_raw_slice_if_changed, list_deliveries
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import write_config

DAYS = [dt.date(2025, 11, 2), dt.date(2025, 11, 1), dt.date(2025, 11, 3), dt.date(2025, 12, 2), dt.date(2025, 12, 3)]


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two months of generated GCP exports in one export folder (late rows land in later files)."""
    root = tmp_path_factory.mktemp("gcp-months")
    merged = root / "landing"
    for month, days in (("2025-11", 4), ("2025-12", 3)):
        generate_landing_zone(root / month, month=month, days=days, rows_per_day=30, providers=["gcp"])
        shutil.copytree(root / month / "gcp" / "billing-export", merged, dirs_exist_ok=True)
    return merged


def _config(folder: Path, landing: Path) -> BillingConfig:
    folder.mkdir(parents=True, exist_ok=True)
    return load_config(
        write_config(folder, [{"name": "gcp", "provider": "gcp", "url": str(landing)}], start_date="2025-01-01")
    )


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files the GCP adapter opens, in order."""
    opened: list[str] = []
    original = GcpAdapter.read

    def read(self: GcpAdapter, local_file: Path, file_format: str) -> pl.LazyFrame:
        opened.append(Path(local_file).name)
        return original(self, local_file, file_format)

    monkeypatch.setattr(GcpAdapter, "read", read)
    yield opened


def _slice(config: BillingConfig, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(slice_url(config.lake_url, "raw_line_items", day, "gcp")).drop("x_IngestedAt")


def _files_holding(landing: Path, day: dt.date) -> set[str]:
    """Independently: the export files with a row whose usage starts on the day."""
    out = set()
    for path in landing.rglob("*"):
        if path.is_file() and path.name.endswith((".json.gz", ".json", ".parquet")):
            frame = read_gcp_file(path).select(pl.col("usage_start_time").dt.date()).collect()
            if (frame["usage_start_time"] == day).any():
                out.add(path.name)
    return out


def test_each_day_reads_only_its_files_and_publishes_what_a_read_of_every_file_does(
    tmp_path: Path, landing: Path, reads: list[str]
) -> None:
    indexed, full = _config(tmp_path / "indexed", landing), _config(tmp_path / "full", landing)
    store, source = Store(), indexed.sources[0]
    seen: set[str] = set()
    with scratch_dir() as workdir:
        for day in DAYS:
            build_raw_slice(full.sources[0], day, store, full.lake_url, workdir)  # every file of the delivery
            delivery = list_deliveries(source, day, store)[0]
            delivery_day_fingerprints(store, source, delivery, indexed.lake_url)  # the index, cached
            reads.clear()
            result = build_raw_slice_if_changed(source, day, store, indexed.lake_url, workdir)
            if delivery.version in seen:  # a delivery's first read observes every file's schema (drift)
                holding = _files_holding(landing, day)
                assert holding and set(reads) - holding <= {Path(delivery.files[0]).name}  # drift names it
                assert len(reads) < len(delivery.files) / 2
            seen.add(delivery.version)
            assert result.files_read == len(delivery.files)  # accounted for: the SLI reads files_read / listed
            assert result.rows > 0 and _slice(indexed, day).equals(_slice(full, day))
            state = read_state(store, indexed.lake_url, "gcp", day)["raw"]
            assert state["files_read"] == state["files_listed"] == len(delivery.files)


def _independent_fingerprints(landing: Path, period: str, files: tuple[str, ...]) -> dict[str, str]:
    """The per-day fingerprints as one pass over the whole delivery would compute them (module doc of
    `spine/fingerprint.py`): per usage day, row count and two sums of 32-bit halves of the row hashes."""
    frames = [read_gcp_file(Path(f)) for f in files]
    schema = frames[0].collect_schema()
    columns = sorted(schema)
    first = dt.date.fromisoformat(f"{period}-01")
    rows = pl.concat(frames).select(
        pl.col("usage_start_time").dt.date().fill_null(first).alias("day"),
        pl.struct(columns).hash(seed=0).alias("h"),
    )
    sums = rows.group_by("day").agg(
        pl.len(), (pl.col("h") // 2**32).sum().alias("hi"), (pl.col("h") % 2**32).sum().alias("lo")
    )
    out = {}
    for day, count, high, low in sums.collect().iter_rows():
        text = f"{SCHEME}|{count}|{high}|{low}|{','.join(columns)}"
        out[day.isoformat()] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return out


def test_a_file_is_read_for_its_days_once_and_fingerprints_stay_those_of_the_whole_delivery(
    tmp_path: Path, landing: Path, reads: list[str]
) -> None:
    config = _config(tmp_path, landing)
    store, source = Store(), config.sources[0]
    november = list_deliveries(source, dt.date(2025, 11, 1), store)[0]
    days = delivery_day_fingerprints(store, source, november, config.lake_url)
    assert days.days == _independent_fingerprints(landing, "2025-11", november.files)
    assert sorted(reads) == sorted(Path(f).name for f in november.files)
    reads.clear()
    december = list_deliveries(source, dt.date(2025, 12, 1), store)[0]  # its files are November's later ones
    assert set(december.files) < set(november.files)
    assert delivery_day_fingerprints(store, source, december, config.lake_url).days == _independent_fingerprints(
        landing, "2025-12", december.files
    )
    assert reads == []  # every file's days were cached by November's pass
    late = landing / "export_date=2025-12-20" / "late.parquet"
    late.parent.mkdir()
    pl.read_parquet(next(landing.rglob("*.parquet"))).head(3).with_columns(
        pl.col("export_time") + dt.timedelta(days=30)
    ).write_parquet(late)
    try:
        appended = list_deliveries(source, dt.date(2025, 12, 1), store)[0]  # a new append, a new delivery
        assert appended.version != december.version
        assert delivery_day_fingerprints(store, source, appended, config.lake_url).days == _independent_fingerprints(
            landing, "2025-12", appended.files
        )
        assert reads == ["late.parquet"]
    finally:
        shutil.rmtree(late.parent)


def test_a_file_that_cannot_be_read_holds_back_every_day_it_could_affect(
    tmp_path: Path, landing: Path, reads: list[str]
) -> None:
    copy = tmp_path / "landing"
    shutil.copytree(landing, copy)
    broken = copy / "export_date=2025-11-02" / "broken.json.gz"
    broken.write_bytes(b"\x1f\x8b not gzip at all")  # no day index can be computed for it
    config = _config(tmp_path, copy)
    store, source = Store(), config.sources[0]
    with scratch_dir() as workdir:
        for day in (dt.date(2025, 11, 2), dt.date(2025, 11, 4)):
            with pytest.raises(DeliveryIncompleteError, match="broken.json.gz"):
                build_raw_slice_if_changed(source, day, store, config.lake_url, workdir)
            held = read_state(store, config.lake_url, "gcp", day)["held_back"]
            assert [p["file_uri"] for p in held["problems"]] == [str(broken)]
            assert not Path(slice_url(config.lake_url, "raw_line_items", day, "gcp")).exists()
