"""Encryption at rest: SSE-KMS on an S3 lake (moto server), private modes on a local lake, key checks at load."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from dagster import instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.config import ConfigError, load_config
from billing_pipeline.platform.encryption import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, remote_write_kwargs
from billing_pipeline.platform.storage import Store

from ..conftest import legacy_cur_landing, sample_as_cur2_frame, write_config, write_data_export
from ..s3 import s3_client, upload_tree

DAY = "2023-11-01"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_billing_daily_writes_every_s3_lake_object_with_sse_kms(tmp_path: Path, s3_endpoint: str) -> None:
    client = s3_client(s3_endpoint)
    for bucket in ("enc-landing", "enc-lake"):
        client.create_bucket(Bucket=bucket)
    local = tmp_path / "staging" / "cur2-export"
    sample = sample_as_cur2_frame()
    write_data_export(local, "exec-1", {"part-1.snappy.parquet": sample, "part-2.snappy.parquet": b"\x00" * 64})
    write_data_export(local, "exec-0", {"part-1.snappy.parquet": sample}, export_time="2023-11-19T00:00:00Z")
    upload_tree(client, local, "enc-landing", "cur2-export")
    config_path = write_config(
        tmp_path,
        [{"name": "cur2", "provider": "aws_cur2", "url": "s3://enc-landing/cur2-export"}],
        lake_url="s3://enc-lake/curated",
        invoices_url="s3://enc-landing/invoices",
        start_date="2023-11-01",
        storage_options={"endpoint_url": s3_endpoint},
        lake_encryption={"kms_key_id": KEY_ARN},
    )
    with instance_for_test() as instance:
        result = (
            build_definitions(config_path)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
        )
    assert result.success
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="enc-lake", Prefix="curated/")["Contents"]]
    # every kind of write: sliced Parquet (publish), JSON state (write_bytes), a quarantined copy (copy_in)
    assert any("/raw_line_items/" in k for k in keys) and any("/_state/" in k for k in keys)
    assert any("/quarantine/files/" in k for k in keys)
    for key in keys:
        head = client.head_object(Bucket="enc-lake", Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == KEY_ARN, key
    landing = client.list_objects_v2(Bucket="enc-landing")["Contents"]
    assert all("ServerSideEncryption" not in client.head_object(Bucket="enc-landing", Key=o["Key"]) for o in landing)


def test_a_local_lake_is_owner_and_group_only(tmp_path: Path) -> None:
    report = legacy_cur_landing(tmp_path / "landing")
    config_path = write_config(
        tmp_path, [{"name": "cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01"
    )
    previous = os.umask(0o022)  # the usual umask would give 0644 / 0755
    try:
        with instance_for_test() as instance:
            job = build_definitions(config_path).resolve_job_def(JOB_NAME)
            assert job.execute_in_process(partition_key=DAY, instance=instance).success
    finally:
        os.umask(previous)
    lake = tmp_path / "lake"
    catalogue = {"lake.duckdb", "lake.duckdb.lock", "lake.duckdb.wal"}  # DuckDB's own files, not the store's
    files = [p for p in lake.rglob("*") if p.is_file() and p.name not in catalogue]
    folders = [lake, *(p for p in lake.rglob("*") if p.is_dir())]
    assert len(files) > 5
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_FILE_MODE, path
    for path in folders:
        assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_DIR_MODE, path


def test_store_writes_give_private_modes(tmp_path: Path) -> None:
    store = Store()
    target = tmp_path / "lake" / "a" / "b.json"
    store.write_bytes(str(target), b"{}")
    store.copy_in(str(target), str(tmp_path / "lake" / "c" / "d.json"))
    for path in (target, tmp_path / "lake" / "c" / "d.json"):
        assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_FILE_MODE
    for path in (tmp_path / "lake", tmp_path / "lake" / "a", tmp_path / "lake" / "c"):
        assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_DIR_MODE


def test_gcs_key_reaches_the_write_calls_only_for_gcsfs(tmp_path: Path) -> None:
    name = "projects/p/locations/europe/keyRings/r/cryptoKeys/k"
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "g", "provider": "gcp", "url": "x"}],
            lake_url="gs://b/lake",
            lake_encryption={"kms_key_id": name},
        )
    )
    assert config.storage_options == {}  # the key belongs to the lake's location only
    assert config.store().options("gs://b/lake/x") == {"kms_key_name": name}
    fs, _ = config.store().fs("gs://b/lake/x")
    assert remote_write_kwargs(fs) == {"kms_key_name": name}
    fs, _ = config.store().fs("gs://landing/export/x")  # a landing zone beside the lake: read as configured
    assert remote_write_kwargs(fs) == {}
    fs, _ = config.store().fs(str(tmp_path))
    assert remote_write_kwargs(fs) == {}


@pytest.mark.parametrize(
    ("lake_url", "key", "message"),
    [
        ("s3://b/lake", "projects/p/locations/l/keyRings/r/cryptoKeys/k", "KMS key ARN"),
        ("gs://b/lake", "alias/billing", "projects/"),
        (None, "alias/billing", "s3:// and gs:// lakes only"),
    ],
)
def test_a_key_that_cannot_apply_fails_at_load(tmp_path: Path, lake_url: str | None, key: str, message: str) -> None:
    path = write_config(
        tmp_path,
        [{"name": "a", "provider": "aws_cur2", "url": "x"}],
        lake_url=lake_url,
        lake_encryption={"kms_key_id": key},
    )
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_without_a_key_the_storage_options_are_unchanged(tmp_path: Path) -> None:
    options = {"endpoint_url": "http://127.0.0.1:1", "s3_additional_kwargs": {"RequestPayer": "requester"}}
    config = load_config(
        write_config(
            tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}], lake_url="s3://b/l", storage_options=options
        )
    )
    assert config.storage_options == options
    encrypted = load_config(
        write_config(
            tmp_path,
            [{"name": "a", "provider": "aws_cur2", "url": "x"}],
            lake_url="s3://b/l",
            storage_options=options,
            lake_encryption={"kms_key_id": "alias/billing"},
        )
    )
    assert encrypted.store().options("s3://b/l/raw_line_items/x")["s3_additional_kwargs"] == {
        "RequestPayer": "requester",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/billing",
    }
    assert encrypted.store().options("s3://b/landing/x") == options  # beside the lake: no SSE-KMS
