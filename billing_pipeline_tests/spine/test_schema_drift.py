"""Schema drift on drifted copies of real samples: additive changes flow through and are recorded,
breaking ones stop the source's day with an error naming the column and the delivery, and every
change is a `schema_change` quarantine record the SLIs can count."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.guard import DeliveryIncompleteError, SchemaDriftError
from billing_pipeline.spine.raw import build_raw_slice, build_raw_slice_if_changed
from billing_pipeline.tools.generator.gcp_samples import koku_csv_to_nested, write_ndjson

from ..adapters.test_azure import EA_ACTUAL, write_run
from ..conftest import SAMPLES, run_spine, sample_as_cur2_frame, write_config, write_data_export

DAY = dt.date(2023, 11, 1)


def _records(lake: str, day: dt.date, source: str) -> pl.DataFrame:
    return pl.read_parquet(quarantine_url(lake, "records", day, source)).filter(pl.col("kind") == "schema_change")


def _cur2_with_tags(extra_tag: str | None = None, extra_column: bool = False) -> pl.DataFrame:
    frame = (
        sample_as_cur2_frame()
        .select(
            "identity_line_item_id",
            "identity_time_interval",
            "bill_payer_account_id",
            "line_item_currency_code",
            "line_item_line_item_type",
            "line_item_usage_start_date",
            "line_item_usage_end_date",
            "bill_billing_period_start_date",
            "bill_billing_period_end_date",
            "line_item_unblended_cost",
            "line_item_product_code",
        )
        .with_columns(pl.col("line_item_unblended_cost").cast(pl.Float64))
    )
    tags = [{"key": "user_team", "value": "a"}] + ([{"key": extra_tag, "value": "b"}] if extra_tag else [])
    frame = frame.with_columns(
        pl.lit(tags).cast(pl.List(pl.Struct({"key": pl.String, "value": pl.String}))).alias("resource_tags")
    )
    frame = frame.with_columns(pl.col("resource_tags").cast(pl.Map(pl.String, pl.String)))  # CUR 2.0's MAP
    if extra_column:
        frame = frame.with_columns(pl.lit("new").alias("line_item_net_unblended_cost_note"))
    return frame


def test_additive_changes_flow_through_and_are_recorded(tmp_path: Path) -> None:
    root = tmp_path / "landing" / "cur2"
    write_data_export(root, "exec-1", {"part-1.snappy.parquet": _cur2_with_tags()}, export_time="2023-11-10T00:00:00Z")
    config = load_config(
        write_config(tmp_path, [{"name": "cur2", "provider": "aws_cur2", "url": str(root)}], start_date="2023-11-01")
    )
    run_spine(config, DAY)
    assert not Path(quarantine_url(config.lake_url, "records", DAY, "cur2")).exists()
    write_data_export(
        root,
        "exec-2",
        {"part-1.snappy.parquet": _cur2_with_tags("user_cost_center", True)},
        export_time="2023-11-11T00:00:00Z",
    )
    run = run_spine(config, DAY)
    assert run.raw[0].version == "exec-2" and run.normalized[0].rows > 0  # published anyway
    (record,) = _records(config.lake_url, DAY, "cur2").iter_rows(named=True)
    assert record["reason"].startswith("additive: ")
    assert "line_item_net_unblended_cost_note" in record["reason"]
    assert "new keys in resource_tags: [user_cost_center]" in record["reason"]
    assert record["export_version"] == "exec-2"
    (recorded,) = (Path(config.lake_url) / "_state" / "schemas" / "source=cur2").glob("*-exec-2.json")
    state = json.loads(recorded.read_text())
    assert state["previous_version"] == "exec-1" and "user_cost_center" in state["tag_keys"]["resource_tags"]


def test_a_renamed_aws_cost_column_stops_only_that_source(tmp_path: Path) -> None:
    drifted = sample_as_cur2_frame().rename({"line_item_unblended_cost": "line_item_unblended_cost_usd"})
    root = tmp_path / "landing" / "cur2"
    write_data_export(root, "exec-7", {"part-1.csv.gz": drifted}, file_format="csv")
    azure_root = tmp_path / "landing" / "azure"
    write_run(azure_root, "20230901-20230930", "run-1", {"part_1.csv": EA_ACTUAL})
    config = load_config(
        write_config(
            tmp_path,
            [
                {"name": "cur2", "provider": "aws_cur2", "url": str(root)},
                {"name": "azure", "provider": "azure", "url": str(azure_root)},
            ],
            start_date="2023-09-01",
        )
    )
    with scratch_dir() as workdir:
        with pytest.raises(SchemaDriftError) as caught:
            build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)
        message = str(caught.value)
        assert "'line_item_unblended_cost'" in message and "exec-7" in message and "part-1.csv.gz" in message
        assert "line_item_unblended_cost_usd" in message  # the rename is named
        assert isinstance(caught.value, DeliveryIncompleteError)  # the spine holds the day back like one
        build_raw_slice(config.sources[1], dt.date(2023, 9, 4), Store(), config.lake_url, workdir)
    assert not Path(slice_url(config.lake_url, "raw_line_items", DAY, "cur2")).exists()
    assert Path(slice_url(config.lake_url, "raw_line_items", dt.date(2023, 9, 4), "azure")).exists()
    (record,) = _records(config.lake_url, DAY, "cur2").iter_rows(named=True)
    assert record["reason"].startswith("breaking: ") and record["export_version"] == "exec-7"


def test_a_retyped_column_is_breaking(tmp_path: Path) -> None:
    drifted = _cur2_with_tags().with_columns(pl.col("line_item_unblended_cost") > 0)
    root = tmp_path / "landing" / "cur2"
    write_data_export(root, "exec-1", {"part-1.snappy.parquet": drifted})
    config = load_config(
        write_config(tmp_path, [{"name": "cur2", "provider": "aws_cur2", "url": str(root)}], start_date="2023-11-01")
    )
    with scratch_dir() as workdir, pytest.raises(SchemaDriftError, match="changed type to Boolean"):
        build_raw_slice(config.sources[0], DAY, Store(), config.lake_url, workdir)


def test_an_azure_export_without_its_cost_column_is_breaking(tmp_path: Path) -> None:
    drifted = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy").drop("Cost")
    root = tmp_path / "landing" / "azure"
    write_run(root, "20230901-20230930", "run-2", {"part_1.csv": drifted.write_csv().encode()})
    config = load_config(
        write_config(tmp_path, [{"name": "azure", "provider": "azure", "url": str(root)}], start_date="2023-09-01")
    )
    with scratch_dir() as workdir, pytest.raises(SchemaDriftError, match=r"'CostInBillingCurrency'.*run-2"):
        build_raw_slice(config.sources[0], dt.date(2023, 9, 4), Store(), config.lake_url, workdir)
    assert _records(config.lake_url, dt.date(2023, 9, 4), "azure").height == 1


def test_a_gcp_json_file_missing_a_needed_key_is_breaking(tmp_path: Path) -> None:
    frame = koku_csv_to_nested(SAMPLES / "koku_2022-08-01_5.csv").drop("cost")
    landing = tmp_path / "landing"
    write_ndjson(frame, landing / "export.json")
    config = load_config(
        write_config(tmp_path, [{"name": "gcp", "provider": "gcp", "url": str(landing)}], start_date="2022-08-01")
    )
    with scratch_dir() as workdir, pytest.raises(SchemaDriftError, match="'cost' the adapter needs holds no value"):
        build_raw_slice(config.sources[0], dt.date(2022, 8, 1), Store(), config.lake_url, workdir)
    shutil.rmtree(landing)


def _koku_on(day: dt.date) -> pl.DataFrame:
    """The public GCP sample moved to `day` (usage, export time and invoice month)."""
    frame = koku_csv_to_nested(SAMPLES / "koku_2022-08-01_5.csv")
    shift = day - dt.date(2022, 8, 1)
    return frame.with_columns(
        pl.col("usage_start_time", "usage_end_time", "export_time") + shift,
        pl.struct(pl.lit(f"{day:%Y%m}").alias("month"), pl.lit(None, pl.String).alias("publisher_type")).alias(
            "invoice"
        ),
    )


def _append_only_table(landing: Path, days: list[dt.date]) -> dict[dt.date, Path]:
    """One NDJSON file per export day, in the hive folders GCP's export writes."""
    return {
        day: write_ndjson(_koku_on(day), landing / f"export_date={day}" / f"export-{day:%Y%m%d}.json") for day in days
    }


def _schema_documents(lake: str) -> dict[str, dict]:
    folder = Path(lake, "_state", "schemas", "source=gcp")
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def test_a_later_period_of_an_append_only_export_does_not_observe_its_files_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill's new period of GCP's append-only table observed every later file of the table again (a
    year's table: ~680 files, ~15 s on each month's first day); the same bytes are observed once, and every
    schema document and verdict is the one a fresh process writes."""
    from billing_pipeline.adapters import drift
    from billing_pipeline.adapters.gcp import adapter as gcp_adapter

    days = [dt.date(2022, 8, 1), dt.date(2022, 9, 2), dt.date(2022, 10, 3)]
    landing = tmp_path / "landing"
    files = _append_only_table(landing, days)
    opened: list[str] = []
    read = gcp_adapter.GcpAdapter.read

    def counting_read(self: gcp_adapter.GcpAdapter, local_file: Path, file_format: str) -> pl.LazyFrame:
        opened.append(local_file.name)
        return read(self, local_file, file_format)

    monkeypatch.setattr(gcp_adapter.GcpAdapter, "read", counting_read)
    documents = {}
    for memo in ("kept", "fresh"):
        monkeypatch.setattr(drift, "_OBSERVED", KeptByIdentity(limit=100_000))
        lake = tmp_path / f"lake-{memo}"
        config = load_config(
            write_config(tmp_path, [{"name": "gcp", "provider": "gcp", "url": str(landing)}], lake_url=str(lake))
        )
        with scratch_dir() as workdir:
            build_raw_slice_if_changed(
                config.sources[0], days[0], Store(), config.lake_url, workdir
            )  # observes all three
            if memo == "fresh":
                monkeypatch.setattr(drift, "_OBSERVED", KeptByIdentity(limit=100_000))
            opened.clear()
            build_raw_slice_if_changed(config.sources[0], days[1], Store(), config.lake_url, workdir)
        if memo == "kept":  # September's delivery holds September's and October's files; October's is not read
            assert opened == [files[days[1]].name]
        else:
            assert sorted(opened) == sorted(files[d].name for d in days[1:])
        documents[memo] = _schema_documents(config.lake_url)
    assert len(documents["kept"]) == 2
    assert documents["kept"] == documents["fresh"]


def test_a_rewritten_file_of_an_append_only_export_is_observed_again(tmp_path: Path) -> None:
    """A file rewritten between two periods' reads has another identity: its breaking change is found."""
    days = [dt.date(2022, 8, 1), dt.date(2022, 9, 2), dt.date(2022, 10, 3)]
    landing = tmp_path / "landing"
    files = _append_only_table(landing, days)
    config = load_config(write_config(tmp_path, [{"name": "gcp", "provider": "gcp", "url": str(landing)}]))
    with scratch_dir() as workdir:
        build_raw_slice_if_changed(config.sources[0], days[0], Store(), config.lake_url, workdir)
        write_ndjson(_koku_on(days[2]).drop("cost"), files[days[2]])
        with pytest.raises(SchemaDriftError, match=rf"'cost' the adapter needs holds no value.*{files[days[2]].name}"):
            build_raw_slice_if_changed(config.sources[0], days[1], Store(), config.lake_url, workdir)
