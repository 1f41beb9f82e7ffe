"""Querying the lake with DuckDB: offline through the store's own client, the CLI, and the ERROR check."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import AssetCheckSeverity, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.catalogue import catalogue_health, connect, load_httpfs, main, s3_secret_sql
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import CatalogueError, refresh_views

from ..conftest import run_spine, sample_as_cur2_frame, write_config, write_data_export
from ..s3 import s3_client, upload_tree

DAY = dt.date(2023, 11, 1)
SPINE_VIEWS = {"raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def _delivered_billed_cost(sample: pl.DataFrame) -> Decimal:
    """The day's billed cost as delivered: the export's own unblended cost cells, summed in Decimal."""
    day_rows = sample.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == DAY.isoformat())
    return sum((Decimal(v) for v in day_rows["line_item_unblended_cost"]), Decimal(0))


@pytest.fixture(scope="module")
def s3_lake(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> tuple[BillingConfig, Decimal]:
    """A day of the spine in an S3 lake (moto), with a catalogue file; and the day's delivered billed cost."""
    folder = tmp_path_factory.mktemp("s3-lake")
    client = s3_client(s3_endpoint)
    for bucket in ("cat-landing", "cat-lake"):
        client.create_bucket(Bucket=bucket)
    sample = sample_as_cur2_frame()
    write_data_export(folder / "staging" / "cur2-export", "exec-1", {"part-1.snappy.parquet": sample})
    upload_tree(client, folder / "staging" / "cur2-export", "cat-landing", "cur2-export")
    config = load_config(
        write_config(
            folder,
            [{"name": "cur2", "provider": "aws_cur2", "url": "s3://cat-landing/cur2-export"}],
            lake_url="s3://cat-lake/curated",
            start_date="2023-11-01",
            storage_options={"endpoint_url": s3_endpoint},
            duckdb_path=str(folder / "catalogue.duckdb"),
        )
    )
    run_spine(config, DAY)
    assert set(refresh_views(config.lake_url, config.duckdb_file, config.store())) >= SPINE_VIEWS
    return config, _delivered_billed_cost(sample)


def test_connect_reads_an_s3_lake_offline_through_the_store_client(s3_lake: tuple[BillingConfig, Decimal]) -> None:
    config, expected = s3_lake
    with connect(config) as connection:
        views = {
            row[0] for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        total = connection.execute(
            f"SELECT sum(BilledCost) FROM normalized_line_items WHERE date = DATE '{DAY}' AND source = 'cur2'"
        ).fetchone()
        httpfs = connection.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()
    assert views >= SPINE_VIEWS
    assert Decimal(str(total[0])) == expected
    assert httpfs == (False,)  # read through s3fs: no DuckDB extension downloaded or loaded


def test_the_catalogue_file_keeps_views_over_the_s3_urls(s3_lake: tuple[BillingConfig, Decimal]) -> None:
    config, expected = s3_lake
    with duckdb.connect(config.duckdb_file, read_only=True) as catalogue:
        sql = catalogue.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'normalized_line_items'").fetchone()
        assert "s3://cat-lake/curated/normalized_line_items/*/*/*.parquet" in sql[0]
        lake_fs, _ = config.store().fs(config.lake_url)
        catalogue.register_filesystem(lake_fs)  # what the DuckDB CLI does with httpfs and a secret
        total = catalogue.execute("SELECT sum(BilledCost) FROM normalized_line_items").fetchone()
    assert Decimal(str(total[0])) == expected
    health = catalogue_health(config)
    assert health.passed, health.reason
    assert set(health.views) >= SPINE_VIEWS and health.file_views == health.views


def test_the_query_command_prints_a_result_offline(s3_lake: tuple[BillingConfig, Decimal]) -> None:
    config, expected = s3_lake
    sql = "SELECT source, sum(BilledCost) AS billed FROM normalized_line_items GROUP BY source"
    done = subprocess.run(
        [sys.executable, "-m", "billing_pipeline.query", "--config", config.config_path, "--csv", sql],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["source", "billed"]
    assert [(source, Decimal(billed)) for source, billed in rows[1:]] == [("cur2", expected)]


def test_the_query_command_lists_views_and_names_a_bad_query(
    s3_lake: tuple[BillingConfig, Decimal], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = s3_lake
    listed = io.StringIO()
    assert main(["--config", config.config_path], out=listed) == 0
    assert set(listed.getvalue().split()) >= SPINE_VIEWS
    table = io.StringIO()
    assert (
        main(["--config", config.config_path, "--max-rows", "1", "SELECT source FROM raw_line_items"], out=table) == 0
    )
    assert table.getvalue().splitlines()[:3] == ["source", "------", "cur2"]
    assert "first 1 rows" in table.getvalue()
    assert main(["--config", config.config_path, "SELECT nope FROM raw_line_items"], out=io.StringIO()) == 1
    assert "query failed" in capsys.readouterr().err


def _local_lake(tmp_path: Path, **extra: object) -> Path:
    """billing.yaml of a local landing zone holding one delivery of the sample, and a local lake."""
    write_data_export(tmp_path / "landing" / "cur2", "exec-1", {"part-1.snappy.parquet": sample_as_cur2_frame()})
    return write_config(
        tmp_path,
        [{"name": "cur2", "provider": "aws_cur2", "url": str(tmp_path / "landing" / "cur2")}],
        start_date="2023-11-01",
        **extra,
    )


def _damage(lake: Path, relative: str) -> Path:
    """A file that is not Parquet where a table's files are."""
    path = lake / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet at all")
    return path


def test_a_damaged_file_fails_the_catalogue_naming_view_and_file(tmp_path: Path) -> None:
    config = load_config(_local_lake(tmp_path))
    run_spine(config, DAY)
    damaged = _damage(Path(config.lake_url), "normalized_line_items/date=2023-11-02/source=ghost/part-0.parquet")
    with pytest.raises(CatalogueError, match="normalized_line_items") as raised:
        refresh_views(config.lake_url, config.duckdb_file, config.store())
    assert str(damaged) in str(raised.value)
    with duckdb.connect(config.duckdb_file, read_only=True) as catalogue:  # the other views are still refreshed
        assert catalogue.execute("SELECT count(*) FROM raw_line_items").fetchone()[0] > 0
    health = catalogue_health(config)
    assert not health.passed
    assert "normalized_line_items" in health.reason and str(damaged) in health.reason


def test_a_catalogue_file_never_refreshed_or_missing_a_view_fails_the_catalogue(tmp_path: Path) -> None:
    config = load_config(_local_lake(tmp_path))
    run_spine(config, DAY)  # builds the tables without refreshing the views
    never = catalogue_health(config)
    assert not never.passed and "does not exist" in never.reason
    refresh_views(config.lake_url, config.duckdb_file, config.store())
    assert catalogue_health(config).passed
    with duckdb.connect(config.duckdb_file) as catalogue:  # as if the last refresh had stopped short of it
        catalogue.execute("DROP VIEW tag_enriched_costs")
    stale = catalogue_health(config)
    assert not stale.passed and "lacks the views ['tag_enriched_costs']" in stale.reason


def test_the_lake_catalogue_check_fails_at_error_without_failing_the_day(tmp_path: Path) -> None:
    config_path = _local_lake(tmp_path)
    damaged = _damage(tmp_path / "lake", "audit_log/date=2020-01-01/action=delete/run-1.parquet")
    with instance_for_test() as instance:
        result = (
            build_definitions(config_path)
            .resolve_job_def(JOB_NAME)
            .execute_in_process(partition_key=DAY.isoformat(), instance=instance, raise_on_error=False)
        )
    assert result.success  # the views are a convenience: the day is built, the check says why they are not
    check = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "lake_catalogue"
    )
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert "audit_log" in check.description and str(damaged) in check.description
    assert check.metadata["alert/route"].value == "ticket"


def test_loading_httpfs_without_the_extension_says_how_to_install_it(tmp_path: Path) -> None:
    with duckdb.connect() as connection:
        connection.execute(f"SET extension_directory = '{tmp_path}'")  # an empty one: nothing installed
        connection.execute("SET autoinstall_known_extensions = false")
        with pytest.raises(CatalogueError, match=r"INSTALL httpfs.*copy its httpfs.duckdb_extension") as raised:
            load_httpfs(connection)
    assert str(tmp_path) in str(raised.value)


def test_the_s3_secret_carries_the_endpoint_and_credentials_of_the_location() -> None:
    moto_like = s3_secret_sql(
        "s3://lake/curated", {"endpoint_url": "http://127.0.0.1:5000", "key": "AKIDEXAMPLE", "secret": "s3cr'et"}
    )
    assert moto_like.startswith("CREATE OR REPLACE TEMPORARY SECRET billing_lake (TYPE s3, SCOPE 's3://lake/curated'")
    for part in ("ENDPOINT '127.0.0.1:5000'", "URL_STYLE 'path'", "USE_SSL false", "KEY_ID 'AKIDEXAMPLE'"):
        assert part in moto_like
    assert "SECRET 's3cr''et'" in moto_like  # quoted as a SQL literal
    tls = s3_secret_sql("s3://lake", {"client_kwargs": {"endpoint_url": "https://minio.internal:9000"}, "anon": True})
    assert "ENDPOINT 'minio.internal:9000'" in tls and "USE_SSL true" in tls and "KEY_ID" not in tls
