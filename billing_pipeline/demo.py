"""`make demo`: generate a month of sample exports, materialize every day through `billing_daily`
on a Dagster instance on disk, and print what a FinOps engineer would look at first.

Usage: python -m billing_pipeline.demo [--config billing.yaml] [--month 2026-10] [--seed 7]
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

from billing_pipeline.config import CONFIG_ENV_VAR, load_config

# The instance `make demo` writes to $DAGSTER_HOME/dagster.yaml: Dagster's default SQLite storage under
# DAGSTER_HOME, plus run monitoring, so that a run whose process died (the demo or `dagster dev` killed
# with SIGKILL) does not stay STARTED forever. Same settings as deploy/dagster.local.yaml.
DEMO_INSTANCE_MARK = "# Written by billing_pipeline/demo.py"
DEMO_INSTANCE_YAML = f"""\
{DEMO_INSTANCE_MARK}: `make demo` rewrites this file while this line is here (delete it to keep edits).
# Storage: Dagster's default, SQLite files under $DAGSTER_HOME.

# Checked by the monitoring daemon, which `dagster dev` (or `dagster-daemon run`) starts. The local run
# launcher cannot ask whether a run's process is alive, so a run STARTED longer than max_runtime_seconds
# is failed (a day's run takes seconds to minutes); a run stuck STARTING or CANCELING after the timeouts.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 3600
  max_resume_run_attempts: 0   # the local run launcher cannot resume a run
  poll_interval_seconds: 60
"""


def write_instance_config(home: Path) -> Path:
    """Write the demo's `dagster.yaml` into `home`, unless a user's own (non-empty, not ours) is there."""
    path = home / "dagster.yaml"
    current = path.read_text() if path.exists() else ""
    if not current.strip() or current.startswith(DEMO_INSTANCE_MARK):
        path.write_text(DEMO_INSTANCE_YAML)
    elif "run_monitoring" not in current:
        print(f"note: {path} is yours and has no run_monitoring: runs whose process died stay STARTED "
              "(see README, 'Running in production')", file=sys.stderr)
    return path


def _month_days(month: str) -> list[dt.date]:
    year, number = (int(part) for part in month.split("-"))
    return [dt.date(year, number, day) for day in range(1, calendar.monthrange(year, number)[1] + 1)]


def materialize_days(config_path: Path, days: list[dt.date]) -> list[tuple[str, bool, float]]:
    """Run `billing_daily` once per day on the instance in `$DAGSTER_HOME`."""
    from dagster import DagsterInstance

    from billing_pipeline.definitions import JOB_NAME, build_definitions

    defs = build_definitions(config_path)
    job = defs.resolve_job_def(JOB_NAME)
    outcomes = []
    with DagsterInstance.get() as instance:
        for day in days:
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            elapsed = time.perf_counter() - started
            outcomes.append((day.isoformat(), result.success, elapsed))
            failed_checks = [
                f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
                for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
            ]
            note = f"  checks failed: {', '.join(sorted(failed_checks))}" if failed_checks else ""
            print(f"  {day}  {'ok ' if result.success else 'FAILED'}  {elapsed:5.1f}s{note}", flush=True)
    return outcomes


def summary(duckdb_file: str, month: str) -> str:
    """Spend by provider and team, percent unallocated and reconciliation status, from the lake's views."""
    connection = duckdb.connect(duckdb_file, read_only=True)
    out: list[str] = []
    try:
        start = f"{month}-01"
        by_provider = connection.execute(
            "SELECT x_Provider AS provider, x_Source AS source, round(sum(BilledCost), 2) AS billed, "
            "round(sum(EffectiveCost), 2) AS effective, count(*) AS line_items FROM normalized_line_items "
            "WHERE date >= CAST(? AS DATE) AND date < CAST(? AS DATE) + INTERVAL 1 MONTH "
            "GROUP BY ALL ORDER BY billed DESC",
            [start, start],
        ).fetchall()
        out.append(f"Spend by provider, {month} (BilledCost / EffectiveCost, billing currency):")
        for provider, source, billed, effective, count in by_provider:
            out.append(f"  {provider:<9} {source:<16} {billed:>14,.2f} {effective:>14,.2f}  {count:>8,} rows")
        by_team = connection.execute(
            "SELECT coalesce(team, '(unallocated)') AS team, round(sum(EffectiveCost), 2) AS effective "
            "FROM tag_enriched_costs WHERE date >= CAST(? AS DATE) AND date < CAST(? AS DATE) + INTERVAL 1 MONTH "
            "GROUP BY ALL ORDER BY effective DESC",
            [start, start],
        ).fetchall()
        out.append("Spend by team (EffectiveCost):")
        out += [f"  {team:<16} {effective:>14,.2f}" for team, effective in by_team]
        unallocated = connection.execute(
            "SELECT 100 * sum(CASE WHEN unallocated THEN BilledCost ELSE 0 END) / nullif(sum(BilledCost), 0) "
            "FROM tag_enriched_costs WHERE date >= CAST(? AS DATE) AND date < CAST(? AS DATE) + INTERVAL 1 MONTH",
            [start, start],
        ).fetchone()
        out.append(f"Unallocated spend: {float(unallocated[0] or 0):.1f}% of BilledCost")
        statuses = connection.execute(
            "SELECT source, BillingAccountId, BillingCurrency, month_to_date_total, invoice_amount, invoice_delta, "
            "status FROM reconciliation_deltas WHERE usage_date = (SELECT max(usage_date) FROM reconciliation_deltas "
            "WHERE usage_date < CAST(? AS DATE) + INTERVAL 1 MONTH) ORDER BY ALL",
            [start],
        ).fetchall()
        out.append("Reconciliation at month end (month-to-date vs invoice):")
        for source, account, currency, mtd, invoice, delta, status in statuses:
            out.append(
                f"  {source:<16} {account:<14} {currency} mtd {mtd:>12,.2f} invoice "
                f"{(invoice if invoice is not None else 0):>12,.2f} delta {(delta or 0):>8,.4f}  {status}"
            )
        breaks = connection.execute(
            "SELECT count(*) FROM reconciliation_deltas WHERE status = 'conservation_break'"
        ).fetchone()[0]
        out.append(f"Conservation breaks (raw != normalized + quarantined + duplicates): {breaks}")
    finally:
        connection.close()
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.environ.get(CONFIG_ENV_VAR, "billing.yaml"))
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--landing", default="data/landing", help="where the sample exports are generated")
    args = parser.parse_args(argv)

    from billing_pipeline.generator import generate_landing_zone

    config_path = Path(args.config).resolve()
    config = load_config(config_path)
    os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    write_instance_config(Path(os.environ["DAGSTER_HOME"]))
    landing = Path(args.landing).resolve()
    print(f"Generating a month of sample exports ({args.month}, seed {args.seed}) into {landing}")
    shutil.rmtree(landing, ignore_errors=True)
    generate_landing_zone(landing, month=args.month, seed=args.seed, rows_per_day=args.rows_per_day)
    if Path(config.lake_url).exists() and "://" not in config.lake_url:
        shutil.rmtree(config.lake_url)
    days = _month_days(args.month)
    print(f"Materializing billing_daily for {len(days)} days on the instance in {os.environ['DAGSTER_HOME']}")
    outcomes = materialize_days(config_path, days)
    failed = [day for day, ok, _ in outcomes if not ok]
    print()
    if config.duckdb_file:
        print(summary(config.duckdb_file, args.month))
        print(
            "\nQuery it yourself (views: normalized_line_items, tag_enriched_costs, reconciliation_deltas, ...):\n"
            f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{config.duckdb_file}', read_only=True)"
            ".sql('SELECT x_Provider, sum(BilledCost) FROM normalized_line_items GROUP BY 1'))\""
        )
    print(
        "\nOpen the Dagster UI on the same instance:\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} BILLING_CONFIG={config_path} "
        ".venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000\n"
        "  then browse http://127.0.0.1:3000/asset-groups (every day is a partition of the billing_spine group)"
    )
    if failed:
        print(f"\n{len(failed)} day(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
