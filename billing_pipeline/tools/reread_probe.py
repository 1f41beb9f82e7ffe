"""What one pass over raw -> normalized -> enriched could save at most: the re-reads of the written layers.

Each layer is built from the slice its upstream layer published: the normalized layer reads the raw
slice (a narrow decision pass, then the mapping of every kept row), the enriched layer reads the
normalized slice. A single polars plan from the delivery to three sinks would skip those reads, and
nothing else (the three slices are still written; dedup still needs its decision pass before the kept
rows are known). This times a full streaming read of each slice `make bench` left behind (`--keep`),
several times, best of: the upper bound of the saving, to set against the pipeline's own seconds.

Usage: python -m billing_pipeline.tools.bench --sizes 1000000 --out bench_results --keep
       python -m billing_pipeline.tools.reread_probe --lake bench_results/work/lake-1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import polars as pl

from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import NORMALIZED, RAW


def best_read_seconds(path: str, repeat: int) -> tuple[float, int, int]:
    """Best of `repeat` full streaming reads of every column: (seconds, rows, columns)."""
    best, frame = float("inf"), pl.DataFrame()
    for _ in range(repeat):
        started = time.perf_counter()
        frame = pl.scan_parquet(path).collect(engine="streaming")
        best = min(best, time.perf_counter() - started)
    return best, frame.height, frame.width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", type=Path, required=True, help="a lake `make bench --keep` left behind")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 10, 1), help="the bench's day")
    parser.add_argument("--source", default="bench_cur2", help="the bench's source name")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    total = 0.0
    for layer, reader in ((RAW, "normalized layer"), (NORMALIZED, "enriched layer")):
        path = slice_url(str(args.lake.resolve()), layer, args.day, args.source)
        seconds, rows, columns = best_read_seconds(path, args.repeat)
        total += seconds
        print(f"{layer}: {rows:,} rows x {columns} columns read in {seconds:.2f} s (re-read by the {reader})")
    print(f"at most {total:.2f} s a one-pass plan would not spend re-reading")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
