"""`make bench`: time and peak memory of one CUR 2.0 day through the pipeline, against a floor.

For each size the generator writes one day of CUR 2.0 (full column set, map columns, tags, the mix
of line item types). Then, each in its own process so that peak RSS is that step's alone:
- floor: a plain polars lazy scan of the same Parquet, projected to the columns the pipeline reads,
  written with a streaming sink (the cost of reading and writing the bytes);
- pipeline: raw -> normalized -> tag-enriched for that day, through the functions the assets call
  (one process, as the `billing_daily` job runs them), with the seconds of each stage;
- layers copy: a plain polars copy of the three files the pipeline wrote, i.e. what reading and
  writing three layers of that width costs before any mapping (a second, wider baseline).
Reports wall time, rows per second, peak RSS and the ratios pipeline / floor and pipeline / layers
copy; writes JSON.

Usage: python -m billing_pipeline.tools.bench [--sizes 1000000,5000000,10000000] [--out bench_results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

MONTH = "2026-10"
DAY = dt.date(2026, 10, 1)
SOURCE = "bench_cur2"


@dataclass
class Measurement:
    seconds: float
    peak_rss_mib: float
    returncode: int


def run_measured(command: list[str]) -> Measurement:
    """Run `command` as a child and read its own peak RSS from wait4 (not the max over all children)."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(elapsed, usage.ru_maxrss / 1024, process.returncode)


def export_root(landing: Path) -> Path:
    return landing / "aws_cur2" / "cur2-daily"


def current_files(landing: Path) -> list[Path]:
    """The data files of the current (latest complete) delivery, chosen the way the pipeline chooses."""
    from billing_pipeline.adapters import adapter_for, choose_current
    from billing_pipeline.platform.storage import Store

    deliveries = adapter_for("aws_cur2").discover(Store(), SOURCE, str(export_root(landing)), MONTH, "auto")
    current = choose_current(deliveries).current
    if current is None:
        raise SystemExit(f"no complete CUR 2.0 delivery under {landing}")
    return [Path(f) for f in current.files]


def pipeline_columns(files: list[Path]) -> list[str]:
    """The columns the normalized and enriched layers read from a CUR 2.0 file (from the query plan)."""
    from billing_pipeline.adapters.aws import AwsCur2Adapter

    scan = pl.scan_parquet(files)
    plan = AwsCur2Adapter().to_focus(scan).explain(optimized=True)
    schema = scan.collect_schema()
    return [c for c in schema if f'"{c}"' in plan or f"col({c})" in plan or c in plan.split()]


def floor_step(plan: Path, out: Path) -> None:
    """Only the scan and the sink: files and columns were chosen by the parent, outside the timing."""
    from billing_pipeline.platform.storage import PARQUET_OPTIONS

    chosen = json.loads(plan.read_text())
    # written with the pipeline's own Parquet options, so the two differ only in what they compute
    pl.scan_parquet(chosen["files"]).select(chosen["columns"]).sink_parquet(out, **PARQUET_OPTIONS)


LAYERS = ("raw_line_items", "normalized_line_items", "tag_enriched_costs")


def layer_files(lake: Path) -> list[Path]:
    from billing_pipeline.platform.lake import slice_url

    return [Path(slice_url(str(lake), layer, DAY, SOURCE)) for layer in LAYERS]


def copy_step(lake: Path, out: Path) -> None:
    """A plain polars copy of each layer file the pipeline wrote: what three materialized layers of
    that width cost in reading and writing alone, before any mapping, dedup or allocation."""
    from billing_pipeline.platform.storage import PARQUET_OPTIONS

    for index, layer in enumerate(layer_files(lake)):
        pl.scan_parquet(layer).sink_parquet(out.with_suffix(f".{index}.parquet"), **PARQUET_OPTIONS)


def pipeline_step(landing: Path, lake: Path, stages_out: Path) -> None:
    """raw -> normalized -> tag-enriched in one process, as the `billing_daily` job runs them."""
    from billing_pipeline.platform.config import SourceConfig, TagPolicy, load_config
    from billing_pipeline.platform.storage import Store, scratch_dir
    from billing_pipeline.spine.enrich import build_enriched_slice
    from billing_pipeline.spine.normalize import build_normalized_slice
    from billing_pipeline.spine.raw import build_raw_slice

    source = SourceConfig(name=SOURCE, provider="aws_cur2", url=str(export_root(landing)))
    policy: TagPolicy = load_config(Path(__file__).resolve().parents[2] / "billing.yaml").tag_policy
    store = Store()
    stages: dict[str, float] = {}
    with scratch_dir(prefix="bench-") as workdir:
        for name, build in (
            ("raw", lambda: build_raw_slice(source, DAY, store, str(lake), workdir)),
            ("normalized", lambda: build_normalized_slice(source, DAY, store, str(lake), workdir)),
            ("enriched", lambda: build_enriched_slice(source, DAY, store, str(lake), policy, workdir)),
        ):
            started = time.perf_counter()
            build()
            stages[name] = round(time.perf_counter() - started, 2)
    stages_out.write_text(json.dumps(stages))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", choices=["floor", "pipeline", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000000,5000000,10000000")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--work", default=None, help="scratch folder (default: <out>/work)")
    parser.add_argument("--landing", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--stages", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep generated data")
    args = parser.parse_args(argv)
    if args.step == "floor":
        floor_step(Path(args.plan), Path(args.target))
        return 0
    if args.step == "pipeline":
        pipeline_step(Path(args.landing), Path(args.target), Path(args.stages))
        return 0
    if args.step == "copy":
        copy_step(Path(args.landing), Path(args.target))
        return 0

    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out / "work"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        landing = work / f"landing-{size}"
        shutil.rmtree(landing, ignore_errors=True)
        generated = run_measured(
            [
                sys.executable,
                "-m",
                "billing_pipeline.tools.generator",
                "--out",
                str(landing),
                "--month",
                MONTH,
                "--only",
                "aws_cur2",
                "--days",
                "1",
                "--rows-per-day",
                str(size),
                "--seed",
                "11",
            ]
        )
        if generated.returncode:
            raise SystemExit(f"generator failed for {size} rows")
        files = current_files(landing)
        rows = pl.scan_parquet(files).select(pl.len()).collect().item()
        input_bytes = sum(f.stat().st_size for f in files)
        floor_out = work / f"floor-{size}.parquet"
        floor_plan = work / f"floor-{size}.json"
        floor_plan.write_text(json.dumps({"files": [str(f) for f in files], "columns": pipeline_columns(files)}))
        floor = run_measured(
            [
                sys.executable,
                "-m",
                "billing_pipeline.tools.bench",
                "floor",
                "--plan",
                str(floor_plan),
                "--target",
                str(floor_out),
            ]
        )
        lake = work / f"lake-{size}"
        shutil.rmtree(lake, ignore_errors=True)
        stages_file = work / f"stages-{size}.json"
        pipeline = run_measured(
            [
                sys.executable,
                "-m",
                "billing_pipeline.tools.bench",
                "pipeline",
                "--landing",
                str(landing),
                "--target",
                str(lake),
                "--stages",
                str(stages_file),
            ]
        )
        if floor.returncode or pipeline.returncode:
            raise SystemExit(f"a step failed for {size} rows: floor {floor.returncode}, pipeline {pipeline.returncode}")
        copy_out = work / f"copy-{size}.parquet"
        copy = run_measured(
            [
                sys.executable,
                "-m",
                "billing_pipeline.tools.bench",
                "copy",
                "--landing",
                str(lake),
                "--target",
                str(copy_out),
            ]
        )
        if copy.returncode:
            raise SystemExit(f"copying the layers failed for {size} rows")
        normalized = pl.scan_parquet(layer_files(lake)[1]).select(pl.len()).collect().item()
        results.append(
            {
                "rows_generated_per_day": size,
                "rows_in_latest_delivery": rows,
                "rows_normalized": normalized,
                "input_mib": round(input_bytes / 2**20, 1),
                "floor": asdict(floor),
                "pipeline": asdict(pipeline),
                "pipeline_stage_seconds": json.loads(stages_file.read_text()),
                "floor_rows_per_s": round(rows / floor.seconds),
                "pipeline_rows_per_s": round(rows / pipeline.seconds),
                "ratio_time": round(pipeline.seconds / floor.seconds, 2),
                "layers_copy": asdict(copy),
                "layer_columns": [len(pl.read_parquet_schema(f)) for f in layer_files(lake)],
                "ratio_time_vs_layers_copy": round(pipeline.seconds / copy.seconds, 2),
                "ratio_peak_rss": round(pipeline.peak_rss_mib / floor.peak_rss_mib, 2),
            }
        )
        if not args.keep:
            shutil.rmtree(landing, ignore_errors=True)
            shutil.rmtree(lake, ignore_errors=True)
            floor_out.unlink(missing_ok=True)
            floor_plan.unlink(missing_ok=True)
            stages_file.unlink(missing_ok=True)
            for leftover in work.glob(f"copy-{size}.*.parquet"):
                leftover.unlink()
        print_table(results)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "day": DAY.isoformat(),
        "results": results,
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten {out / 'bench.json'}")
    return 0


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'rows':>11} {'floor s':>8} {'floor MiB':>10} {'pipe s':>8} {'pipe MiB':>9} {'rows/s':>10} "
        f"{'ratio':>6}   {'raw s':>6} {'norm s':>6} {'enr s':>6}   {'copy s':>6} {'vs copy':>7}"
    )
    for r in results:
        stages = r["pipeline_stage_seconds"]
        print(
            f"{r['rows_in_latest_delivery']:>11,} {r['floor']['seconds']:>8.1f} {r['floor']['peak_rss_mib']:>10.0f} "
            f"{r['pipeline']['seconds']:>8.1f} {r['pipeline']['peak_rss_mib']:>9.0f} "
            f"{r['pipeline_rows_per_s']:>10,} {r['ratio_time']:>6.2f}   {stages['raw']:>6.1f} "
            f"{stages['normalized']:>6.1f} {stages['enriched']:>6.1f}   {r['layers_copy']['seconds']:>6.1f} "
            f"{r['ratio_time_vs_layers_copy']:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
