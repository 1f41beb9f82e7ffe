"""`make bench`: time and peak memory of one day through the pipeline, per provider, against a floor.

For each provider and size the generator writes one day of that provider's export (CUR 2.0: full
column set, map columns, tags, the mix of line item types; GCP: NDJSON and Parquet appends with
nested records; Azure: gzip CSV runs; FOCUS: gzip CSV), 100,000 rows per data file. Then, each in
its own process so that peak RSS is that step's alone:
- floor: a plain polars lazy scan of the same files (the adapter's own scan: Parquet, CSV as text,
  NDJSON), projected to the columns the pipeline reads, written with a streaming sink (the cost of
  reading and writing the bytes);
- pipeline: raw -> normalized -> tag-enriched for that day, through the functions the assets call
  (one process, as the `billing_daily` job runs them), with the seconds of each stage and the
  process's peak RSS after each (it only grows: the stage that raises it holds the peak);
- layers copy: a plain polars copy of the three files the pipeline wrote, i.e. what reading and
  writing three layers of that width costs before any mapping (a second, wider baseline).
Reports wall time, rows per second, peak RSS and the ratios pipeline / floor and pipeline / layers
copy; writes JSON.

Usage: python -m billing_pipeline.tools.bench [--sizes 1000000,5000000,10000000] [--providers aws_cur2,gcp,azure,focus]
       [--out bench_results] [--compare]   (--compare: then the side-by-side with focus-converter, bench_compare)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

MONTH = "2026-10"
DAY = dt.date(2026, 10, 1)
# where the generator writes each provider's export under the landing zone (as in billing.yaml)
EXPORT_ROOTS = {
    "aws_cur2": "aws_cur2/cur2-daily",
    "gcp": "gcp/billing-export",
    "azure": "azure/cost-exports/actual-daily",
    "focus": "focus/focus-export",
}
ROWS_PER_FILE = 100_000


def source_name(provider: str) -> str:
    return "bench_cur2" if provider == "aws_cur2" else f"bench_{provider}"


@dataclass
class Measurement:
    """One child process: wall seconds, its own peak RSS, exit code (-9 when killed on timeout)."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    timed_out: bool = False


def run_measured(
    command: list[str],
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Measurement:
    """Run `command` as a child in its own process group and read its own peak RSS from wait4 (not the max
    over all children); past `timeout_s` the whole group is killed (a hung side must not stall the bench).
    Output goes to `log` when given, else to this process's."""
    started = time.perf_counter()
    output = log.open("wb") if log else None
    try:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT if log else None, start_new_session=True
        )
        deadline = None if timeout_s is None else started + timeout_s
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                timed_out = True
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    finally:
        if output:
            output.close()
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(round(elapsed, 2), round(usage.ru_maxrss / 1024, 1), process.returncode, timed_out)


def export_root(landing: Path, provider: str = "aws_cur2") -> Path:
    return landing / EXPORT_ROOTS[provider]


def current_delivery(landing: Path, provider: str = "aws_cur2"):  # noqa: ANN201 - adapters.Delivery
    """The current (latest complete) delivery, chosen the way the pipeline chooses."""
    from billing_pipeline.adapters import adapter_for, choose_current
    from billing_pipeline.platform.storage import Store

    root = str(export_root(landing, provider))
    deliveries = adapter_for(provider).discover(Store(), source_name(provider), root, MONTH, "auto")
    current = choose_current(deliveries).current
    if current is None:
        raise SystemExit(f"no complete {provider} delivery under {landing}")
    return current


def current_files(landing: Path, provider: str = "aws_cur2") -> list[Path]:
    """The data files of the current delivery."""
    return [Path(f) for f in current_delivery(landing, provider).files]


def scan_delivered(provider: str, file: Path, file_format: str = "auto") -> pl.LazyFrame:
    """One delivered file as the adapter scans it (Parquet, CSV as text, NDJSON with its schema)."""
    from billing_pipeline.adapters import adapter_for

    return adapter_for(provider).read(file, file_format)


def pipeline_columns(files: list[Path], provider: str = "aws_cur2") -> list[str]:
    """The columns the normalized and enriched layers read from a delivered file (from the query plan)."""
    from billing_pipeline.adapters import adapter_for

    scan = scan_delivered(provider, files[0])
    plan = adapter_for(provider).to_focus(scan).explain(optimized=True)
    schema = scan.collect_schema()
    return [c for c in schema if f'"{c}"' in plan or f"col({c})" in plan or c in plan.split()]


def floor_step(plan: Path, out: Path) -> None:
    """Only the scan and the sink: files and columns were chosen by the parent, outside the timing."""
    from billing_pipeline.platform.storage import PARQUET_OPTIONS

    chosen = json.loads(plan.read_text())
    provider = chosen.get("provider", "aws_cur2")
    # written with the pipeline's own Parquet options, so the two differ only in what they compute
    if provider == "aws_cur2":
        pl.scan_parquet(chosen["files"]).select(chosen["columns"]).sink_parquet(out, **PARQUET_OPTIONS)
        return
    # formats differ file by file (GCP's NDJSON and Parquet appends): one scan and sink per file
    for index, file in enumerate(chosen["files"]):
        scan = scan_delivered(provider, Path(file))
        present = [c for c in chosen["columns"] if c in scan.collect_schema()]
        scan.select(present).sink_parquet(out.with_suffix(f".{index}.parquet"), **PARQUET_OPTIONS)


LAYERS = ("raw_line_items", "normalized_line_items", "tag_enriched_costs")


def layer_files(lake: Path, provider: str = "aws_cur2") -> list[Path]:
    from billing_pipeline.platform.lake import slice_url

    return [Path(slice_url(str(lake), layer, DAY, source_name(provider))) for layer in LAYERS]


def copy_step(lake: Path, out: Path, provider: str = "aws_cur2") -> None:
    """A plain polars copy of each layer file the pipeline wrote: what three materialized layers of
    that width cost in reading and writing alone, before any mapping, dedup or allocation."""
    from billing_pipeline.platform.storage import PARQUET_OPTIONS

    for index, layer in enumerate(layer_files(lake, provider)):
        pl.scan_parquet(layer).sink_parquet(out.with_suffix(f".{index}.parquet"), **PARQUET_OPTIONS)


def _own_peak_mib() -> float:
    """This process's peak RSS so far: `VmHWM` of its own memory map. `ru_maxrss` would do, except that Linux
    carries it over an exec from the parent, so a child of a big process starts with the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def pipeline_step(landing: Path, lake: Path, stages_out: Path, provider: str = "aws_cur2") -> None:
    """raw -> normalized -> tag-enriched in one process, as the `billing_daily` job runs them: through the
    functions its assets call (a new delivery's fingerprint pass, each layer's state recorded)."""
    from billing_pipeline.platform.config import SourceConfig, TagPolicy, load_config
    from billing_pipeline.platform.storage import Store, scratch_dir
    from billing_pipeline.spine.enrich import build_enriched_slice_if_stale
    from billing_pipeline.spine.normalize import build_normalized_slice_if_stale
    from billing_pipeline.spine.raw import build_raw_slice_if_changed

    source = SourceConfig(name=source_name(provider), provider=provider, url=str(export_root(landing, provider)))
    policy: TagPolicy = load_config(Path(__file__).resolve().parents[2] / "billing.yaml").tag_policy
    store = Store()
    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}
    with scratch_dir(prefix="bench-") as workdir:
        for name, build in (
            ("raw", lambda: build_raw_slice_if_changed(source, DAY, store, str(lake), workdir)),
            ("normalized", lambda: build_normalized_slice_if_stale(source, DAY, store, str(lake), workdir)),
            ("enriched", lambda: build_enriched_slice_if_stale(source, DAY, store, str(lake), policy, workdir)),
        ):
            started = time.perf_counter()
            build()
            stages[name] = round(time.perf_counter() - started, 2)
            peaks[name] = _own_peak_mib()
    stages_out.write_text(json.dumps({"seconds": stages, "peak_mib_after": peaks}))


def step_command(step: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "billing_pipeline.tools.bench", step, *options]


def measure_size(provider: str, size: int, work: Path, keep: bool) -> dict:
    """Generate one day of `provider` at `size` rows, then measure floor, pipeline and layers copy."""
    landing = work / f"landing-{provider}-{size}"
    shutil.rmtree(landing, ignore_errors=True)
    generator = [sys.executable, "-m", "billing_pipeline.tools.generator", "--out", str(landing), "--month", MONTH]
    generator += ["--only", provider, "--days", "1", "--rows-per-day", str(size), "--seed", "11"]
    generated = run_measured([*generator, "--rows-per-file", str(ROWS_PER_FILE)])
    if generated.returncode:
        raise SystemExit(f"generator failed for {provider} at {size} rows")
    delivery = current_delivery(landing, provider)
    files = [Path(f) for f in delivery.files]
    rows = sum(scan_delivered(provider, f).select(pl.len()).collect().item() for f in files)
    input_bytes = sum(f.stat().st_size for f in files)
    tag = f"{provider}-{size}"
    floor_out = work / f"floor-{tag}.parquet"
    floor_plan = work / f"floor-{tag}.json"
    chosen = {"provider": provider, "files": [str(f) for f in files], "columns": pipeline_columns(files, provider)}
    floor_plan.write_text(json.dumps(chosen))
    floor = run_measured(step_command("floor", "--plan", str(floor_plan), "--target", str(floor_out)))
    lake = work / f"lake-{tag}"
    shutil.rmtree(lake, ignore_errors=True)
    stages_file = work / f"stages-{tag}.json"
    pipeline = run_measured(
        step_command(
            "pipeline",
            "--provider",
            provider,
            "--landing",
            str(landing),
            "--target",
            str(lake),
            "--stages",
            str(stages_file),
        )
    )
    if floor.returncode or pipeline.returncode:
        raise SystemExit(
            f"a step failed for {provider} at {size} rows: floor {floor.returncode}, pipeline {pipeline.returncode}"
        )
    copy_out = work / f"copy-{tag}.parquet"
    copy = run_measured(step_command("copy", "--provider", provider, "--landing", str(lake), "--target", str(copy_out)))
    if copy.returncode:
        raise SystemExit(f"copying the layers failed for {provider} at {size} rows")
    layers = layer_files(lake, provider)
    stages = json.loads(stages_file.read_text())
    normalized = pl.scan_parquet(layers[1]).select(pl.len()).collect().item()
    result = {
        "provider": provider,
        # other work on the machine stretches wall times: the 1-minute load average after the pipeline
        "load_average_1m": round(os.getloadavg()[0], 1),
        "rows_generated_per_day": size,
        "generator": asdict(generated),
        "files_in_latest_delivery": len(files),
        "rows_in_latest_delivery": rows,
        "rows_normalized": normalized,
        "input_mib": round(input_bytes / 2**20, 1),
        "floor": asdict(floor),
        "pipeline": asdict(pipeline),
        "pipeline_stage_seconds": stages["seconds"],
        # peak RSS of the pipeline process after each stage: the stage where it rises holds the peak
        "pipeline_peak_mib_after_stage": stages["peak_mib_after"],
        "floor_rows_per_s": round(rows / floor.seconds),
        "pipeline_rows_per_s": round(rows / pipeline.seconds),
        "ratio_time": round(pipeline.seconds / floor.seconds, 2),
        "layers_copy": asdict(copy),
        "layer_columns": [len(pl.read_parquet_schema(f)) for f in layers],
        "ratio_time_vs_layers_copy": round(pipeline.seconds / copy.seconds, 2),
        "ratio_peak_rss": round(pipeline.peak_rss_mib / floor.peak_rss_mib, 2),
    }
    if not keep:
        shutil.rmtree(landing, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)
        for leftover in [floor_plan, stages_file, *work.glob(f"floor-{tag}*.parquet"), *work.glob(f"copy-{tag}.*")]:
            leftover.unlink(missing_ok=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", choices=["floor", "pipeline", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000000,5000000,10000000")
    parser.add_argument("--providers", default="aws_cur2", help=f"comma-separated, of {','.join(EXPORT_ROOTS)}")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--work", default=None, help="scratch folder (default: <out>/work)")
    parser.add_argument("--compare", action="store_true", help="then billing_daily against focus-converter")
    parser.add_argument("--provider", default="aws_cur2", help=argparse.SUPPRESS)
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
        pipeline_step(Path(args.landing), Path(args.target), Path(args.stages), args.provider)
        return 0
    if args.step == "copy":
        copy_step(Path(args.landing), Path(args.target), args.provider)
        return 0

    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = sorted(set(providers) - set(EXPORT_ROOTS))
    if unknown:
        raise SystemExit(f"--providers: unknown {unknown} (known: {', '.join(EXPORT_ROOTS)})")
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for provider in providers:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(measure_size(provider, size, work, args.keep))
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
    if args.compare:
        from billing_pipeline.tools import bench_compare

        return bench_compare.main(["--out", str(out)])
    return 0


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'provider':>8} {'rows':>11} {'floor s':>8} {'floor MiB':>10} {'pipe s':>8} {'pipe MiB':>9} "
        f"{'rows/s':>10} {'ratio':>6}   {'raw s':>6} {'norm s':>6} {'enr s':>6}   {'copy s':>6} {'vs copy':>7}   "
        f"{'MiB after raw / norm / enr':>26}"
    )
    for r in results:
        stages, peaks = r["pipeline_stage_seconds"], r["pipeline_peak_mib_after_stage"]
        after = " / ".join(f"{peaks[s]:,.0f}" for s in ("raw", "normalized", "enriched"))
        print(
            f"{r['provider']:>8} {r['rows_in_latest_delivery']:>11,} {r['floor']['seconds']:>8.1f} "
            f"{r['floor']['peak_rss_mib']:>10.0f} {r['pipeline']['seconds']:>8.1f} "
            f"{r['pipeline']['peak_rss_mib']:>9.0f} {r['pipeline_rows_per_s']:>10,} {r['ratio_time']:>6.2f}   "
            f"{stages['raw']:>6.1f} {stages['normalized']:>6.1f} {stages['enriched']:>6.1f}   "
            f"{r['layers_copy']['seconds']:>6.1f} {r['ratio_time_vs_layers_copy']:>7.2f}   {after:>26}",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())
