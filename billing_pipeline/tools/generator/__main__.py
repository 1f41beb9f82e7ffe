"""CLI: ``python -m billing_pipeline.tools.generator --out DIR [--month 2026-10] [--seed 7] ...``.

Prints what was written and how long it took, so the same command doubles as a benchmark driver.
"""

from __future__ import annotations

import argparse
import sys
import time

from billing_pipeline.tools.generator._util import Month
from billing_pipeline.tools.generator.landing import DEFAULT_PROVIDERS, SOURCES, generate_landing_zone


def _providers(values: list[str] | None) -> list[str]:
    if not values:
        return list(DEFAULT_PROVIDERS)
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    bad = [p for p in out if p not in SOURCES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown provider(s) {bad}; choose from {list(SOURCES)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_pipeline.tools.generator",
        description="Generate a deterministic landing zone of sample billing exports.",
    )
    parser.add_argument("--out", required=True, help="landing zone directory to write into")
    parser.add_argument("--month", default="2026-10", help="billing period, YYYY-MM (default 2026-10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=400, help="line items per usage day and source")
    parser.add_argument("--days", type=int, default=None, help="truncate the month to its first N days")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PROVIDER",
        help=f"generate only these sources (repeat or comma-separate): {', '.join(SOURCES)}",
    )
    parser.add_argument("--rows-per-file", type=int, default=None, help="override the data file size")
    args = parser.parse_args(argv)
    try:
        providers = _providers(args.only)
        Month.parse(args.month, args.days)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    if args.rows_per_day < 1 or (args.rows_per_file is not None and args.rows_per_file < 1):
        parser.error("--rows-per-day and --rows-per-file must be at least 1")
    started = time.perf_counter()
    truth = generate_landing_zone(
        args.out,
        month=args.month,
        seed=args.seed,
        rows_per_day=args.rows_per_day,
        days=args.days,
        providers=providers,
        rows_per_file=args.rows_per_file,
    )
    elapsed = time.perf_counter() - started
    for d in truth.deliveries:
        print(
            f"{d.source:<16} delivery {d.number} {d.delivery_id} {d.export_time:%Y-%m-%dT%H:%M:%SZ} "
            f"days {d.days[0]:%d}..{d.days[-1]:%d} files {len(d.data_files)} rows {d.rows} "
            f"(duplicates {d.duplicate_rows}){' final' if d.final else ''}"
        )
    rows = int(truth.frame["rows"].sum()) if truth.frame.height else 0
    print(f"wrote {len(truth.paths)} files, {rows} distinct final rows, into {truth.out} in {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
