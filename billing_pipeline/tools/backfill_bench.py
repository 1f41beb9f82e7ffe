"""Backfill bench: what a backfill of `billing_daily` costs per day, and where a day's time goes.

Generates the demo's sample exports (its generator settings: five sources, 400 line items per day and
source, spend spikes off, re-sends held out) for `--days` days from `--start`, month by month, into
`<work>/landing` (kept and reused when the same settings ask for it again), writes a `billing.yaml` for
them, and runs the days as one backfill of `billing_daily` through a real Dagster instance on disk, the
way `make demo` does (`tools/demo.py`: the code location loaded from workspace.yaml, one run per day).

With `--one-run` the days run instead as one run, the way a backfill of the day's assets runs from the UI
or from `dagster asset materialize --partition-range FIRST...LAST` (their `BackfillPolicy.single_run`):
that very command, as a process of its own, on the same fresh instance and lake; it prints the run's
wall and CPU time, its peak memory and what its event log holds per day.

Otherwise it reads the instance's event log and prints, per run and in total: the run's wall time (and the
CPU time of this process, which other work on a shared machine disturbs less), the time inside its
steps (the spine, each check, the other assets) and what is left (Dagster's own work: starting the
run, planning, writing events). `--profile` runs the last day once more under cProfile and
prints where that (almost empty: every slice is reused) run spends its time: Dagster, the DuckDB view
refresh, the state and listing reads, the checks. Writes `<work>/backfill.json` (and `<work>/runs.jsonl`
as each run ends).

Usage: python -m billing_pipeline.tools.backfill_bench [--days 30] [--start 2025-11-01] [--rows-per-day 400]
           [--work bench_results/backfill] [--profile] [--one-run] [--instance-yaml dagster.yaml]
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from billing_pipeline.platform.config import CONFIG_ENV_VAR, load_config
from billing_pipeline.platform.names import DAY_ASSETS

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 7
DEMO_ROWS_PER_DAY = 400  # `make demo`'s default (tools/demo.py --rows-per-day)
SPINE_OP = "billing_spine_day"  # the day's assets and their checks in one step (defs/spine_layer.py)
# The functions whose cumulative time the profile reports, by what they are.
PROFILED = {
    "DuckDB view refresh": ("lake.py", "refresh_views"),
    "state reads": ("state.py", "read_state"),
    "state writes": ("state.py", "write_state"),
    "landing listings": ("raw.py", "list_deliveries"),
    "slice identities (stat)": ("layer_state.py", "slice_identity"),
    "slice schemas (metadata)": ("asset_metadata.py", "slice_schemas"),
    "checks (SLI functions)": ("checks.py", "evaluate"),
    "DuckDB views decision": ("lake_views.py", "refresh_views_if_tables_changed"),
    "Dagster event writes": ("/sql_event_log.py", "store_event"),  # Postgres / consolidated storage
    "Dagster event writes (SQLite)": ("sqlite_event_log.py", "store_event"),  # the default instance's
    "run creation (snapshots, planned events)": ("job_backfill.py", "create_backfill_run"),
}


@dataclass
class RunTiming:
    """One run's wall time and where it went, from the instance's event log."""

    day: str
    run_id: str
    success: bool
    seconds: float
    cpu_seconds: float  # this process's CPU time from the previous run's end (creating the run included)
    events: int  # entries the run wrote to the event log (each one a write to the instance's storage)
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def in_steps(self) -> float:
        return sum(self.steps.values())

    def grouped(self) -> dict[str, float]:
        """Seconds per kind of work: each spine asset, the checks, the other assets, Dagster's own."""
        groups: dict[str, float] = defaultdict(float)
        for step, seconds in self.steps.items():
            groups[step_group(step)] += seconds
        groups["dagster (outside steps)"] = max(self.seconds - self.in_steps, 0.0)
        return dict(groups)


def step_group(step_key: str) -> str:
    """A step's kind: the day's one step, else the step by name (none other in `billing_daily` today)."""
    return "the day's assets + their checks" if step_key == SPINE_OP else step_key


def months_of(start: dt.date, days: int) -> list[tuple[str, int]]:
    """(YYYY-MM, days of it) covering `days` days from `start` (the first of a month)."""
    if start.day != 1:
        raise ValueError(f"--start must be the first day of a month (the generator writes whole months), got {start}")
    out: list[tuple[str, int]] = []
    day, left = start, days
    while left > 0:
        length = calendar.monthrange(day.year, day.month)[1]
        out.append((day.strftime("%Y-%m"), min(length, left)))
        left -= length
        day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return out


def generate_landing(landing: Path, start: dt.date, days: int, rows_per_day: int) -> float:
    """The demo's clean sample exports for the days, month by month; reused when already there. Seconds spent."""
    from billing_pipeline.tools.demo import generate_clean_month

    marker = landing / "backfill_bench.json"
    wanted = {"start": start.isoformat(), "days": days, "rows_per_day": rows_per_day, "seed": SEED}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return 0.0
    started = time.perf_counter()
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    invoices: list[str] = []
    for month, month_days in months_of(start, days):
        part = landing.parent / f"landing-{month}"
        print(f"  generating {month} ({month_days} days)", flush=True)
        generate_clean_month(part, month, SEED, rows_per_day, days=month_days)
        lines = (part / "invoices" / "invoices.csv").read_text().splitlines()
        invoices.extend(lines if not invoices else lines[1:])  # one header
        shutil.rmtree(part / "invoices")
        (part / "ground_truth.csv").unlink(missing_ok=True)
        shutil.copytree(part, landing, dirs_exist_ok=True)  # every path below a source names its month
        shutil.rmtree(part)
    (landing / "invoices").mkdir()
    (landing / "invoices" / "invoices.csv").write_text("\n".join(invoices) + "\n")
    marker.write_text(json.dumps(wanted))
    return time.perf_counter() - started


def write_bench_config(work: Path, landing: Path, first: dt.date, last: dt.date) -> Path:
    """The repo's billing.yaml pointed at the generated landing zone and a fresh lake, over the bench's days."""
    config = yaml.safe_load((REPO_ROOT / "billing.yaml").read_text())
    for source in config["sources"]:
        relative = Path(source["url"]).relative_to("data/landing")
        source["url"] = str(landing / relative)
    config |= {
        "lake_url": str(work / "lake"),
        "invoices_url": str(landing / "invoices"),
        "start_date": first.isoformat(),
        "end_date": last.isoformat(),
    }
    path = work / "billing.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def sqlite_commits_without_fsync() -> Iterator[None]:
    """Every SQLite connection opened in this process meanwhile commits without waiting for the disk
    (`PRAGMA synchronous=NORMAL`: in WAL mode the log is synced at checkpoints only). Dagster's SQLite
    storage opens a connection per event, so this is set on each connect. A diagnostic of the bench
    only: a crash of the machine could lose the last commits of the instance."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def relax(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", relax)
    try:
        yield
    finally:
        event.remove(Engine, "connect", relax)


def step_seconds(instance: Any, run_id: str) -> tuple[dict[str, float], int]:
    """step key -> seconds from its STEP_START to its STEP_SUCCESS / STEP_FAILURE event; and how many
    entries the run's event log has."""
    from dagster import DagsterEventType

    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    ends = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    entries = instance.all_logs(run_id)
    for entry in entries:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in ends and event.step_key in started:
            seconds[event.step_key] = entry.timestamp - started[event.step_key]
    return seconds, len(entries)


def profile_run(launcher: Any, day: str) -> tuple[float, dict[str, float], str]:
    """Re-run `day` under cProfile: wall seconds, cumulative seconds of the `PROFILED` functions, top of the profile."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    launcher.backfill([day], title=f"backfill bench profile {day}")
    profiler.disable()
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    found: dict[str, float] = {}
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, (file_suffix, name) in PROFILED.items():
            if function == name and filename.endswith(file_suffix):
                found[label] = found.get(label, 0.0) + cumulative
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    return seconds, found, text.getvalue()


def summarize(timings: Sequence[RunTiming]) -> dict[str, float]:
    """Mean seconds per run of each kind of work, and of the whole run."""
    totals: dict[str, float] = defaultdict(float)
    for timing in timings:
        for group, seconds in timing.grouped().items():
            totals[group] += seconds
    count = max(len(timings), 1)
    return {
        "run": sum(t.seconds for t in timings) / count,
        "run (CPU of this process)": sum(t.cpu_seconds for t in timings) / count,
        "steps (count)": sum(len(t.steps) for t in timings) / count,
        "event log entries (count)": sum(t.events for t in timings) / count,
    } | {k: v / count for k, v in sorted(totals.items())}


def one_run_backfill(work: Path, home: Path, config_path: Path, first: dt.date, last: dt.date) -> dict[str, Any]:
    """The days as one run of `dagster asset materialize --partition-range`, a process of its own: its wall
    and CPU time and peak memory (its own and its children's), and what the instance recorded."""
    import resource
    import subprocess

    from dagster import AssetKey, DagsterInstance

    command = [
        str(Path(sys.executable).with_name("dagster")),
        *("asset", "materialize", "-m", "billing_pipeline.definitions"),
        *("--select", ",".join(DAY_ASSETS), "--partition-range", f"{first}...{last}"),
    ]
    env = os.environ | {"DAGSTER_HOME": str(home), CONFIG_ENV_VAR: str(config_path)}
    print("  " + " ".join(command[1:]), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with (work / "one_run.log").open("w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        events = instance.all_logs(runs[0].run_id) if runs else []
        kinds = defaultdict(int)
        for entry in events:
            kinds[entry.dagster_event.event_type_value if entry.dagster_event else "log"] += 1
        materialized = {(key, day) for key in DAY_ASSETS for day in instance.get_materialized_partitions(AssetKey(key))}
    days = (last - first).days + 1
    return {
        "command": " ".join(command[1:]),
        "returncode": completed.returncode,
        "runs": len(runs),
        "seconds": seconds,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_mib_children": after.ru_maxrss / 1024,
        "seconds_per_day": seconds / days,
        "extrapolated_365_days_minutes": seconds / days * 365 / 60,
        "event_log_entries": len(events),
        "event_log_entries_per_day": len(events) / days,
        "event_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "materialized_day_assets": len(materialized),
        "expected_day_assets": days * len(DAY_ASSETS),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 11, 1))
    parser.add_argument("--rows-per-day", type=int, default=DEMO_ROWS_PER_DAY)
    parser.add_argument("--work", type=Path, default=Path("bench_results/backfill"))
    parser.add_argument("--profile", action="store_true", help="re-run the last day under cProfile")
    parser.add_argument(
        "--one-run",
        action="store_true",
        help="the days as one run (dagster asset materialize --partition-range), not one run per day",
    )
    parser.add_argument(
        "--instance-yaml",
        type=Path,
        help="the instance's dagster.yaml instead of the demo's, e.g. one with Postgres storage as deploy/ "
        "recommends for production (its database should be empty: the run's events are counted from it)",
    )
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="diagnostic: the instance's SQLite commits in this process do not wait for the disk (PRAGMA "
        "synchronous=NORMAL), to measure how much of a day is waiting on it; never how the demo or a deployment runs",
    )
    args = parser.parse_args(argv)

    from dagster import DagsterInstance

    from billing_pipeline.tools.demo import billing_daily_launcher, write_instance_config

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    landing = work / "landing"
    first, last = args.start, args.start + dt.timedelta(days=args.days - 1)
    print(f"Sample exports {first} .. {last} ({args.days} days, 5 sources, {args.rows_per_day} rows/day/source)")
    generated = generate_landing(landing, first, args.days, args.rows_per_day)
    config_path = write_bench_config(work, landing, first, last)
    config = load_config(config_path)
    os.environ[CONFIG_ENV_VAR] = str(config_path)
    home = work / "dagster_home"
    for fresh in (home, work / "lake"):
        shutil.rmtree(fresh, ignore_errors=True)
    home.mkdir(parents=True)
    if args.instance_yaml:
        shutil.copy(args.instance_yaml, home / "dagster.yaml")
    else:
        write_instance_config(home)
    os.environ["DAGSTER_HOME"] = str(home)

    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(args.days)]
    if args.one_run:
        print(f"Backfill of {first} .. {last} ({len(days)} days) as one run", flush=True)
        outcome = one_run_backfill(work, home, config_path, first, last)
        outcome |= {"settings": {"days": args.days, "sources": len(config.sources), "rows": args.rows_per_day}}
        outcome["load_average_at_end"] = os.getloadavg()
        (work / "backfill_one_run.json").write_text(json.dumps(outcome, indent=1))
        print(json.dumps(outcome, indent=1))
        complete = outcome["materialized_day_assets"] == outcome["expected_day_assets"]
        return 0 if outcome["returncode"] == 0 and complete else 1
    timings: list[RunTiming] = []
    relaxed = sqlite_commits_without_fsync() if args.no_fsync else contextlib.nullcontext()
    with relaxed, DagsterInstance.get() as instance, billing_daily_launcher(instance, config) as launcher:
        print(f"Backfill of billing_daily, {days[0]} .. {days[-1]} ({len(days)} runs, one at a time)", flush=True)
        started = time.perf_counter()
        cpu_mark = [time.process_time()]
        progress = work / "runs.jsonl"
        progress.unlink(missing_ok=True)

        def finished(outcome: Any) -> None:
            cpu_now = time.process_time()
            steps, events = step_seconds(instance, outcome.run_id)
            timing = RunTiming(
                outcome.day, outcome.run_id, outcome.success, outcome.seconds, cpu_now - cpu_mark[0], events, steps
            )
            cpu_mark[0] = time.process_time()  # reading the event log above is the bench's, not the run's
            timings.append(timing)
            with progress.open("a") as lines:  # a long backfill can be read (or stopped) while it runs
                lines.write(json.dumps(asdict(timing) | {"at": time.perf_counter() - started}) + "\n")
            if len(timings) % 10 == 1 or not outcome.success:
                print(f"  {outcome.day} {'ok' if outcome.success else 'FAILED'} {outcome.seconds:5.2f} s", flush=True)

        launcher.backfill(days, title="backfill bench", report=finished)
        backfill_seconds = time.perf_counter() - started
        profile = None
        if args.profile:
            seconds, found, top = profile_run(launcher, days[-1])
            profile = {"day": days[-1], "seconds": seconds, "functions": found, "top": top}

    per_run = summarize(timings)
    failed = [t.day for t in timings if not t.success]
    rows = {"days": args.days, "sources": len(config.sources), "rows_per_day_per_source": args.rows_per_day}
    result = {
        "settings": rows | {"no_fsync": args.no_fsync},
        "load_average_at_end": os.getloadavg(),  # other work on the machine slows every number here
        "generated_seconds": generated,
        "backfill_seconds": backfill_seconds,
        "seconds_per_day": backfill_seconds / len(days),
        "extrapolated_365_days_minutes": backfill_seconds / len(days) * 365 / 60,
        "mean_per_run": per_run,
        "failed_days": failed,
        "runs": [asdict(t) for t in timings],
        "profile": profile,
    }
    (work / "backfill.json").write_text(json.dumps(result, indent=1))
    print(f"\n{len(days)} days in {backfill_seconds:.1f} s: {backfill_seconds / len(days):.2f} s per day")
    print(f"  365 days at this rate: {result['extrapolated_365_days_minutes']:.1f} min")
    print(f"  load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("Mean seconds per run:")
    for group, seconds in per_run.items():
        print(f"  {group:<28} {seconds:6.3f}")
    if profile:
        print(f"\nProfile of a re-run of {profile['day']} (every slice reused): {profile['seconds']:.2f} s")
        for label, seconds in sorted(profile["functions"].items(), key=lambda kv: -kv[1]):
            print(f"  {label:<28} {seconds:6.3f} s cumulative")
        print(profile["top"])
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
