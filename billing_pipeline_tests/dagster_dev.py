"""Run `dagster dev` headless on a free port with its daemon and a temporary DAGSTER_HOME, and talk to
it over GraphQL, the way the UI does. Used by the end-to-end test and by the restatement measurement.

Started in its own session (`start_new_session=True`) and stopped by its PID with SIGINT, then SIGKILL
on the whole process group if it lingers (DAGSTER_NOTES.md: started from a non-interactive shell,
dagster dev ignores signals sent any other way).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .s3 import free_port

REPO = Path(__file__).resolve().parents[1]
LOCATION = "billing_pipeline.definitions"
REPOSITORY = "__repository__"

INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 3
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: billing/source
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    granularity: op
    default_limit: 1
"""


class DagsterDev:
    """One `dagster dev` process tree: start, query, stop."""

    def __init__(self, home: Path, config_path: Path, log_path: Path) -> None:
        self.home = home
        self.config_path = config_path
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(INSTANCE_YAML)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "BILLING_CONFIG": str(self.config_path),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
        }
        dagster = str(Path(sys.executable).with_name("dagster"))
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev did not answer within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            document = json.loads(response.read())
        if document.get("errors"):
            raise RuntimeError(f"GraphQL errors: {document['errors']}")
        return document["data"]

    # ---- the queries the test needs --------------------------------------------------------------------

    def load_statuses(self) -> dict[str, tuple[str, str]]:
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        return {
            e["name"]: (e["loadStatus"], (e["locationOrLoadError"] or {}).get("__typename", ""))
            for e in data["workspaceOrError"]["locationEntries"]
        }

    def wait_loaded(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.load_statuses().get(LOCATION)
            if status and status[0] == "LOADED":
                if status[1] != "RepositoryLocation":
                    raise RuntimeError(f"code location failed to load: {self.graphql_location_error()}")
                return
            time.sleep(1)
        raise TimeoutError(f"code location not loaded: {self.log_tail()}")

    def graphql_location_error(self) -> str:
        data = self.graphql("""{ workspaceOrError { ... on Workspace { locationEntries {
            locationOrLoadError { ... on PythonError { message } } } } } }""")
        return json.dumps(data)

    @property
    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    def instigator_statuses(self) -> dict[str, str]:
        data = self.graphql(
            """query($selector: RepositorySelector!) {
            sensorsOrError(repositorySelector: $selector) { ... on Sensors { results { name sensorState { status } } } }
            schedulesOrError(repositorySelector: $selector) {
                ... on Schedules { results { name scheduleState { status } } } } }""",
            {"selector": self.repository_selector},
        )
        out = {s["name"]: s["sensorState"]["status"] for s in data["sensorsOrError"]["results"]}
        out.update({s["name"]: s["scheduleState"]["status"] for s in data["schedulesOrError"]["results"]})
        return out

    def launch_backfill(self, job_name: str, partitions: list[str]) -> str:
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) {
            launchPartitionBackfill(backfillParams: $params) {
                __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {
                "params": {
                    "selector": {
                        "partitionSetName": f"{job_name}_partition_set",
                        "repositorySelector": self.repository_selector,
                    },
                    "partitionNames": partitions,
                }
            },
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return str(result["backfillId"])

    def launch_asset_backfill(self, assets: list[str], partitions: list[str]) -> str:
        """A backfill of assets, as the UI's Materialize (on the asset graph) launches it: the daemon runs it by
        the assets' backfill policy."""
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) {
            launchPartitionBackfill(backfillParams: $params) {
                __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"params": {"assetSelection": [{"path": [name]} for name in assets], "partitionNames": partitions}},
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return str(result["backfillId"])

    def backfill_status(self, backfill_id: str) -> str:
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
            __typename ... on PartitionBackfill { status } } }""",
            {"id": backfill_id},
        )
        return str(data["partitionBackfillOrError"]["status"])

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
            results { runId status startTime endTime creationTime tags { key value } } } } }""",
            {"filter": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        runs = data["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return runs

    def check_evaluations(self, run_id: str) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) {
            ... on EventConnection { events { __typename
                ... on AssetCheckEvaluationEvent { evaluation { checkName success partition severity
                    assetKey { path } } } } } } }""",
            {"runId": run_id},
        )
        return [e["evaluation"] for e in data["logsForRun"]["events"] if e["__typename"] == "AssetCheckEvaluationEvent"]

    def wait_runs_finished(self, tags: dict[str, str] | None, expected: int | None, timeout: float) -> list[dict]:
        """Wait until `expected` runs (or all runs seen) with these tags are in a final state."""
        final = {"SUCCESS", "FAILURE", "CANCELED"}
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.runs(tags)
            enough = expected is None or len(runs) >= expected
            if runs and enough and all(r["status"] in final for r in runs):
                return runs
            time.sleep(1)
        raise TimeoutError(
            f"runs {tags} not finished: {[(r['runId'][:8], r['status']) for r in runs]}; {self.log_tail()}"
        )
