"""The raw layer lists a source's landing zone once per (day, source) build: the delivery whose
fingerprint decides "unchanged, reuse" is the delivery the slice is then built from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_pipeline.adapters import adapter_for
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.fingerprint import compute_delivery_days
from billing_pipeline.spine.layer_state import is_reused
from billing_pipeline.spine.raw import build_raw_slice, build_raw_slice_if_changed, list_deliveries
from billing_pipeline.spine.raw_publish import RawSlice

from ..conftest import write_config, write_data_export
from ..ops_fixtures import cur2_month_frame

PERIOD = "2023-11"
DAY = dt.date(2023, 11, 7)


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The periods the CUR 2.0 adapter was asked to list, one entry per listing of a landing zone."""
    calls: list[str] = []
    adapter_class = type(adapter_for("aws_cur2"))
    discover = adapter_class.discover

    def counting_discover(self, store, source, url, period, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(period)
        return discover(self, store, source, url, period, *args, **kwargs)

    monkeypatch.setattr(adapter_class, "discover", counting_discover)
    yield calls


def _config(tmp_path: Path) -> BillingConfig:
    sources = [{"name": "alpha", "provider": "aws_cur2", "url": str(tmp_path / "landing" / "alpha")}]
    return load_config(write_config(tmp_path, sources, start_date="2023-10-01"))


def _deliver(config: BillingConfig, execution_id: str, export_time: str, files: dict[str, object]) -> Path:
    return write_data_export(Path(config.sources[0].url), execution_id, files, period=PERIOD, export_time=export_time)


def _build(config: BillingConfig) -> RawSlice:
    with scratch_dir() as workdir:
        return build_raw_slice_if_changed(config.sources[0], DAY, Store(), config.lake_url, workdir)


def test_a_build_a_reuse_and_a_confirmation_each_list_the_landing_zone_once(
    tmp_path: Path, listings: list[str]
) -> None:
    config = _config(tmp_path)
    month = cur2_month_frame(PERIOD)
    _deliver(config, "exec-1", "2023-11-20T00:00:00Z", {"part-0.parquet": month})

    built = _build(config)
    assert not is_reused(built) and built.rows > 0 and listings == [PERIOD]

    reused = _build(config)  # same delivery: decided from its fingerprint, nothing re-read
    assert is_reused(reused) and listings == [PERIOD] * 2

    halves = {f"part-{i}.parquet": month.gather_every(2, offset=i) for i in range(2)}
    _deliver(config, "exec-2", "2023-11-21T00:00:00Z", halves)  # the same rows, split otherwise
    confirmed = _build(config)
    assert is_reused(confirmed) and listings == [PERIOD] * 3
    assert read_state(Store(), config.lake_url, "alpha", DAY)["raw"]["confirmed_version"] == "exec-2"


def test_an_older_delivery_standing_in_for_a_broken_newer_one_is_listed_once_and_recorded(
    tmp_path: Path, listings: list[str]
) -> None:
    config = _config(tmp_path)
    _deliver(config, "exec-1", "2023-11-20T00:00:00Z", {"part-0.parquet": cur2_month_frame(PERIOD)})
    newer = {"part-0.parquet": cur2_month_frame(PERIOD, lambda d, t, s: 99.0), "part-1.parquet": b"not parquet"}
    _deliver(config, "exec-2", "2023-11-21T00:00:00Z", newer)

    built = _build(config)
    assert built.version == "exec-1" and "exec-2" in built.passed_over_versions
    assert listings == [PERIOD]
    store = Store()
    older = next(d for d in list_deliveries(config.sources[0], DAY, store) if d.version == "exec-1")
    raw = read_state(store, config.lake_url, "alpha", DAY)["raw"]
    assert raw["fingerprint"] == compute_delivery_days(store, config.sources[0], older).fingerprint(DAY)


def test_build_raw_slice_lists_the_landing_zone_once(tmp_path: Path, listings: list[str]) -> None:
    config = _config(tmp_path)
    _deliver(config, "exec-1", "2023-11-20T00:00:00Z", {"part-0.parquet": cur2_month_frame(PERIOD)})
    with scratch_dir() as workdir:
        built = build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)
    assert built.version == "exec-1" and listings == [PERIOD]
