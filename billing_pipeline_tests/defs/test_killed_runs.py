"""A run killed with SIGKILL: the monitoring daemon configured by `make demo`'s dagster.yaml marks it
FAILURE instead of leaving it STARTED, and the scratch folder it left is removed once its process is gone
(never the folder of a live process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from billing_pipeline.platform.names import LAKE_POOL
from billing_pipeline.platform.storage import SCRATCH_MARK, pid_alive, remove_stale_scratch_dirs, scratch_dir
from billing_pipeline.tools.demo import write_instance_config

REPO = Path(__file__).resolve().parents[2]

# A run on the on-disk instance in $DAGSTER_HOME (as `make demo` runs them) that holds a scratch folder
# and writes its path to argv[1], then waits to be killed.
HOLDING_RUN = """
import sys, time
from pathlib import Path
from dagster import DagsterInstance, job, op
from billing_pipeline.platform.storage import scratch_dir

@op(pool="billing_lake")  # the pool of the day's step (deploy/: one at a time)
def hold() -> None:
    with scratch_dir() as workdir:
        Path(sys.argv[1]).write_text(str(workdir))
        time.sleep(300)

@job
def killed_job():
    hold()

with DagsterInstance.get() as instance:
    killed_job.execute_in_process(instance=instance)
"""


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid names no process now
    return child.pid


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_stale_scratch_dirs_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    assert not pid_alive(dead)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"billing-fp-{SCRATCH_MARK}{dead}-abc123_x"
        in_use = tmp_path / f"billing-{SCRATCH_MARK}{live.pid}-def456yz"
        mine = tmp_path / f"billing-{SCRATCH_MARK}{os.getpid()}-ghi789zz"
        unrelated = tmp_path / f"someone-elses-{dead}"
        for folder in (stale, in_use, mine, unrelated):
            (folder / "sub").mkdir(parents=True)
            (folder / "sub" / "part.parquet").write_bytes(b"x")
        (tmp_path / f"billing-{SCRATCH_MARK}{dead}-file0000").write_text("a file, not a scratch folder")

        assert remove_stale_scratch_dirs(tmp_path) == [stale]
        assert not stale.exists()
        assert in_use.exists() and mine.exists() and unrelated.exists()
        assert (tmp_path / f"billing-{SCRATCH_MARK}{dead}-file0000").exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_scratch_dirs(tmp_path) == [in_use]  # its process has ended now


def test_scratch_dir_names_its_owner_and_sweeps_once_per_process(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from billing_pipeline.platform import storage

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"billing-{SCRATCH_MARK}{_dead_pid()}-abcdefgh"
    stale.mkdir()
    monkeypatch.setattr(storage, "_swept", set())
    with scratch_dir("billing-fp-") as workdir:
        assert workdir.parent == tmp_path and workdir.name.startswith(f"billing-fp-{SCRATCH_MARK}{os.getpid()}-")
        assert not stale.exists()
    assert not workdir.exists()


def test_monitoring_daemon_fails_a_run_whose_process_was_killed(tmp_path: Path) -> None:
    home, scratch_root = tmp_path / "dagster_home", tmp_path / "tmp"
    home.mkdir()
    scratch_root.mkdir()
    # The demo's instance config, with the max runtime cut from an hour to 2 s so the test need not wait.
    config_file = write_instance_config(home)
    document = yaml.safe_load(config_file.read_text())
    assert document["run_monitoring"]["enabled"] is True and document["run_monitoring"]["max_runtime_seconds"] > 60
    document["run_monitoring"].update(max_runtime_seconds=2, poll_interval_seconds=1)
    # and deploy/dagster.local.yaml's pool, so that the killed run holds the one slot of the day's writer
    deployed = yaml.safe_load((REPO / "deploy" / "dagster.local.yaml").read_text())
    document["concurrency"] = {"pools": deployed["concurrency"]["pools"]}
    assert deployed["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    document["run_monitoring"]["free_slots_after_run_end_seconds"] = 1
    config_file.write_text(yaml.safe_dump(document))
    env = {**os.environ, "DAGSTER_HOME": str(home), "TMPDIR": str(scratch_root), "DAGSTER_DISABLE_TELEMETRY": "1"}

    marker = tmp_path / "scratch-path.txt"
    run = subprocess.Popen(
        [sys.executable, "-c", HOLDING_RUN, str(marker)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = None
    try:
        _wait_for(marker.exists, 60, "the run to open its scratch folder")
        run.send_signal(signal.SIGKILL)
        run.wait()
        left = Path(marker.read_text())
        assert left.is_dir() and left.parent == scratch_root  # SIGKILL skipped scratch_dir's cleanup

        with DagsterInstance.from_config(str(home)) as instance:
            (record,) = instance.get_run_records(RunsFilter(job_name="killed_job"))
            run_id = record.dagster_run.run_id
            assert record.dagster_run.status == DagsterRunStatus.STARTED  # and without a daemon it stays so
            assert instance.run_monitoring_enabled
            storage = instance.event_log_storage
            assert len(storage.get_concurrency_info(LAKE_POOL).claimed_slots) == 1  # every later day would wait

            daemon = subprocess.Popen(
                [str(Path(sys.executable).with_name("dagster-daemon")), "run", "--empty-workspace"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            _wait_for(
                lambda: instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE,
                60,
                "the monitoring daemon to fail the killed run",
            )
            messages = [e.message for e in instance.all_logs(run_id)]
            assert any("maximum runtime" in m for m in messages if m)
            _wait_for(
                lambda: not storage.get_concurrency_info(LAKE_POOL).claimed_slots,
                60,
                "the daemon to free the failed run's slot of the lake pool",
            )

        assert remove_stale_scratch_dirs(scratch_root) == [left]  # the next run's first scratch_dir does this
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if daemon is not None and daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGINT)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
