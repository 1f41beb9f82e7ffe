"""The bench's own parts: the side-by-side input, the timeout that kills a hung side, the provider list,
and the generator's vectorised float rounding (checked against Python's own formatting)."""

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from billing_pipeline.adapters import adapter_for, choose_current
from billing_pipeline.platform.storage import Store
from billing_pipeline.tools import bench, bench_compare
from billing_pipeline.tools.generator.gcp import _formatted_floats

SAMPLE_ROWS = 1281  # data rows of the public AWS sample (its line count minus the header)


def sample_lines() -> list[str]:
    return bench_compare.SAMPLE.read_text().splitlines()


@pytest.mark.skipif(not bench_compare.SAMPLE.is_file(), reason="the shared AWS sample export is not checked out")
def test_replicated_sample_is_one_day_of_unique_line_items() -> None:
    assert len(sample_lines()) - 1 == SAMPLE_ROWS
    frame = bench_compare.replicated_sample(copies=3)
    assert frame.height == 3 * SAMPLE_ROWS
    assert frame["identity/LineItemId"].n_unique() == frame.height
    starts = frame["lineItem/UsageStartDate"].str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ")
    ends = frame["lineItem/UsageEndDate"].str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ")
    assert set(starts.dt.date().to_list()) == {bench_compare.USAGE_DAY}
    assert ((ends - starts) == dt.timedelta(hours=1)).all()
    # each row keeps its hour of day: read from the sample's text independently of the code under test
    original = pl.read_csv(bench_compare.SAMPLE, infer_schema=False)
    hours = [int(text[11:13]) for text in original["lineItem/UsageStartDate"].to_list()] * 3
    assert starts.dt.hour().to_list() == hours
    # every other column is the sample's, copy after copy
    untouched = [c for c in original.columns if c not in bench_compare.REWRITTEN_COLUMNS]
    assert frame.select(untouched).equals(pl.concat([original.select(untouched)] * 3))


@pytest.mark.skipif(not bench_compare.SAMPLE.is_file(), reason="the shared AWS sample export is not checked out")
def test_legacy_delivery_is_the_current_one_the_pipeline_finds(tmp_path: Path) -> None:
    frame = bench_compare.replicated_sample(copies=2)
    root = tmp_path / "cur" / bench_compare.REPORT
    written = bench_compare.write_legacy_delivery(frame, root)
    deliveries = adapter_for("aws_cur").discover(Store(), "s", str(root), "2023-11", "auto")
    current = choose_current(deliveries).current
    assert current is not None and current.named_current
    assert sorted(current.files) == sorted(str(p) for p in written)
    rows = sum(pl.read_csv(p, infer_schema=False).height for p in written)
    assert rows == 2 * SAMPLE_ROWS


def test_a_side_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    # a child that outlives its parent's kill would write the marker after 2 s
    command = ["sh", "-c", f"(sleep 2; touch {marker}) & sleep 60"]
    started = time.perf_counter()
    run = bench_compare.run_with_timeout(command, timeout_s=0.5)
    assert run.timed_out and run.returncode == -9
    assert time.perf_counter() - started < 5
    time.sleep(2.5)
    assert not marker.exists()


def test_a_side_that_finishes_reports_its_exit_code_and_peak() -> None:
    run = bench_compare.run_with_timeout(["python3", "-c", "b = bytearray(200 * 2**20); raise SystemExit(3)"], 60)
    assert not run.timed_out and run.returncode == 3
    assert run.peak_rss_mib >= 200


def test_unknown_provider_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown \\['oracle'\\]"):
        bench.main(["--providers", "gcp,oracle", "--sizes", "10", "--out", str(tmp_path)])


@pytest.mark.parametrize("spec", [".6f", ".6e"])
def test_formatted_floats_equal_python_formatting(spec: str) -> None:
    rng = np.random.default_rng(5)
    quantities = np.round(rng.gamma(2.0, 1.5, 200_000), 6)
    scale = 3600.0 if spec == ".6f" else 2.6784e15
    values = np.concatenate(
        [
            quantities * scale,
            # halves and values next to them, where a rounding of the scaled value can go either way
            np.array([0.0, 0.5e-6, 1.5e-6, 2.5e-6, 0.1234565, 1234.0000005, 9.9999995e9, 1e15, 2.5e15, 9999999.5]),
        ]
    )
    expected = np.array([float(format(float(v), spec)) for v in values])
    assert np.array_equal(_formatted_floats(values, spec), expected)


STAGE_PEAK_SCRIPT = """
import json, sys
from pathlib import Path
import billing_pipeline.spine.enrich as enrich
import billing_pipeline.spine.normalize as normalize
import billing_pipeline.spine.raw as raw
from billing_pipeline.tools import bench

def normalized(*args):
    held = bytearray(400 * 2**20)  # touched, so resident: the stage's peak
    held[:: 4096] = b"x" * len(held[:: 4096])

raw.build_raw_slice = lambda *args: None
normalize.build_normalized_slice = normalized
enrich.build_enriched_slice = lambda *args: None
out = Path(sys.argv[1])
bench.pipeline_step(out.parent, out.parent / "lake", out)
"""


def test_the_pipeline_step_reports_the_peak_after_each_stage(tmp_path: Path) -> None:
    """The stage that allocates raises the process's peak; the stage after it does not lower it."""
    stages = tmp_path / "stages.json"
    subprocess.run([sys.executable, "-c", STAGE_PEAK_SCRIPT, str(stages)], check=True)
    report = json.loads(stages.read_text())
    assert set(report["seconds"]) == set(report["peak_mib_after"]) == {"raw", "normalized", "enriched"}
    peaks = report["peak_mib_after"]
    assert peaks["normalized"] - peaks["raw"] >= 300  # of its 400 MiB: memory freed earlier is reused
    assert peaks["enriched"] == peaks["normalized"]
