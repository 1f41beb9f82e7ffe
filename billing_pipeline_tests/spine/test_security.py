"""Security end to end: a generated month through the real `billing_daily` job with `privacy:` configured (the
key in an environment variable), a cloud secret in the environment, and raw slices in a raw lake of their own.

Everything a run leaves behind is scanned: every log line (pytest's capture of Python logging, stdout and
stderr), every record of the Dagster instance's event log (materialization and check metadata included,
serialized whole), and every file of the lake (Parquet decoded as JSON of every column, nested ones included,
plus its bytes; other files as text). Neither the key, nor the secret, nor the clear value of any person's
identifier the generator put in the exports (its owner e-mails and creating principals, Azure's account
owner) may appear outside the raw lake; the raw lake must hold them (so the scan can fail).

Then an operator re-runs a day of the closed month: the audit log records it with who asked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, instance_for_test, serialize_value

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.lifecycle.audit_log import read_audit_log
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.tools.generator import generate_landing_zone
from billing_pipeline.tools.generator.catalog import TEAM_CONTACTS, TEAM_CREATORS

from ..conftest import write_config
from ..s3 import s3_client, upload_tree
from .test_privacy import reference_token

MONTH = "2026-10"  # closed: older than the two billing periods a source restates by default
DAYS = (dt.date(2026, 10, 1), dt.date(2026, 10, 2))
PROVIDERS = {
    "aws_cur2": ("aws_cur2", "aws_cur2/cur2-daily"),
    "aws_cur": ("aws_cur", "aws_cur/cur/legacy-cur"),
    "focus": ("focus", "focus/focus-export"),
    "azure": ("azure", "azure/cost-exports/actual-daily"),
}
KEY_VAR = "BILLING_SCAN_PSEUDONYM_KEY"
AZURE_ACCOUNT_OWNER = "finops@acme.example"  # Azure EA's AccountOwnerId, as the generator delivers it
PEOPLE = [*TEAM_CONTACTS.values(), *TEAM_CREATORS.values(), AZURE_ACCOUNT_OWNER]


def file_text(name: str, content: bytes) -> str:
    """A lake file as searchable text: a Parquet file's every cell (nested ones as JSON) plus its bytes."""
    text = content.decode("latin-1")
    if name.endswith(".parquet"):
        table = pq.read_table(pa.BufferReader(content))
        text += "\n" + pl.from_arrow(table).write_ndjson() + "\n" + json.dumps(table.schema.metadata or {}, default=str)
    return text


def local_files(root: Path) -> dict[str, str]:
    return {str(p): file_text(p.name, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def found(needles: list[str], texts: dict[str, str]) -> dict[str, list[str]]:
    """needle -> the files (or records) whose text holds it, case-insensitively."""
    lowered = {where: text.lower() for where, text in texts.items()}
    return {
        n: [w for w, t in lowered.items() if n.lower() in t]
        for n in needles
        if any(n.lower() in t for t in lowered.values())
    }


def _run(job, day: dt.date, instance: DagsterInstance, tags: dict[str, str] | None = None):
    result = job.execute_in_process(
        partition_key=day.isoformat(), instance=instance, raise_on_error=False, tags=tags or {}
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    key, cloud_secret = f"pseudonym-key-{uuid.uuid4().hex}", f"cloud-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_VAR, key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cloud_secret)  # credentials come from the environment only
    yield key, cloud_secret


def test_nothing_outside_the_raw_lake_holds_a_secret_or_a_clear_identifier(
    tmp_path: Path,
    secrets: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, cloud_secret = secrets
    caplog.set_level(logging.DEBUG)
    landing = tmp_path / "landing"
    generate_landing_zone(landing, month=MONTH, rows_per_day=30, days=3, providers=tuple(PROVIDERS))
    config_path = write_config(
        tmp_path,
        [{"name": name, "provider": p, "url": str(landing / url)} for name, (p, url) in PROVIDERS.items()],
        lake_url="lake",
        raw_lake_url="restricted/raw",
        invoices_url=str(landing / "invoices"),
        start_date=f"{MONTH}-01",
        privacy={"key_env_var": KEY_VAR},
    )
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    with instance_for_test() as instance:
        runs = [_run(job, day, instance) for day in DAYS]
        rerun = _run(job, DAYS[0], instance, tags={"billing/requested_by": "jane"})
        entries = [(run.run_id, entry) for run in [*runs, rerun] for entry in instance.all_logs(run.run_id)]
    records = {f"event {run_id} {n}": serialize_value(entry) for n, (run_id, entry) in enumerate(entries)}
    materialized = [e.asset_materialization for _, e in entries if e.asset_materialization is not None]
    assert len(materialized) >= 4 * len(DAYS) and all(m.metadata for m in materialized)  # metadata is scanned too
    logs = {"python logging": caplog.text, "captured output": "".join(capsys.readouterr())}

    outside = local_files(tmp_path / "lake") | records | logs
    raw = local_files(tmp_path / "restricted" / "raw")
    assert any("/raw_line_items/" in f for f in raw) and not any("raw_line_items/date=" in f for f in outside)
    assert any("/quarantine/" in f for f in raw) and not any("quarantine/duplicates/date=" in f for f in outside)

    assert found(PEOPLE, raw).keys() == set(PEOPLE)  # the raw lake keeps the exports as delivered
    assert found([key, cloud_secret], raw) == {}  # and never the secrets
    assert found([key, cloud_secret, *PEOPLE], outside) == {}
    normalized = {f: t for f, t in outside.items() if "/normalized_line_items/" in f}
    tokens = [reference_token(person, key.encode()) for person in [*TEAM_CONTACTS.values(), *TEAM_CREATORS.values()]]
    assert found(tokens, normalized).keys() == set(tokens)  # replaced, not dropped

    with duckdb.connect(str(tmp_path / "lake" / "lake.duckdb"), read_only=True) as connection:  # views span both lakes
        raw_rows = connection.execute("SELECT count(*) FROM raw_line_items").fetchone()[0]
        tokens_in_view = connection.execute(
            "SELECT count(*) FROM normalized_line_items WHERE Tags LIKE '%\"pii:%'"
        ).fetchone()[0]
    assert raw_rows > 0 and tokens_in_view > 0

    with scratch_dir() as workdir:
        audit = read_audit_log(Store(), str(tmp_path / "lake"), workdir)
    reruns = audit.filter(pl.col("action") == "closed_month_rerun")
    assert sorted(reruns["partition"]) == sorted(f"date=2026-10-01/source={name}" for name in PROVIDERS)
    assert set(reruns["who"]) == {"jane"} and set(reruns["run_id"]) == {rerun.run_id}
    assert all("2026-10 is closed" in d and "reused" in d for d in reruns["detail"])


def test_on_s3_raw_and_quarantine_live_in_the_raw_bucket_and_the_lake_bucket_holds_tokens(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VAR, "a pseudonymization key for the s3 test")
    client = s3_client(s3_endpoint)
    for bucket in ("sec-landing", "sec-lake", "sec-raw"):
        client.create_bucket(Bucket=bucket)
    providers = {name: PROVIDERS[name] for name in ("aws_cur2", "azure")}
    generate_landing_zone(tmp_path / "landing", month=MONTH, rows_per_day=20, days=2, providers=tuple(providers))
    upload_tree(client, tmp_path / "landing", "sec-landing", "exports")
    config_path = write_config(
        tmp_path,
        [{"name": n, "provider": p, "url": f"s3://sec-landing/exports/{url}"} for n, (p, url) in providers.items()],
        lake_url="s3://sec-lake/curated",
        raw_lake_url="s3://sec-raw/delivered",
        invoices_url="s3://sec-landing/exports/invoices",
        start_date=f"{MONTH}-01",
        storage_options={"endpoint_url": s3_endpoint},
        privacy={"key_env_var": KEY_VAR},
    )
    with instance_for_test() as instance:
        _run(build_definitions(config_path).resolve_job_def(JOB_NAME), DAYS[1], instance)

    def objects(bucket: str) -> dict[str, str]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            o["Key"]: file_text(o["Key"], client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed
        }

    lake, raw = objects("sec-lake"), objects("sec-raw")
    assert {k.split("/")[1] for k in raw} >= {"raw_line_items"} and all(k.startswith("delivered/") for k in raw)
    assert not [k for k in lake if "/raw_line_items/" in k or "/quarantine/" in k]
    assert any("/normalized_line_items/" in k for k in lake) and any("/tag_enriched_costs/" in k for k in lake)
    in_raw = found(PEOPLE, raw)  # one day of two sources: the teams tagged that day, and Azure's account owner
    assert AZURE_ACCOUNT_OWNER in in_raw and any(person in in_raw for person in TEAM_CONTACTS.values())
    assert found(PEOPLE, lake) == {}
