"""A small raw slice is mapped to FOCUS once, in memory; a big one twice, streaming (bounded memory). Both
paths publish the same normalized slice and put the same rows in the same quarantines, for every provider,
with duplicates and bad rows in the day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import NORMALIZED, RAW
from billing_pipeline.platform.storage import scratch_dir
from billing_pipeline.spine import normalize
from billing_pipeline.tools.conformance import GENERATOR_SOURCES
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import run_spine, write_config

DAY = dt.date(2026, 10, 2)


def _outputs(config, source: str) -> dict[str, pl.DataFrame | None]:
    urls = {
        "published": slice_url(config.lake_url, NORMALIZED, DAY, source),
        "bad rows": quarantine_url(config.lake_url, "rows", DAY, source),
        "duplicates": quarantine_url(config.lake_url, "duplicates", DAY, source),
    }
    return {name: pl.read_parquet(url) if Path(url).exists() else None for name, url in urls.items()}


def _break_some_rows(config) -> None:
    """Legacy CUR's raw slice is text as delivered: three rows get a cost no one can read (bad rows)."""
    url = slice_url(config.lake_url, RAW, DAY, "aws_cur")
    raw = pl.read_parquet(url)
    cost = pl.col("lineItem/UnblendedCost")
    raw.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("12,5 USD")).otherwise(cost).alias(cost.meta.output_name())
    ).write_parquet(url)


def test_the_in_memory_and_the_streaming_mapping_give_the_same_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    generate_landing_zone(landing, month="2026-10", rows_per_day=60, days=3, providers=tuple(GENERATOR_SOURCES))
    sources = [{"name": n, "provider": p, "url": str(landing / path)} for n, (p, path) in GENERATOR_SOURCES.items()]
    config = load_config(write_config(tmp_path, sources, invoices_url=str(landing / "invoices")))
    run_spine(config, DAY)
    _break_some_rows(config)

    results, outputs = {}, {}
    for path, rows in (("in memory", normalize.IN_MEMORY_ROWS), ("streaming", 0)):
        monkeypatch.setattr(normalize, "IN_MEMORY_ROWS", rows)
        with scratch_dir() as workdir:
            results[path] = [
                normalize.build_normalized_slice(s, DAY, config.store(), config.lake_url, workdir)
                for s in config.sources
            ]
        outputs[path] = {s.name: _outputs(config, s.name) for s in config.sources}

    assert results["in memory"] == results["streaming"]
    counted = results["streaming"]
    assert sum(r.duplicate_rows for r in counted) > 0 and sum(r.quarantined_rows for r in counted) == 3
    for source, tables in outputs["streaming"].items():
        for name, frame in tables.items():
            other = outputs["in memory"][source][name]
            if frame is None:
                assert other is None, (source, name)
            else:
                assert other is not None and frame.sort("x_RawRow").equals(other.sort("x_RawRow")), (source, name)


def test_plans_over_the_duplicate_candidates_hold_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GCP's mapping reads its input twice (charge rows, then credit rows); over the duplicate candidates (a
    filter of the raw slice) polars cached that input whole: the 2.4M candidates of a 10M-row day held 1.3 GiB
    more. Every sink other than the published slice's (over a plain scan, which streams) runs without a cache."""
    landing = tmp_path / "landing"
    generate_landing_zone(landing, month="2026-10", rows_per_day=200, days=3, providers=("gcp",))
    sources = [{"name": n, "provider": p, "url": str(landing / path)} for n, (p, path) in GENERATOR_SOURCES.items()]
    config = load_config(write_config(tmp_path, [s for s in sources if s["provider"] == "gcp"]))
    run_spine(config, DAY)
    monkeypatch.setattr(normalize, "CANDIDATES_IN_MEMORY", 0)  # the streamed comparison of a big day
    plans: list[tuple[str, str]] = []
    sink_parquet = pl.LazyFrame.sink_parquet

    def recorded(self: pl.LazyFrame, path: object, *args: object, **kwargs: object) -> object:
        plans.append((str(path), self.explain(optimizations=kwargs.get("optimizations", pl.QueryOptFlags()))))
        return sink_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", recorded)
    (source,) = config.sources
    with scratch_dir() as workdir:
        result = normalize.build_normalized_slice(source, DAY, config.store(), config.lake_url, workdir)

    assert result.duplicate_rows > 0
    candidates = [plan for path, plan in plans if "normalized-" not in path]
    assert len(candidates) >= 2  # the keys' buckets and the duplicates quarantine
    assert all("CACHE" not in plan for plan in candidates)
