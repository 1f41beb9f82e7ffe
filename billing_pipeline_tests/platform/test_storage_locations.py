"""Storage options per location: an S3 landing zone (moto) beside a GCS lake (emulator) in one configuration."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dagster import instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.catalogue import connect
from billing_pipeline.platform.config import ConfigError, load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.storage import Store

from ..conftest import sample_as_cur2_frame, write_config, write_data_export
from ..gcs import GCS_TEST_OPTIONS
from ..s3 import s3_client, upload_tree

DAY = dt.date(2023, 11, 1)


def test_the_longest_prefix_wins_on_path_boundaries_and_the_default_covers_the_rest() -> None:
    default = {"endpoint_url": "http://default"}
    locations = {
        "s3://landing": {"endpoint_url": "http://landing"},
        "s3://landing/restricted": {"endpoint_url": "http://restricted"},
        "gs://": {"token": "anon"},
    }
    store = Store(default, locations)
    assert store.options("s3://landing/cur2/x.parquet") == {"endpoint_url": "http://landing"}
    assert store.options("s3://landing") == {"endpoint_url": "http://landing"}
    assert store.options("s3://landing/restricted/x") == {"endpoint_url": "http://restricted"}
    assert store.options("s3://landing2/x") == default  # not under `s3://landing`: a bucket name is not a prefix
    assert store.options("gs://any-bucket/lake/x") == {"token": "anon"}
    assert store.options("/srv/lake/x") == {}  # local paths take no options
    assert Store(default).options("gs://b/x") == default  # the old single dict still feeds both protocols


def test_storage_locations_load_beside_storage_options_and_reject_local_paths(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "a", "provider": "aws_cur2", "url": "s3://landing/a"}],
            lake_url="gs://lake/curated",
            storage_options={"anon": True},
            storage={"s3://landing": {"endpoint_url": "http://127.0.0.1:1"}, "gs://lake": {"token": "anon"}},
        )
    )
    assert config.store().options("s3://landing/a/x") == {"endpoint_url": "http://127.0.0.1:1"}
    assert config.store().options("gs://lake/curated/x") == {"token": "anon"}
    assert config.store().options("s3://other/x") == {"anon": True}
    with pytest.raises(ConfigError, match=r"storage: .*object-store URL prefixes.*'/srv/lake'"):
        load_config(
            write_config(tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}], storage={"/srv/lake": {}})
        )


def test_an_s3_landing_zone_beside_a_gcs_lake_builds_a_day(tmp_path: Path, s3_endpoint: str, gcs_endpoint: str) -> None:
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="mixed-landing")
    sample = sample_as_cur2_frame()
    local = tmp_path / "staging" / "cur2-export"
    write_data_export(local, "exec-1", {"part-1.snappy.parquet": sample})
    upload_tree(client, local, "mixed-landing", "cur2-export")
    lake = Store(locations={"gs://": GCS_TEST_OPTIONS})
    lake_fs, _ = lake.fs("gs://mixed-lake")
    lake_fs.mkdir("mixed-lake")
    # no top-level storage_options: each store is reachable only through its own location's options
    config_path = write_config(
        tmp_path,
        [{"name": "cur2", "provider": "aws_cur2", "url": "s3://mixed-landing/cur2-export"}],
        lake_url="gs://mixed-lake/curated",
        start_date="2023-11-01",
        duckdb_path=str(tmp_path / "catalogue.duckdb"),
        storage={"s3://mixed-landing": {"endpoint_url": s3_endpoint}, "gs://mixed-lake": GCS_TEST_OPTIONS},
    )
    with instance_for_test() as instance:
        result = (
            build_definitions(config_path)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key=DAY.isoformat(), instance=instance, raise_on_error=False)
        )
    assert result.success
    expected = sum(
        (
            Decimal(v)
            for v in sample.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == DAY.isoformat())[
                "line_item_unblended_cost"
            ]
        ),
        Decimal(0),
    )
    config = load_config(config_path)
    published = slice_url(config.lake_url, "normalized_line_items", DAY, "cur2")
    normalized = pl.read_parquet(io.BytesIO(config.store().read_bytes(published)))
    assert sum((Decimal(str(v)) for v in normalized["BilledCost"]), Decimal(0)) == expected
    checks = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["lake_catalogue"].passed, checks["lake_catalogue"].description
    # the query entry point reads the GCS lake offline, through gcsfs
    with connect(config) as connection:
        total = connection.execute(
            f"SELECT sum(BilledCost) FROM normalized_line_items WHERE date = DATE '{DAY}' AND source = 'cur2'"
        ).fetchone()
    assert Decimal(str(total[0])) == expected
    # the catalogue file stores its views over the lake's gs:// URLs (for the DuckDB CLI)
    import duckdb

    with duckdb.connect(str(tmp_path / "catalogue.duckdb"), read_only=True) as catalogue:
        sql = catalogue.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'normalized_line_items'").fetchone()
    assert "gs://mixed-lake/curated/normalized_line_items/*/*/*.parquet" in sql[0]
