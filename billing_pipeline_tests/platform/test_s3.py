"""The spine with the landing zone and the lake both in S3 (moto server over HTTP on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url

from ..conftest import run_spine, sample_as_cur2_frame, write_config, write_data_export
from ..s3 import s3_client, upload_tree

DAY = dt.date(2023, 11, 1)


def _read(client, bucket: str, key: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_spine_reads_and_writes_s3(tmp_path: Path, s3_endpoint: str) -> None:
    client = s3_client(s3_endpoint)
    for bucket in ("landing", "lake"):
        client.create_bucket(Bucket=bucket)
    sample = sample_as_cur2_frame()
    local = tmp_path / "staging" / "cur2-export"
    write_data_export(local, "exec-1", {"part-1.snappy.parquet": sample}, export_time="2023-11-20T00:00:00Z")
    assert upload_tree(client, local, "landing", "billing/cur2-export") == 2
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "cur2", "provider": "aws_cur2", "url": "s3://landing/billing/cur2-export"}],
            lake_url="s3://lake/curated",
            invoices_url="s3://landing/invoices",
            start_date="2023-11-01",
            storage_options={"endpoint_url": s3_endpoint},
        )
    )
    run_spine(config, DAY)
    # a newer delivery with a corrupt file is incomplete: the good one stays current (invariant 5)
    write_data_export(
        local,
        "exec-2",
        {"part-1.snappy.parquet": sample.head(10), "part-2.snappy.parquet": b"\x00" * 64},
        export_time="2023-11-21T00:00:00Z",
    )
    upload_tree(client, local, "landing", "billing/cur2-export")
    run = run_spine(config, DAY)
    assert run.raw[0].version == "exec-1" and run.raw[0].passed_over_versions == ["exec-2"]

    expected = sum(
        (
            Decimal(v)
            for v in sample.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == "2023-11-01")[
                "line_item_unblended_cost"
            ]
        ),
        Decimal(0),
    )
    key = slice_url("curated", "normalized_line_items", DAY, "cur2")
    normalized = _read(client, "lake", key)
    assert sum(Decimal(str(v)) for v in normalized["BilledCost"]) == expected
    assert run.normalized[0].billed_cost == expected
    # the corrupt file is quarantined in the S3 lake, with a record naming it
    records = _read(client, "lake", quarantine_url("curated", "records", DAY, "cur2"))
    assert records["kind"].to_list() == ["unreadable"]
    assert records["file_uri"].item().endswith("part-2.snappy.parquet")
    copy_key = records["quarantined_copy"].item().removeprefix("s3://lake/")
    assert client.get_object(Bucket="lake", Key=copy_key)["Body"].read() == b"\x00" * 64
    listed = client.list_objects_v2(Bucket="lake", Prefix="curated/")["Contents"]
    assert not [o["Key"] for o in listed if ".tmp-" in o["Key"]]  # nothing half-written left behind
    assert (run.reconciliation["conservation_delta"] == 0).all()


def test_sensor_style_listing_sees_an_overwritten_object(tmp_path: Path, s3_endpoint: str) -> None:
    """s3fs caches listings per process; the raw builder invalidates, so a restatement is seen."""
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="landing2")
    client.create_bucket(Bucket="lake2")
    sample = sample_as_cur2_frame()
    first, second = sample.slice(0, 100), sample
    local = tmp_path / "a" / "cur2-export"
    write_data_export(local, "exec-1", {"part-1.snappy.parquet": first})
    upload_tree(client, local, "landing2", "cur2-export")
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "cur2", "provider": "aws_cur2", "url": "s3://landing2/cur2-export"}],
            lake_url="s3://lake2/curated",
            start_date="2023-11-01",
            storage_options={"endpoint_url": s3_endpoint},
        )
    )

    store = config.store()
    run_spine(config, DAY, store)
    local2 = tmp_path / "b" / "cur2-export"
    write_data_export(local2, "exec-1", {"part-1.snappy.parquet": second})
    upload_tree(client, local2, "landing2", "cur2-export")  # overwrite mode: same keys, new content
    run = run_spine(config, DAY, store)
    expected = sum(
        (
            Decimal(v)
            for v in second.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == "2023-11-01")[
                "line_item_unblended_cost"
            ]
        ),
        Decimal(0),
    )
    assert run.normalized[0].billed_cost == expected
