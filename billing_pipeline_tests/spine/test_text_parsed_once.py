"""A text delivery (CSV, JSON lines) new to the lake is parsed once per raw build: the fingerprint pass parses
it to a local Parquet copy and the raw read reads that copy; fingerprints and slice are those of two separate
parses. A Parquet file is read as it is."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.fingerprint import compute_delivery_days, delivery_cache_url
from billing_pipeline.spine.raw import build_raw_slice, build_raw_slice_if_changed, list_deliveries
from billing_pipeline.tools.generator.__main__ import main as generate

DAYS = (dt.date(2026, 10, 1), dt.date(2026, 10, 2))


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("landing")
    generate(["--out", str(out), "--only", "aws_cur", "--days", "2", "--rows-per-day", "300"])
    return out / "aws_cur" / "cur" / "legacy-cur"


@pytest.fixture(scope="module")
def gcp_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gcp-landing")
    generate(["--out", str(out), "--only", "gcp", "--days", "2", "--rows-per-day", "300"])
    return out / "gcp" / "billing-export"


def _scans_of(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """The names of the files polars' `name` (`scan_csv`, `scan_ndjson`) is asked to scan, in order."""
    scanned: list[str] = []
    original = getattr(pl, name)

    def scan(source: Path, **options: object) -> pl.LazyFrame:
        scanned.append(Path(source).name)
        return original(source, **options)

    monkeypatch.setattr(pl, name, scan)
    return scanned


@pytest.fixture
def json_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return _scans_of(monkeypatch, "scan_ndjson")


@pytest.fixture
def csv_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return _scans_of(monkeypatch, "scan_csv")


def _slice(lake: Path, day: dt.date, source: str) -> pl.DataFrame:
    return pl.read_parquet(slice_url(str(lake), "raw_line_items", day, source)).drop("x_IngestedAt")


def test_a_new_csv_delivery_is_parsed_once_for_fingerprints_and_slice(
    landing: Path, tmp_path: Path, csv_parses: list[str]
) -> None:
    source = SourceConfig(name="legacy", provider="aws_cur", url=str(landing))
    store = Store()
    delivery = list_deliveries(source, DAYS[0], store)[0]
    csv_files = [Path(f).name for f in delivery.files]
    assert csv_files and all(".csv" in name for name in csv_files)
    with scratch_dir() as workdir:
        separate = compute_delivery_days(store, source, delivery)  # a parse of its own, no copy kept
        for day in DAYS:
            build_raw_slice(source, day, store, str(tmp_path / "full"), workdir)  # parses the CSV again
        csv_parses.clear()
        build_raw_slice_if_changed(source, DAYS[0], store, str(tmp_path / "lake"), workdir)
        assert sorted(csv_parses) == sorted(csv_files)  # once each, not once for each pass
        assert not list(workdir.glob("parsed-*"))  # the local copies do not outlive the build
        csv_parses.clear()
        build_raw_slice_if_changed(source, DAYS[1], store, str(tmp_path / "lake"), workdir)  # fingerprints cached
        assert sorted(csv_parses) == sorted(csv_files)
    cached = store.read_bytes(delivery_cache_url(str(tmp_path / "lake"), source.name, delivery))
    assert all(f'"{day}": "{fingerprint}"' in cached.decode() for day, fingerprint in separate.days.items())
    for day in DAYS:
        assert (
            read_state(store, str(tmp_path / "lake"), source.name, day)["raw"]["fingerprint"]
            == separate.days[day.isoformat()]
        )
        assert _slice(tmp_path / "lake", day, source.name).equals(_slice(tmp_path / "full", day, source.name))


def test_a_new_json_delivery_is_parsed_once_and_its_parquet_files_are_not_copied(
    gcp_landing: Path, tmp_path: Path, json_parses: list[str]
) -> None:
    source = SourceConfig(name="gcp", provider="gcp", url=str(gcp_landing))
    store = Store()
    day = DAYS[0]
    delivery = list_deliveries(source, day, store)[0]
    names = [Path(f).name for f in delivery.files]
    json_files = [n for n in names if ".json" in n]
    assert json_files and any(n.endswith(".parquet") for n in names)  # a mixed delivery
    with scratch_dir() as workdir:
        separate = compute_delivery_days(store, source, delivery)  # a parse of its own, no copy kept
        build_raw_slice(source, day, store, str(tmp_path / "full"), workdir)  # parses the JSON again
        json_parses.clear()
        build_raw_slice_if_changed(source, day, store, str(tmp_path / "lake"), workdir)
        assert sorted(json_parses) == sorted(json_files)  # once each, not once for each pass
        assert not list(workdir.glob("parsed-*"))
    state = read_state(store, str(tmp_path / "lake"), source.name, day)
    assert state["raw"]["fingerprint"] == separate.days[day.isoformat()]
    assert _slice(tmp_path / "lake", day, source.name).equals(_slice(tmp_path / "full", day, source.name))


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Per delivered file, how many rows the adapters' readers produced over every execution of their plans (a
    frame read by two sinks counts its rows twice). The count rides on a filter that keeps every row, which no
    optimisation drops."""
    from billing_pipeline.adapters import adapter_for

    counted: dict[str, int] = {}
    for provider in ("gcp", "aws_cur"):
        cls = type(adapter_for(provider))

        def read(self: object, local_file: Path, file_format: str, _original=cls.read) -> pl.LazyFrame:
            def count(batch: pl.Series, name: str = Path(local_file).name) -> pl.Series:
                counted[name] = counted.get(name, 0) + batch.len()
                return pl.Series(batch.name, [True] * batch.len(), dtype=pl.Boolean)

            return _original(self, local_file, file_format).filter(
                pl.first().map_batches(count, return_dtype=pl.Boolean)
            )

        monkeypatch.setattr(cls, "read", read)
    yield counted


def _rows(file: str) -> int:
    """Rows of one delivered text file, read on its own."""
    return pl.read_ndjson(file).height if ".json" in file else pl.read_csv(file, infer_schema=False).height


def test_the_first_day_of_a_period_parses_each_text_file_once_without_fingerprints(
    gcp_landing: Path, landing: Path, tmp_path: Path, rows_read: dict[str, int]
) -> None:
    """The first day reads each file for its rows and for its undated rows (and a first read observes its
    schema): without the fingerprint pass's copies, the raw read parses each text file once, to a copy of
    its own, and removes it; the slice is the one a build with the fingerprint pass publishes."""
    store = Store()
    for source in (
        SourceConfig(name="gcp", provider="gcp", url=str(gcp_landing)),
        SourceConfig(name="legacy", provider="aws_cur", url=str(landing)),
    ):
        delivery = list_deliveries(source, DAYS[0], store)[0]
        text_files = [f for f in delivery.files if not f.endswith(".parquet")]
        assert DAYS[0].day == 1 and text_files
        with scratch_dir() as workdir:
            rows_read.clear()
            build_raw_slice(source, DAYS[0], store, str(tmp_path / "direct"), workdir)
            parsed = {Path(f).name: rows_read.get(Path(f).name) for f in text_files}
            assert parsed == {Path(f).name: _rows(f) for f in text_files}, source.name  # once, not once a sink
            assert not list(workdir.glob("parsed-*"))
        with scratch_dir() as workdir:
            build_raw_slice_if_changed(source, DAYS[0], store, str(tmp_path / "job"), workdir)
        assert _slice(tmp_path / "direct", DAYS[0], source.name).equals(_slice(tmp_path / "job", DAYS[0], source.name))
