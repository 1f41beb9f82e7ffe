"""`make bench-compare`: the whole `billing_daily` job against focus-converter 1.0.0, side by side.

The input is one legacy CUR day made of the public AWS sample that focus-converter ships
(`focus_converters_sample-anonymous-aws-export-dataset.csv`, 1,281 rows) replicated 500 times:
640,500 rows, every line item id unique, every usage start moved to one day (its hour kept).
- the pipeline gets it as a legacy CUR delivery (period and assembly manifests, gzip CSV parts)
  and runs `dagster job execute -j billing_daily` for that day on a fresh Dagster instance and a
  fresh lake (raw, normalized, enriched, reconciliation, checks, Dagster start-up included);
- focus-converter 1.0.0 gets the same rows as one plain CSV
  (`focus-converter convert --provider aws-cur --data-format csv --export-format parquet`),
  installed in its own venv (it needs `multimethod<2` and `click<8.2` beside it).
Each side runs as its own process (peak RSS from `wait4`), under a timeout that kills its process
group (focus-converter prints a traceback and then hangs on an error); the pairs run in turn.
Reports both sides' wall time and peak RSS per pair, the median time ratio (converter / pipeline)
and the memory ratio; writes JSON.

Usage: python -m billing_pipeline.tools.bench_compare [--pairs 3] [--out bench_results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import polars as pl

from billing_pipeline.tools.bench import Measurement, run_measured

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "samples" / "aws" / "focus_converters_sample-anonymous-aws-export-dataset.csv"
COPIES = 500
USAGE_DAY = dt.date(2023, 11, 15)
PARTS = 3
SOURCE = "bench_legacy_cur"
REPORT = "bench-cur"
CONVERTER_PIN = ("focus-converter==1.0.0", "multimethod<2", "click<8.2")
TIMEOUT_S = 900
STAMP = "%Y-%m-%dT%H:%M:%S.000Z"
# the columns the replication rewrites (a unique id, one day); every other value is the sample's
REWRITTEN_COLUMNS = ("identity/LineItemId", "identity/TimeInterval", "lineItem/UsageStartDate", "lineItem/UsageEndDate")


SideRun = Measurement  # one side of one pair


def run_with_timeout(
    command: list[str], timeout_s: float, env: dict[str, str] | None = None, log: Path | None = None
) -> Measurement:
    """Run one side under a timeout that kills its process group; without a log its output is dropped."""
    return run_measured(command, timeout_s, env, log if log else Path(os.devnull))


def replicated_sample(sample: Path = SAMPLE, copies: int = COPIES, day: dt.date = USAGE_DAY) -> pl.DataFrame:
    """The sample `copies` times over as one usage day: unique line item ids, hours kept, one-hour rows."""
    if not sample.is_file():
        raise SystemExit(f"the AWS sample export is missing: {sample}")
    rows = pl.read_csv(sample, infer_schema=False)
    start_of_day = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    hour = pl.col("lineItem/UsageStartDate").str.slice(11, 2).cast(pl.Int64)
    start = pl.lit(start_of_day) + pl.duration(hours=hour)
    end = start + pl.duration(hours=1)
    replicated = pl.concat([rows] * copies).with_row_index("_n")
    return replicated.with_columns(
        (pl.col("identity/LineItemId") + pl.lit("-") + pl.col("_n").cast(pl.String)).alias("identity/LineItemId"),
        pl.format("{}/{}", start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"), end.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).alias(
            "identity/TimeInterval"
        ),
        start.dt.strftime(STAMP).alias("lineItem/UsageStartDate"),
        end.dt.strftime(STAMP).alias("lineItem/UsageEndDate"),
    ).drop("_n")


def write_legacy_delivery(frame: pl.DataFrame, root: Path, day: dt.date = USAGE_DAY, parts: int = PARTS) -> list[Path]:
    """`frame` as one legacy CUR assembly under `root`: gzip CSV parts, assembly and period manifests."""
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    period = f"{first:%Y%m%d}-{following:%Y%m%d}"
    assembly = "00000000-0000-4000-8000-000000000640"
    folder = root / period / assembly
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-frame.height // parts)
    files = []
    for index in range(parts):
        path = folder / f"{REPORT}-{index + 1}.csv.gz"
        with gzip.open(path, "wb", compresslevel=6) as out:
            frame.slice(index * size, size).write_csv(out)
        files.append(path)
    manifest = {
        "assemblyId": assembly,
        "account": frame["bill/PayerAccountId"][0],
        "columns": [{"category": c.split("/")[0], "name": c.split("/", 1)[1], "type": "String"} for c in frame.columns],
        "charset": "UTF-8",
        "compression": "GZIP",
        "contentType": "text/csv",
        "reportId": "bench",
        "reportName": REPORT,
        "billingPeriod": {"start": f"{first:%Y%m%d}T000000.000Z", "end": f"{following:%Y%m%d}T000000.000Z"},
        "bucket": "bench",
        "reportKeys": [f"cur/{REPORT}/{period}/{assembly}/{p.name}" for p in files],
        "additionalArtifactKeys": [],
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (folder / f"{REPORT}-Manifest.json").write_text(text)
    (root / period / f"{REPORT}-Manifest.json").write_text(text)
    return files


def bench_config(path: Path, landing: Path, lake: Path, day: dt.date = USAGE_DAY) -> Path:
    """A `billing.yaml` with the bench's one legacy CUR source and the project's tag policy."""
    import yaml

    base = yaml.safe_load((REPO / "billing.yaml").read_text())
    first = day.replace(day=1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    invoices = path.parent / "invoices"
    invoices.mkdir(parents=True, exist_ok=True)
    config = {
        "lake_url": str(lake),
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
        "invoices_url": str(invoices),
        "sources": [{"name": SOURCE, "provider": "aws_cur", "url": str(landing)}],
        "tag_policy": base["tag_policy"],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def converter_venv(venv: Path) -> Path:
    """focus-converter 1.0.0 in its own venv (made once, with uv when the project venv has it)."""
    executable = venv / "bin" / "focus-converter"
    if executable.exists():
        return executable
    uv = Path(sys.executable).parent / "uv"
    python = shutil.which("python3.11") or sys.executable
    if uv.exists():
        subprocess.run([str(uv), "venv", "--quiet", "--python", python, str(venv)], check=True)
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                *CONVERTER_PIN,
            ],
            check=True,
        )
    else:
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *CONVERTER_PIN], check=True)
    if not executable.exists():
        raise SystemExit(f"focus-converter did not install into {venv}")
    return executable


def pipeline_command() -> list[str]:
    dagster = Path(sys.executable).parent / "dagster"
    return [
        str(dagster),
        "job",
        "execute",
        "-m",
        "billing_pipeline.definitions",
        "-j",
        "billing_daily",
        "--tags",
        json.dumps({"dagster/partition": USAGE_DAY.isoformat()}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=COPIES)
    parser.add_argument("--sample", default=str(SAMPLE), help="the AWS sample export to replicate")
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--venv", default=None, help="focus-converter's venv (default: <out>/.fc-venv)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per side before its group is killed")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    work = out / "compare"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    converter = converter_venv(Path(args.venv).resolve() if args.venv else out / ".fc-venv")

    frame = replicated_sample(Path(args.sample), copies=args.copies)
    landing = work / "landing" / "cur" / REPORT
    write_legacy_delivery(frame, landing)
    plain_csv = work / "converter-input" / "cur.csv"
    plain_csv.parent.mkdir(parents=True)
    frame.write_csv(plain_csv)
    rows = frame.height
    del frame

    pairs = []
    for number in range(1, args.pairs + 1):
        lake = work / "lake"
        home = work / "dagster_home"
        converted = work / "converted"
        for stale in (lake, home, converted):
            shutil.rmtree(stale, ignore_errors=True)
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            DAGSTER_HOME=str(home),
            BILLING_CONFIG=str(bench_config(work / "billing.yaml", landing, lake)),
        )
        pipeline = run_with_timeout(pipeline_command(), args.timeout, env, work / f"pipeline-{number}.log")
        if pipeline.returncode:
            raise SystemExit(
                f"billing_daily failed (exit {pipeline.returncode}): see {work / f'pipeline-{number}.log'}"
            )
        command = [
            str(converter),
            "convert",
            "--provider",
            "aws-cur",
            "--data-format",
            "csv",
            "--data-path",
            str(plain_csv),
            "--export-path",
            str(converted),
            "--export-format",
            "parquet",
        ]
        focus_converter = run_with_timeout(command, args.timeout, log=work / f"converter-{number}.log")
        if focus_converter.returncode:
            raise SystemExit(
                f"focus-converter failed (exit {focus_converter.returncode}, timed out: {focus_converter.timed_out}): "
                f"see {work / f'converter-{number}.log'}"
            )
        pair = {"pipeline": asdict(pipeline), "focus_converter": asdict(focus_converter)}
        pair["ratio_time"] = round(focus_converter.seconds / pipeline.seconds, 2)
        pair["ratio_peak_rss"] = round(focus_converter.peak_rss_mib / pipeline.peak_rss_mib, 2)
        pair["load_average_1m"] = round(os.getloadavg()[0], 1)  # other work on the machine stretches both sides
        pairs.append(pair)
        print(
            f"pair {number}: pipeline {pipeline.seconds:.1f} s {pipeline.peak_rss_mib:,.0f} MiB | "
            f"focus-converter {focus_converter.seconds:.1f} s {focus_converter.peak_rss_mib:,.0f} MiB | "
            f"converter/pipeline time {pair['ratio_time']:.2f}x, memory {pair['ratio_peak_rss']:.2f}x "
            f"(load average {pair['load_average_1m']})",
            flush=True,
        )
    normalized_rows = _normalized_rows(work / "lake")
    report = {
        "rows": rows,
        "normalized_rows": normalized_rows,
        "usage_day": USAGE_DAY.isoformat(),
        "pairs": pairs,
        "median_ratio_time": statistics.median(p["ratio_time"] for p in pairs),
        "median_ratio_peak_rss": statistics.median(p["ratio_peak_rss"] for p in pairs),
    }
    print(
        f"\n{rows:,} rows ({normalized_rows:,} normalized): median converter/pipeline time "
        f"{report['median_ratio_time']:.2f}x (target >= 3), "
        f"peak memory {report['median_ratio_peak_rss']:.2f}x (target >= 5)"
    )
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    print(f"written {out / 'compare.json'}")
    return 0


def _normalized_rows(lake: Path) -> int:
    from billing_pipeline.platform.lake import slice_url

    return (
        pl.scan_parquet(slice_url(str(lake), "normalized_line_items", USAGE_DAY, SOURCE))
        .select(pl.len())
        .collect()
        .item()
    )


if __name__ == "__main__":
    raise SystemExit(main())
