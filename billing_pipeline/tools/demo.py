"""`make demo`: a clean month as a backfill of `billing_daily`, then named incidents and the checks they fail.

1. Generates a month of sample exports (five sources) into `data/landing` without the generator's
   deliberate faults (its spend spikes off, its re-sends held out: files delivered twice, repeated
   rows), so that the month is clean.
2. Loads the code location from `workspace.yaml`, as `dagster dev` does, and launches the month as a
   backfill of `billing_daily` on the instance in `$DAGSTER_HOME`: every run carries the code
   location's origin, so it shows on the job's page, its Runs tab and the Overview timeline. The runs
   execute one after the other in this process (no daemon, one day at a time on a small machine).
3. Prints every check's verdict: the clean month passes all of them.
4. Injects three named incidents into the landing zone (a file delivered twice, a drifted file, a
   shrunk restatement), finds the days they change with the late-arrival sensor's own scan, re-runs
   those days as one backfill per incident, and prints which checks each failed and why. Last, it
   prints what the UI shows: the latest verdict of every check and partition, red exactly where an
   incident is.
5. Materializes `billing_monthly` for the month (chargeback, unit costs, budget forecast, dashboards) and
   ends with the paths of the three dashboards and the chargeback CSV.

Usage: python -m billing_pipeline.tools.demo [--config billing.yaml] [--month 2026-10] [--seed 7] [--no-incidents]
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from billing_pipeline.platform.config import CONFIG_ENV_VAR, BillingConfig, SourceConfig, load_config
from billing_pipeline.views.names import MONTHLY_JOB

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"
INCIDENT_TAG = "billing/incident"
DEMO_TAG = "billing/demo"

# The instance `make demo` writes to $DAGSTER_HOME/dagster.yaml: Dagster's SQLite storage in that folder (its
# event log keeping one SQLAlchemy engine per database and the index database's connection open,
# `platform/instance_storage.py`), plus run monitoring, so that a run whose process died (the demo or
# `dagster dev` killed with SIGKILL) does not stay STARTED forever. Same settings as deploy/dagster.local.yaml.
DEMO_INSTANCE_MARK = "# Written by billing_pipeline/tools/demo.py"
LEGACY_DEMO_INSTANCE_MARK = "# Written by billing_pipeline/demo.py"  # before the demo moved to tools/
DEMO_INSTANCE_YAML = f"""\
{DEMO_INSTANCE_MARK}: `make demo` rewrites this file while this line is here (delete it to keep edits).
# Storage: Dagster's SQLite files in this folder (the default layout), its event log keeping one SQLAlchemy
# engine per database file instead of one per write, and the index database's connection open
# (billing_pipeline/platform/instance_storage.py).
storage:
  custom:
    module: billing_pipeline.platform.instance_storage
    class: SqliteStorageKeptEngines
    config:
      base_dir: {{home}}

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
  free_slots_after_run_end_seconds: 60   # a dead run's concurrency slot is freed (deploy/dagster.local.yaml)
"""


def demo_instance_yaml(home: Path) -> str:
    """The demo's `dagster.yaml` for the instance in `home` (the storage's folder written out, so the instance
    also opens from its folder alone, `DagsterInstance.from_config(home)`, with no DAGSTER_HOME set)."""
    return DEMO_INSTANCE_YAML.format(home=json.dumps(str(home.resolve())))


def write_instance_config(home: Path) -> Path:
    """Write the demo's `dagster.yaml` into `home`, unless a user's own (non-empty, not ours) is there."""
    path = home / "dagster.yaml"
    current = path.read_text() if path.exists() else ""
    if not current.strip() or current.startswith((DEMO_INSTANCE_MARK, LEGACY_DEMO_INSTANCE_MARK)):
        path.write_text(demo_instance_yaml(home))
    elif "run_monitoring" not in current:
        print(
            f"note: {path} is yours and has no run_monitoring: runs whose process died stay STARTED "
            "(see README, 'Running in production')",
            file=sys.stderr,
        )
    return path


def is_demo_instance(home: Path) -> bool:
    """The instance's `dagster.yaml` is the demo's own (so the demo may reset its runs)."""
    path = home / "dagster.yaml"
    return path.exists() and path.read_text().startswith((DEMO_INSTANCE_MARK, LEGACY_DEMO_INSTANCE_MARK))


def _month_days(month: str) -> list[dt.date]:
    year, number = (int(part) for part in month.split("-"))
    return [dt.date(year, number, day) for day in range(1, calendar.monthrange(year, number)[1] + 1)]


# ---- the clean month ----------------------------------------------------------------------------------------


def _is_manifest(path: Path) -> bool:
    return path.name.lower().endswith("manifest.json")


def _keep_mtime(path: Path, write: Callable[[], None]) -> None:
    """Rewrite a file in place with its modification time kept (some providers date deliveries by it)."""
    stat = path.stat()
    write()
    os.utime(path, (stat.st_atime, stat.st_mtime))


def _drop_from_manifests(removed: Path, stop: Path) -> None:
    """Remove a data file from the manifests that list it (its folder's and the folder above, up to `stop`)."""
    folders = [removed.parent] + ([removed.parent.parent] if removed.parent != stop else [])
    for manifest in (m for folder in folders for m in folder.iterdir() if m.is_file() and _is_manifest(m)):
        document = json.loads(manifest.read_text())
        changed = False
        for key in ("reportKeys", "dataFiles"):  # legacy CUR, Data Exports
            if isinstance(document.get(key), list):
                kept = [k for k in document[key] if str(k).rsplit("/", 1)[-1] != removed.name]
                changed |= len(kept) != len(document[key])
                document[key] = kept
        if isinstance(document.get("blobs"), list):  # Azure Cost Management
            blobs = [b for b in document["blobs"] if str(b.get("blobName", "")).rsplit("/", 1)[-1] != removed.name]
            if len(blobs) != len(document["blobs"]):
                changed = True
                document["blobs"] = blobs
                document["blobCount"] = len(blobs)
                document["byteCount"] = sum(int(b.get("byteCount") or 0) for b in blobs)
                document["dataRowCount"] = sum(int(b.get("dataRowCount") or 0) for b in blobs)
        if changed:
            _keep_mtime(manifest, lambda m=manifest, d=document: m.write_text(json.dumps(d, indent=2) + "\n"))


def _drop_repeated_cur2_rows(path: Path) -> int:
    """Rewrite a CUR 2.0 Parquet file without the later copies of a (line item id, time interval)."""
    import polars as pl
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    keys = ["identity_line_item_id", "identity_time_interval"]
    if not set(keys) <= set(table.column_names):
        return 0
    ids = pl.from_arrow(table.select(keys))
    first = ids.with_row_index("row").group_by(keys).agg(pl.col("row").min())["row"]
    if len(first) == table.num_rows:
        return 0
    kept = table.take(sorted(first.to_list()))
    _keep_mtime(path, lambda: pq.write_table(kept, path, compression="snappy"))
    return table.num_rows - kept.num_rows


def hold_out_resends(landing: Path) -> list[str]:
    """Make the generated month clean: remove the generator's deliberate re-sends, say what was removed.

    The generator ships, on purpose, a legacy CUR data file twice, an Azure blob twice, a GCP window
    pulled twice (byte-identical files) and five CUR 2.0 rows twice (`make test` checks that the
    pipeline drops them). Here the second copy of each file is deleted and taken out of the manifests
    that list it, and repeated CUR 2.0 rows are removed; the "file delivered twice" incident then
    shows what such a re-send does.
    """
    notes: list[str] = []
    for source_root in sorted(p for p in landing.iterdir() if p.is_dir()):
        for folder in sorted({p.parent for p in source_root.rglob("*") if p.is_file()}):
            seen: dict[str, Path] = {}
            files = [p for p in folder.iterdir() if p.is_file() and not _is_manifest(p)]
            for path in sorted(files, key=lambda p: (p.stat().st_mtime, p.name)):  # the first delivered is kept
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest not in seen:
                    seen[digest] = path
                    continue
                _drop_from_manifests(path, source_root)
                path.unlink()
                notes.append(f"{path.relative_to(landing)} (a copy of {seen[digest].name})")
        for path in sorted(source_root.rglob("*.parquet")) if source_root.name == "aws_cur2" else []:
            repeated = _drop_repeated_cur2_rows(path)
            if repeated:
                notes.append(f"{repeated} repeated line items in {path.relative_to(landing)}")
    return notes


@contextmanager
def _without_spend_spikes() -> Iterator[None]:
    """The generator multiplies one service's spend on one day of each AWS organisation and FOCUS vendor by
    `SPIKE_FACTOR` (a cost anomaly for M8 to find, listed in its ground truth); the clean month has none."""
    from billing_pipeline.tools.generator import aws, focus

    saved = (aws.SPIKE_FACTOR, focus.SPIKE_FACTOR)
    aws.SPIKE_FACTOR = focus.SPIKE_FACTOR = 1.0
    try:
        yield
    finally:
        aws.SPIKE_FACTOR, focus.SPIKE_FACTOR = saved


def generate_clean_month(
    landing: Path,
    month: str,
    seed: int,
    rows_per_day: int,
    days: int | None = None,
    providers: Sequence[str] | None = None,
) -> list[str]:
    """Generate the sample exports into `landing` (replaced) without the generator's deliberate faults.

    Its spend spikes are turned off and its re-sends held out (`hold_out_resends`); returns what was held.
    """
    from billing_pipeline.tools.generator import generate_landing_zone
    from billing_pipeline.tools.generator.landing import DEFAULT_PROVIDERS

    shutil.rmtree(landing, ignore_errors=True)
    with _without_spend_spikes():
        generate_landing_zone(
            landing,
            month=month,
            seed=seed,
            rows_per_day=rows_per_day,
            days=days,
            providers=tuple(providers or DEFAULT_PROVIDERS),
        )
    return hold_out_resends(landing)


# ---- launching billing_daily through the instance --------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """One check evaluation of one partition, as the instance recorded it."""

    day: str
    asset: str
    check: str
    passed: bool
    severity: str
    description: str
    sources: tuple[str, ...]
    run_id: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.day, self.asset, self.check)

    def line(self) -> str:
        where = ", ".join(self.sources) or "all sources"
        return f"{self.day}  {self.check} [{self.severity}] ({where}): {self.description}"


@dataclass
class RunOutcome:
    """One run of `billing_daily` for one day."""

    day: str
    run_id: str
    success: bool
    seconds: float
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]


def _named_sources(text: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text))


def check_outcomes(instance: Any, run_id: str, day: str, source_names: Sequence[str]) -> list[CheckOutcome]:
    """The check evaluations a run recorded (the UI shows the same ones)."""
    from dagster import DagsterEventType

    outcomes = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.event_specific_data
        description = " ".join((data.description or "").split())
        outcomes.append(
            CheckOutcome(
                day=data.partition or day,
                asset=data.asset_key.to_user_string(),
                check=data.check_name,
                passed=bool(data.passed),
                severity=data.severity.value,
                description=description,
                sources=_named_sources(description, source_names),
                run_id=run_id,
            )
        )
    return sorted(outcomes, key=lambda c: (c.day, c.asset, c.check))


def latest_check_outcomes(instance: Any, source_names: Sequence[str]) -> dict[tuple[str, str, str], CheckOutcome]:
    """The latest evaluation of every (partition, asset, check) over every `billing_daily` run: what the UI shows."""
    from dagster import RunsFilter

    from billing_pipeline.definitions import JOB_NAME

    latest: dict[tuple[str, str, str], CheckOutcome] = {}
    for run in reversed(instance.get_runs(filters=RunsFilter(job_name=JOB_NAME))):  # oldest first
        day = run.tags.get("dagster/partition", "")
        for outcome in check_outcomes(instance, run.run_id, day, source_names):
            latest[outcome.key] = outcome
    return latest


class BillingDailyLauncher:
    """Backfills of `billing_daily` whose runs carry the workspace's origin, executed here one at a time.

    The same steps as `dagster job backfill -w workspace.yaml -j billing_daily`: a backfill record,
    one run per partition created from the code location's remote job (so `remote_job_origin` and
    the repository tag are set, as for a run launched from the UI), each run executed by Dagster's run
    worker code (`core_execute_run`, as `dagster api execute_run` does) in this process rather than
    in a subprocess per run, which needs no daemon and keeps a 2-core machine to one day at a time.
    """

    def __init__(
        self,
        instance: Any,
        request_context: Any,
        location: Any,
        repository: Any,
        job: Any,
        partition_set: Any,
        source_names: Sequence[str],
    ) -> None:
        self.instance = instance
        self.request_context = request_context
        self.location = location
        self.repository = repository
        self.job = job
        self.partition_set = partition_set
        self.source_names = list(source_names)

    def partition_keys(self) -> list[str]:
        from dagster._core.remote_representation.external_data import PartitionNamesSnap

        names = self.request_context.get_partition_names(
            repository_selector=self.repository.selector,
            job_name=self.job.name,
            instance=self.instance,
            selected_asset_keys=None,
        )
        if not isinstance(names, PartitionNamesSnap):
            raise RuntimeError(f"cannot list the partitions of {self.job.name}: {names}")
        return list(names.partition_names)

    def backfill(
        self,
        days: Sequence[dt.date | str],
        title: str,
        tags: dict[str, str] | None = None,
        report: Callable[[RunOutcome], None] | None = None,
    ) -> tuple[str, list[RunOutcome]]:
        """Create a backfill of `days` and execute its runs in order; returns its id and the outcomes."""
        from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
        from dagster._core.remote_representation.external_data import PartitionSetExecutionParamSnap
        from dagster._core.utils import make_new_backfill_id
        from dagster._time import get_current_timestamp

        keys = [d.isoformat() if isinstance(d, dt.date) else d for d in days]
        unknown = sorted(set(keys) - set(self.partition_keys()))
        if unknown:
            raise ValueError(f"{self.job.name} has no partition(s) {unknown} (see start_date / end_date)")
        backfill = PartitionBackfill(
            backfill_id=make_new_backfill_id(),
            partition_set_origin=self.partition_set.get_remote_origin(),
            status=BulkActionStatus.REQUESTED,
            partition_names=keys,
            from_failure=False,
            reexecution_steps=None,
            tags=dict(tags or {}),
            backfill_timestamp=get_current_timestamp(),
            title=title,
        )
        params = self.location.get_partition_set_execution_params(
            repository_handle=self.repository.handle,
            partition_set_name=self.partition_set.name,
            partition_names=keys,
            instance=self.instance,
        )
        if not isinstance(params, PartitionSetExecutionParamSnap):
            raise RuntimeError(f"cannot build the runs of the backfill: {params}")
        outcomes = []
        with self._runs_created_ahead(backfill, sorted(params.partition_data, key=lambda d: d.name)) as created:
            for data, run in created:
                if run is None:
                    continue
                if not outcomes:  # in the UI's Backfills tab from its first run on; recorded as `dagster job
                    # backfill` records it once its runs are submitted, so that a daemon does not submit them again
                    self.instance.add_backfill(backfill.with_status(BulkActionStatus.COMPLETED))
                outcome = self.execute(run, data.name)
                outcomes.append(outcome)
                if report:
                    report(outcome)
        final = (
            BulkActionStatus.COMPLETED_SUCCESS
            if all(o.success for o in outcomes)
            else BulkActionStatus.COMPLETED_FAILED
        )
        if outcomes:
            self.instance.update_backfill(backfill.with_status(final).with_end_timestamp(get_current_timestamp()))
        return backfill.backfill_id, outcomes

    @contextmanager
    def _runs_created_ahead(self, backfill: Any, partition_data: Sequence[Any]) -> Iterator[Iterator[tuple[Any, Any]]]:
        """(partition data, its created run) in order, each next run created in a thread while the current one
        executes.

        Creating a run is mostly SQLite commits of the instance (its snapshots and one planned event per
        asset and per check: 38 of a demo day's entries), which wait on the disk, not on Python. The thread
        uses its own instance object, because an instance's SQLite event storage lets one thread at a time
        hold a connection; creating a run reads and writes only the instance, never the lake, so the
        days still execute one after the other and see each other's results as before. At most one run
        waits, not started, while another executes."""
        from dagster import DagsterInstance
        from dagster._core.execution.job_backfill import create_backfill_run

        def create(instance: Any, data: Any) -> tuple[Any, Any]:
            # console logging off for the runs (the event log keeps everything)
            run_config = {**data.run_config, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
            run = create_backfill_run(
                self.request_context,
                instance,
                self.location,
                self.job,
                self.partition_set,
                backfill,
                data.name,
                data.tags,
                run_config,
            )
            return data, run

        def in_order(instance: Any, pool: ThreadPoolExecutor) -> Iterator[tuple[Any, Any]]:
            pending = [pool.submit(create, instance, data) for data in partition_data[:1]]
            for data in partition_data[1:]:
                created = pending.pop().result()
                pending.append(pool.submit(create, instance, data))  # created while `created` executes
                yield created
            if pending:
                yield pending.pop().result()

        if self.instance.is_ephemeral:  # in memory: nothing to wait on, and no second object of it
            with ThreadPoolExecutor(1) as pool:
                yield in_order(self.instance, pool)
            return
        with DagsterInstance.from_ref(self.instance.get_ref()) as creating, ThreadPoolExecutor(1) as pool:
            yield in_order(creating, pool)

    def execute(self, run: Any, day: str) -> RunOutcome:
        """Execute one created run to its end in this process, as a run worker would."""
        from dagster import DagsterRunStatus
        from dagster._grpc.impl import core_execute_run
        from dagster._utils.hosted_user_process import recon_job_from_origin

        started = time.perf_counter()
        self.instance.report_engine_event(f"Executing in the demo's process (pid {os.getpid()}).", run)
        try:
            for _event in core_execute_run(
                recon_job_from_origin(run.job_code_origin), run, self.instance, inject_env_vars=False
            ):
                pass
        except Exception:  # noqa: BLE001 - core_execute_run has recorded the failure in the run's log
            pass
        finished = self.instance.get_run_by_id(run.run_id)
        return RunOutcome(
            day=day,
            run_id=run.run_id,
            success=finished.status == DagsterRunStatus.SUCCESS,
            seconds=time.perf_counter() - started,
            checks=check_outcomes(self.instance, run.run_id, day, self.source_names),
        )


def _current_definitions() -> None:
    """Runs execute in this process from the code location's module, whose `defs` were built when it was
    first imported, from `BILLING_CONFIG` then: rebuild them if the variable changed since (the code
    location's server process was started with the current value)."""
    import importlib

    import billing_pipeline.definitions as module

    wanted = str(Path(os.environ.get(CONFIG_ENV_VAR) or "billing.yaml").resolve())
    if module.defs.resources["billing"].config_path != wanted:
        importlib.reload(module)


@contextmanager
def billing_daily_launcher(
    instance: Any, config: BillingConfig, workspace_file: Path = WORKSPACE_FILE
) -> Iterator[BillingDailyLauncher]:
    """Load the workspace (the code location `dagster dev` loads) and find `billing_daily` in it.

    The code location's server process reads `BILLING_CONFIG` from this process's environment.
    """
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from billing_pipeline.definitions import JOB_NAME

    _current_definitions()
    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    with WorkspaceProcessContext(instance, target, code_server_log_level="WARNING") as process_context:
        request_context = process_context.create_request_context()
        errors = [e.to_string() for e in request_context.code_location_errors()]
        for location in request_context.code_locations:
            for repository in location.get_repositories().values():
                if not repository.has_job(JOB_NAME):
                    continue
                job = repository.get_full_job(JOB_NAME)
                partition_set = next(ps for ps in repository.get_partition_sets() if ps.job_name == JOB_NAME)
                yield BillingDailyLauncher(
                    instance,
                    request_context,
                    location,
                    repository,
                    job,
                    partition_set,
                    [s.name for s in config.sources],
                )
                return
        raise RuntimeError(
            f"no code location of {workspace_file} has the job {JOB_NAME}"
            + (":\n" + "\n".join(errors) if errors else "")
        )


def alert_router(config: BillingConfig, instance: Any) -> Callable[[RunOutcome], list[str]]:
    """Route a finished run's alerts as the daemon's run status sensors would (`alerts.route_finished_run`)."""
    from billing_pipeline.observability.alerts import route_finished_run

    def route(outcome: RunOutcome) -> list[str]:
        if not (config.alerts.ticket or config.alerts.page):
            return []
        report = route_finished_run(instance.get_run_by_id(outcome.run_id), config, instance)
        notes = [f"alert sent: {a.title}" for a in report.sent] + [f"resolved: {r}" for r in report.resolved]
        return (
            notes
            + [f"alert not delivered: {e}" for e in report.errors]
            + ([report.undelivered] if report.pending else [])
        )

    return route


def print_run(outcome: RunOutcome) -> None:
    failed = outcome.failed_checks
    verdict = (
        f"{len(outcome.checks)} checks passed"
        if not failed
        else f"{len(failed)} of {len(outcome.checks)} checks failed: {', '.join(c.check for c in failed)}"
    )
    print(
        f"  {outcome.day}  {'ok    ' if outcome.success else 'FAILED'}  {outcome.seconds:5.1f} s  "
        f"run {outcome.run_id[:8]}  {verdict}",
        flush=True,
    )


# ---- incidents ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """A named fault written into the landing zone the way a provider would deliver it."""

    name: str
    provider: str  # which configured source it hits (the first of this provider)
    day: dt.date
    what: str  # one line, shown before its runs
    expected: tuple[str, ...]  # the checks it exists to fail (shown, and asserted by the tests)
    inject: Callable[[SourceConfig, dt.date], list[Path]]


def _gcp_files_by_day(root: Path) -> dict[Path, set[dt.date]]:
    import polars as pl

    from billing_pipeline.adapters.gcp import is_json, read_gcp_file

    files = sorted(p for p in root.rglob("*") if p.is_file() and (is_json(p.name) or p.name.endswith(".parquet")))
    return {
        p: set(read_gcp_file(p).select(pl.col("usage_start_time").dt.date().unique()).collect().to_series())
        for p in files
    }


def resend_gcp_day(source: SourceConfig, day: dt.date) -> list[Path]:
    """GCP exports the day's appends a second time under new names (a window pulled twice)."""
    written = []
    for path, days in _gcp_files_by_day(Path(source.url)).items():
        if days == {day}:
            stem, _, suffix = path.name.partition(".")
            copy = path.with_name(f"{stem}-resent.{suffix}")
            shutil.copyfile(path, copy)
            later = path.stat().st_mtime + 86_400
            os.utime(copy, (later, later))
            written.append(copy)
    return written


def drift_gcp_append(source: SourceConfig, day: dt.date, rows: int = 20) -> list[Path]:
    """A late GCP append for the day exported without its `cost` column (a breaking schema change).

    The column is left out rather than renamed: a new column name would change the columns of the
    whole delivery, and with them every day's fingerprint; a missing one changes only this day's rows.
    """
    import polars as pl

    from billing_pipeline.adapters.gcp import SCHEMA, read_gcp_file

    root = Path(source.url)
    path = next(p for p, days in _gcp_files_by_day(root).items() if days == {day})
    frame = read_gcp_file(path).collect().head(rows).select(list(SCHEMA))
    exported = frame["export_time"].max() + dt.timedelta(days=3)
    frame = frame.with_columns(pl.lit(exported).cast(frame.schema["export_time"]).alias("export_time"))
    target = root / f"export_date={exported:%Y-%m-%d}" / f"late-append-{exported:%Y%m%dT%H%M%S}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.drop("cost").write_parquet(target)
    os.utime(target, (exported.timestamp(), exported.timestamp()))
    return [target]


def shrink_data_export(source: SourceConfig, day: dt.date, keep_every: int = 5) -> list[Path]:
    """A new Data Exports delivery (CUR 2.0) of the month in which the day lost 80 % of its line items."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(source.url)
    period = f"BILLING_PERIOD={day:%Y-%m}"
    manifests = sorted(
        root.glob(f"metadata/{period}/*/*-Manifest.json"), key=lambda m: json.loads(m.read_text())["exportTime"]
    )
    current = json.loads(manifests[-1].read_text())
    execution_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{current['executionId']}/shrunk/{day}"))
    exported = dt.datetime.fromisoformat(current["exportTime"].replace("Z", "+00:00")) + dt.timedelta(days=1)
    written, data_files = [], []
    for url in current["dataFiles"]:
        relative = url.split(f"/data/{period}/", 1)[1].split("/", 1)[1]
        table = pq.read_table(root / "data" / period / current["executionId"] / relative)
        on_day = pc.equal(pc.cast(table["line_item_usage_start_date"], pa.date32()), pa.scalar(day, pa.date32()))
        index = pa.array([i % keep_every == 0 for i in range(table.num_rows)])
        table = table.filter(pc.or_(pc.invert(on_day), index))
        target = root / "data" / period / execution_id / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, compression="snappy")
        data_files.append(url.replace(current["executionId"], execution_id))
        written.append(target)
    manifest = root / "metadata" / period / execution_id / manifests[-1].name
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            current
            | {
                "executionId": execution_id,
                "dataFiles": data_files,
                "exportTime": exported.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            },
            indent=2,
        )
        + "\n"
    )
    for path in [*written, manifest]:
        os.utime(path, (exported.timestamp(), exported.timestamp()))
    return [*written, manifest]


def demo_incidents(month: str) -> list[Incident]:
    """The three incidents `make demo` injects, on days apart from each other and from the month's edges."""
    year, number = (int(part) for part in month.split("-"))
    return [
        Incident(
            "file-delivered-twice",
            "gcp",
            dt.date(year, number, 21),
            "GCP's billing export re-exports the day's appends under new file names (a window pulled twice)",
            ("contract_duplicates", "sli_duplicate_rate", "slo_budget_duplicate_rate"),
            resend_gcp_day,
        ),
        Incident(
            "drifted-file",
            "gcp",
            dt.date(year, number, 24),
            "a late GCP append arrives without its `cost` column (a breaking schema change)",
            (
                "contract_schema",
                "publish_guard",
                "sli_export_success_rate",
                "slo_budget_schema_failures",
                "slo_budget_export_success_rate",
            ),
            drift_gcp_append,
        ),
        Incident(
            "shrunk-restatement",
            "aws_cur2",
            dt.date(year, number, 27),
            "CUR 2.0 re-delivers the month, and the day has lost 80 % of its line items",
            (
                "publish_guard",
                "sli_export_success_rate",
                "sli_backfill_backlog",
                "slo_budget_export_success_rate",
                "slo_budget_backfill_backlog",
            ),
            shrink_data_export,
        ),
    ]


def incident_source(config: BillingConfig, incident: Incident) -> SourceConfig:
    return next(s for s in config.sources if s.provider == incident.provider)


def changed_days(config: BillingConfig, source: SourceConfig, as_of: dt.datetime) -> list[dt.date]:
    """The days whose content changed, for which the source's late-arrival sensor would request `billing_daily`
    now (its scan, from an empty cursor). Its request for the period's latest reconciled day
    (`reconciliation_deltas` alone, to refresh the month to date) is not replayed by the demo."""
    from billing_pipeline.defs.sensors import TRIGGER_TAG, scan_source

    scan = scan_source(config.store(), config, source, {}, as_of, lambda _key: True)
    return sorted({r.day for r in scan.requests if r.tags[TRIGGER_TAG] == "late_arrival"})


@dataclass
class IncidentOutcome:
    incident: Incident
    source: str
    files: list[Path]
    days: list[dt.date]
    backfill_id: str
    runs: list[RunOutcome]

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for r in self.runs for c in r.failed_checks]


def run_incident(
    launcher: BillingDailyLauncher,
    config: BillingConfig,
    incident: Incident,
    as_of: dt.datetime,
    report: Callable[[RunOutcome], None] | None = None,
) -> IncidentOutcome:
    """Inject the incident, find the days it changed as the sensor would, re-run them as a backfill."""
    source = incident_source(config, incident)
    files = incident.inject(source, incident.day)
    partitions = set(launcher.partition_keys())
    days = [d for d in changed_days(config, source, as_of) if d.isoformat() in partitions]
    days = days or [incident.day]  # a delivery the sensor cannot fingerprint is still re-run on its day
    backfill_id, runs = launcher.backfill(
        days,
        title=f"incident: {incident.name}",
        tags={INCIDENT_TAG: incident.name, DEMO_TAG: "incident"},
        report=report,
    )
    return IncidentOutcome(incident, source.name, files, days, backfill_id, runs)


# ---- output --------------------------------------------------------------------------------------------------


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


def clean_month_summary(outcomes: list[RunOutcome]) -> str:
    checks = {(c.asset, c.check) for o in outcomes for c in o.checks}
    evaluations = sum(len(o.checks) for o in outcomes)
    failed = [c for o in outcomes for c in o.failed_checks]
    head = f"Check summary, clean month: {len(outcomes)} days x {len(checks)} checks = {evaluations} evaluations, "
    if not failed:
        return head + "all passed."
    lines = [head + f"{len(failed)} FAILED:"] + [f"  {c.line()}" for c in failed]
    return "\n".join(lines)


def incident_report(number: int, outcome: IncidentOutcome) -> str:
    incident = outcome.incident
    lines = [
        f"{number}. {incident.name}: {incident.what}",
        f"   source {outcome.source}, usage day {incident.day}; wrote " + ", ".join(p.name for p in outcome.files),
        f"   the late-arrival scan finds changed day(s) {', '.join(d.isoformat() for d in outcome.days)}; "
        f"re-ran as backfill {outcome.backfill_id} (tag {INCIDENT_TAG}={incident.name})",
    ]
    failed = outcome.failed_checks
    names = {c.check for c in failed}
    verdict = (
        "as expected"
        if names == set(incident.expected)
        else (
            f"expected {', '.join(incident.expected)}"
            + (
                f"; did not fail {', '.join(sorted(set(incident.expected) - names))}"
                if set(incident.expected) - names
                else ""
            )
        )
    )
    lines.append(f"   failed {len(failed)} check(s), {verdict}:" if failed else f"   failed no check, {verdict}")
    lines += [f"     {c.line()}" for c in failed]
    lines += [f"   run {r.run_id[:8]} of {r.day} FAILED (see its log in the UI)" for r in outcome.runs if not r.success]
    return "\n".join(lines)


def ui_report(latest: dict[tuple[str, str, str], CheckOutcome], incidents: list[IncidentOutcome]) -> str:
    red = sorted((c for c in latest.values() if not c.passed), key=lambda c: c.key)
    from_incidents = {c.key for o in incidents for c in o.failed_checks}
    lines = [
        f"What the UI shows now (the latest verdict of each check per partition): {len(latest)} verdicts, "
        f"{len(red)} red"
        + (", each from an incident above:" if red and all(c.key in from_incidents for c in red) else ":")
    ]
    for c in red:
        marker = "" if c.key in from_incidents else "  <- not from an incident"
        lines.append(f"  {c.line()}{marker}")
    return "\n".join(lines)


def build_monthly_views(instance: Any, month: str) -> bool:
    """Materialize `billing_monthly` (chargeback, unit costs, budget forecast, dashboards) for the month on the
    demo's instance, from the code location's definitions; True when the run succeeded."""
    import billing_pipeline.definitions as location

    _current_definitions()
    job = location.defs.resolve_job_def(MONTHLY_JOB)
    key = f"{month}-01"
    print(f"\nMaterializing {MONTHLY_JOB} for {key} (statements, forecast, dashboards) ...", flush=True)
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=key,
        instance=instance,
        tags={DEMO_TAG: "monthly views"},
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    )
    state = "succeeded" if result.success else "FAILED"
    print(f"  run {result.run_id[:8]} {state} in {time.perf_counter() - started:.1f} s")
    return result.success


def dashboard_report(config: BillingConfig, month: str) -> str:
    """The paths of the month's three dashboards and the chargeback CSV (they open offline in a browser)."""
    from billing_pipeline.views.chargeback import report_csv_url
    from billing_pipeline.views.dashboards.publish import PAGES, page_url

    first = dt.date.fromisoformat(f"{month}-01")
    lines = [f"\nDashboards of {month} (self-contained HTML: open them offline in a browser) and the chargeback CSV:"]
    lines += [f"  {name + ':':<10} {page_url(config.lake_url, first, name)}" for name in PAGES]
    lines.append(f"  {'csv:':<10} {report_csv_url(config.lake_url, first)}")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.environ.get(CONFIG_ENV_VAR, "billing.yaml"))
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows-per-day", type=int, default=400)
    parser.add_argument("--landing", default="data/landing", help="where the sample exports are generated")
    parser.add_argument("--no-incidents", action="store_true", help="stop after the clean month")
    args = parser.parse_args(argv)

    from dagster import DagsterInstance

    config_path = Path(args.config).resolve()
    config = load_config(config_path)
    os.environ[CONFIG_ENV_VAR] = str(config_path)  # the code location's server reads the same file
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    write_instance_config(home)
    landing = Path(args.landing).resolve()
    print(f"Generating a month of sample exports ({args.month}, seed {args.seed}) into {landing}")
    held = generate_clean_month(landing, args.month, args.seed, args.rows_per_day)
    if held:
        print(
            "  the generator's spend spikes are off, and its deliberate re-sends held out of the clean month "
            "(incident 1 shows one):"
        )
        print("\n".join(f"    {note}" for note in held))
    if Path(config.lake_url).exists() and "://" not in config.lake_url:
        shutil.rmtree(config.lake_url)

    with DagsterInstance.get() as instance:
        if is_demo_instance(home):
            instance.wipe()  # the demo's own instance: last time's runs and verdicts go with the old lake
        print(f"Loading the code location from {WORKSPACE_FILE.name} (as `dagster dev` does), instance {home}")
        with billing_daily_launcher(instance, config) as launcher:
            month_days = [d.isoformat() for d in _month_days(args.month)]
            days = [d for d in launcher.partition_keys() if d in set(month_days)]
            missing = sorted(set(month_days) - set(days))
            if missing:
                print(
                    f"note: {len(missing)} day(s) of {args.month} are not partitions of billing_daily "
                    f"(start_date / end_date in {config_path.name}): {', '.join(missing)}",
                    file=sys.stderr,
                )
            route = alert_router(config, instance)

            def finished(outcome: RunOutcome, show: bool = True) -> None:
                if show:
                    print_run(outcome)
                for note in route(outcome):
                    print(f"    {note}", flush=True)

            print(f"Backfill of billing_daily, {days[0]} .. {days[-1]} ({len(days)} runs, one at a time):")
            backfill_id, outcomes = launcher.backfill(
                days, title=f"sample month {args.month}", tags={DEMO_TAG: "clean month"}, report=finished
            )
            print(f"  backfill {backfill_id}: {sum(o.success for o in outcomes)} of {len(outcomes)} runs succeeded")
            print()
            print(clean_month_summary(outcomes))
            if not (config.alerts.ticket or config.alerts.page):
                print(
                    "(No alert route in billing.yaml: with alerts.ticket / alerts.page set, the demo routes each "
                    "run's failed checks as the daemon's sensors do.)"
                )
            incidents: list[IncidentOutcome] = []
            if not args.no_incidents:
                as_of = dt.datetime.combine(
                    dt.date.fromisoformat(days[-1]) + dt.timedelta(days=7), dt.time(), tzinfo=dt.UTC
                )
                print("\nIncidents, each injected into the landing zone and its days re-run:")
                for number, incident in enumerate(demo_incidents(args.month), start=1):
                    if incident.day.isoformat() not in days:
                        continue
                    outcome = run_incident(launcher, config, incident, as_of, report=lambda o: finished(o, show=False))
                    incidents.append(outcome)
                    print(incident_report(number, outcome), flush=True)
                print()
                print(ui_report(latest_check_outcomes(instance, launcher.source_names), incidents))
            monthly_success = build_monthly_views(instance, args.month)
    failed = [o.day for o in outcomes if not o.success]
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
        f"  DAGSTER_HOME={home} BILLING_CONFIG={config_path} "
        ".venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000\n"
        "  then browse http://127.0.0.1:3000/jobs (billing_daily: its runs, backfills and partitions) and\n"
        "  http://127.0.0.1:3000/asset-groups (every day is a partition of the billing_spine group)"
    )
    print(dashboard_report(config, args.month))
    if not monthly_success:
        print(f"\nthe {MONTHLY_JOB} run of {args.month} failed (see its log in the UI)", file=sys.stderr)
        return 1
    if failed:
        print(f"\n{len(failed)} day(s) of the clean month failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
