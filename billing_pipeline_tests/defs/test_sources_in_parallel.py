"""A day's sources built side by side (`sources_in_parallel`) give the lake, the metadata and the verdicts of
the same day built one source after the other: every provider the generator writes, and a source whose
delivery is truncated (held back: the day goes on for the others), through the code location's job on a real
instance."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from dagster import instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.config import load_config
from billing_pipeline.tools.conformance import GENERATOR_SOURCES
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import write_config

DAYS = [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
BROKEN = "focus_truncated"
VOLATILE = ("ingestion", "compute", "seconds", "latency", "attainment", "budget", "burn", "finger", "preview")


def landing_zone(root: Path) -> Path:
    """The generator's sources over DAYS under `root/landing`, and a copy of its FOCUS export cut short."""
    landing = root / "landing"
    generate_landing_zone(landing, month="2026-10", rows_per_day=30, days=len(DAYS), providers=tuple(GENERATOR_SOURCES))
    shutil.copytree(landing / "focus", landing / BROKEN)
    for data in (landing / BROKEN).rglob("*.csv.gz"):  # every delivery cut short
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return landing


def _build(root: Path, landing: Path, workers: int) -> tuple[Path, dict, dict]:
    sources = [{"name": n, "provider": p, "url": str(landing / path)} for n, (p, path) in GENERATOR_SOURCES.items()]
    sources.append({"name": BROKEN, "provider": "focus", "url": str(landing / BROKEN / "focus-export")})
    root.mkdir()
    config = write_config(
        root, sources, invoices_url=str(landing / "invoices"), start_date="2026-10-01", sources_in_parallel=workers
    )
    return Path(load_config(config).lake_url), *run_days(config)


def run_days(config: Path, days: Sequence[dt.date] = DAYS) -> tuple[dict, dict]:
    """The job over `days` on a fresh instance: each materialization's metadata (timings left out) and each
    check's verdict."""
    job = build_definitions(config).resolve_job_def(JOB_NAME)
    metadata, verdicts = {}, {}
    with instance_for_test() as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)
            for event in result.all_events:
                if event.event_type_value == "ASSET_MATERIALIZATION":
                    m = event.step_materialization_data.materialization
                    metadata[(m.asset_key.to_user_string(), day)] = {
                        k: str(v.value) for k, v in m.metadata.items() if not any(w in k for w in VOLATILE)
                    }
                elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                    e = event.asset_check_evaluation_data
                    verdicts[(e.asset_key.to_user_string(), e.check_name, day)] = e.passed
    return metadata, verdicts


def assert_same_metadata(one: dict, other: dict, moved: tuple[str, str]) -> None:
    """The same materializations with the same metadata, but for the lake's own URLs (`moved`: one lake's
    marker in a URL, the other's)."""
    assert set(other) == set(one)
    for key, values in one.items():
        assert {k: v.replace(*moved) for k, v in values.items()} == other[key], key


def assert_same_slice(one: pl.DataFrame, other: pl.DataFrame, moved: tuple[str, str], where: object) -> None:
    """The same slice in two lakes, but for clocks (when a row was ingested, a problem detected; the pipeline's
    own cost) and where in its own lake a broken file was copied to."""
    if "sli" in one.columns:  # the pipeline's own cost (M5) is priced from its compute seconds: a timing
        one, other = (f.filter(pl.col("sli") != "ingestion_cost") for f in (one, other))
    if "quarantined_copy" in one.columns:  # where in its own lake the broken file was copied to
        one = one.with_columns(pl.col("quarantined_copy").str.replace(*moved, literal=True))
    differing = [c for c in one.columns if c in other.columns and not one[c].equals(other[c])]
    assert one.columns == other.columns and set(differing) <= {"x_IngestedAt", "detected_at"}, (where, differing)


def test_sources_built_side_by_side_give_what_one_after_the_other_gives(tmp_path: Path) -> None:
    landing = landing_zone(tmp_path)
    one_lake, one_metadata, one_verdicts = _build(tmp_path / "one", landing, 1)
    four_lake, four_metadata, four_verdicts = _build(tmp_path / "four", landing, 4)

    assert four_verdicts == one_verdicts and len(one_verdicts) > 60
    failed = {check for (_, check, _), passed in one_verdicts.items() if not passed}
    assert "publish_guard" in failed  # the truncated delivery was held back, in both
    assert len(one_metadata) == 6 * len(DAYS)
    assert_same_metadata(one_metadata, four_metadata, ("/one/", "/four/"))

    slices = sorted(p.relative_to(one_lake) for p in one_lake.rglob("*.parquet"))
    assert slices == sorted(p.relative_to(four_lake) for p in four_lake.rglob("*.parquet"))
    published = [s for s in slices if s.parts[0] == "normalized_line_items"]
    assert {s.parts[2] for s in published} == {f"source={name}" for name in GENERATOR_SOURCES}  # none of the broken one
    for relative in slices:
        one, four = (pl.read_parquet(lake / relative) for lake in (one_lake, four_lake))
        assert_same_slice(one, four, ("/one/", "/four/"), relative)
