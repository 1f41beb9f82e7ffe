"""The current delivery is the one the provider says is current (issue 9).

A landing zone copied in one go (`aws s3 sync`) gives every object the same LastModified: the legacy
CUR assembly named by the period-level manifest's `assemblyId` is current all the same; Data Exports
and Azure runs are dated by the times their manifests state; a tie that nothing decides holds the
day back with an error naming the candidates, it is never broken by a guess.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.adapters import adapter_for, choose_current
from billing_pipeline.adapters.azure import AzureAdapter
from billing_pipeline.platform.config import SourceConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.guard import DeliveryIncompleteError
from billing_pipeline.spine.raw import build_raw_slice

from ..adapters.test_azure import EA_ACTUAL, write_run
from ..conftest import AWS_SAMPLE, run_spine, sample_as_cur2_frame, write_config, write_data_export
from ..s3 import s3_client

PERIOD = "20231101-20231201"
REPORT = "sample"
COST = "lineItem/UnblendedCost"
START = "lineItem/UsageStartDate"
# Assembly ids are random UUIDs: the one the period-level manifest names sorts *first*, so that
# breaking a LastModified tie by the id (the old behaviour) takes the oldest, shortest assembly.
CURRENT = "0b7e5f0a-6d3c-4c55-9a7e-2f1c0d9b8a11"
OLDER = "7c41d2e8-1f0b-4a9e-8b3d-5e6f7a8b9c22"
OLDEST = "f2a9c3d4-5b6e-4f70-8a1b-2c3d4e5f6a33"
LATE_DAY = dt.date(2023, 11, 12)  # only the current assembly has reached it
SHARED_DAY = dt.date(2023, 11, 4)  # in every assembly, at a different (restated) cost


def _sample() -> tuple[list[str], list[list[str]]]:
    with open(AWS_SAMPLE, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _assembly_rows(up_to: str, factor: int) -> tuple[list[str], list[list[str]]]:
    """The sample's rows up to a usage day, costs multiplied by `factor` (an older, restated version)."""
    header, rows = _sample()
    start, cost = header.index(START), header.index(COST)
    out = []
    for row in rows:
        if row[start][:10] > up_to:
            continue
        row = list(row)
        if factor != 1 and row[cost].strip():
            row[cost] = str(Decimal(row[cost]) * factor)
        out.append(row)
    return header, out


def _write_assembly(report: Path, assembly: str, header: list[str], rows: list[list[str]]) -> dict:
    folder = report / PERIOD / assembly
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{REPORT}-1.csv.gz", "wt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    manifest = {
        "assemblyId": assembly,
        "account": "111111111111",
        "reportName": REPORT,
        "bucket": "origin-bucket",
        "billingPeriod": {"start": "20231101T000000.000Z", "end": "20231201T000000.000Z"},
        "reportKeys": [f"cur/{REPORT}/{PERIOD}/{assembly}/{REPORT}-1.csv.gz"],
        "additionalArtifactKeys": [],
    }
    (folder / f"{REPORT}-Manifest.json").write_text(json.dumps(manifest))
    return manifest


def legacy_landing(root: Path, named: str | None, assemblies: dict[str, tuple[str, int]]) -> Path:
    """A legacy CUR report in create-new-version mode with several assemblies of November 2023;
    the period-level manifest (absent when `named` is None) is a copy of the named assembly's."""
    report = root / "cur" / REPORT
    manifests = {a: _write_assembly(report, a, *_assembly_rows(*spec)) for a, spec in assemblies.items()}
    if named is not None:
        (report / PERIOD / f"{REPORT}-Manifest.json").write_text(json.dumps(manifests[named]))
    return report


def same_mtime(root: Path) -> None:
    """Every file of a local landing zone modified at one instant, as a one-go copy leaves them."""
    instant = time.time() - 60
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (instant, instant))


def delivered_cost(files: list[Path], day: dt.date) -> Decimal:
    """Independent of the pipeline: Decimal over the CSV cells of the day's rows (csv and gzip modules)."""
    total = Decimal(0)
    for path in files:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row[START][:10] == day.isoformat() and row[COST].strip():
                    total += Decimal(row[COST])
    return total


# ---- S3: a landing zone copied in one burst ------------------------------------------------------------


def sync_in_one_burst(client, local: Path, bucket: str, prefix: str) -> set:
    """Upload every file of `local` like `aws s3 sync` does, within one second, so that S3 (whole
    seconds) gives every object the same LastModified; retried if the burst straddled a second."""
    paths = sorted(p for p in local.rglob("*") if p.is_file())
    bodies = {f"{prefix}/{p.relative_to(local).as_posix()}": p.read_bytes() for p in paths}
    for _ in range(5):
        time.sleep(1.02 - time.time() % 1)  # start just after a second boundary
        for key, body in bodies.items():
            client.put_object(Bucket=bucket, Key=key, Body=body)
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")["Contents"]
        assert {o["Key"] for o in listed} == set(bodies)
        stamps = {o["LastModified"] for o in listed}
        if len(stamps) == 1:
            return stamps
    return stamps


def _s3_config(tmp_path: Path, endpoint: str, bucket: str, provider: str = "aws_cur"):
    return load_config(
        write_config(
            tmp_path,
            [{"name": "cur", "provider": provider, "url": f"s3://{bucket}/cur/{REPORT}"}],
            lake_url=f"s3://{bucket}-lake/curated",
            invoices_url=f"s3://{bucket}/invoices",
            start_date="2023-11-01",
            storage_options={"endpoint_url": endpoint},
        )
    )


def test_synced_legacy_cur_takes_the_assembly_the_period_manifest_names(tmp_path: Path, s3_endpoint: str) -> None:
    client = s3_client(s3_endpoint)
    for bucket in ("synced", "synced-lake"):
        client.create_bucket(Bucket=bucket)
    assemblies = {CURRENT: ("2023-11-14", 1), OLDER: ("2023-11-09", 3), OLDEST: ("2023-11-05", 2)}
    report = legacy_landing(tmp_path / "landing", CURRENT, assemblies)
    assert min(assemblies) == CURRENT  # an id tie-break would not find it
    stamps = sync_in_one_burst(client, report, "synced", f"cur/{REPORT}")
    assert len(stamps) == 1, f"the copy did not give every object one LastModified: {stamps}"

    config = _s3_config(tmp_path, s3_endpoint, "synced")
    store = config.store()
    deliveries = adapter_for("aws_cur").discover(store, "cur", config.sources[0].url, "2023-11", "auto")
    assert {d.version for d in deliveries} == set(assemblies)
    assert len({d.delivered_at for d in deliveries}) == 1  # nothing in the object times decides
    assert choose_current(deliveries).current.version == CURRENT

    current_files = [report / PERIOD / CURRENT / f"{REPORT}-1.csv.gz"]
    for day in (LATE_DAY, SHARED_DAY):
        run = run_spine(config, day, store)
        assert run.raw[0].version == CURRENT
        expected = delivered_cost(current_files, day)
        assert expected != 0
        raw = pl.read_parquet(
            io.BytesIO(
                client.get_object(Bucket="synced-lake", Key=slice_url("curated", "raw_line_items", day, "cur"))[
                    "Body"
                ].read()
            )
        )
        assert set(raw["x_ExportVersion"]) == {CURRENT}
        assert sum((Decimal(v) for v in raw[COST]), Decimal(0)) == expected
        normalized = pl.read_parquet(
            io.BytesIO(
                client.get_object(Bucket="synced-lake", Key=slice_url("curated", "normalized_line_items", day, "cur"))[
                    "Body"
                ].read()
            )
        )
        assert sum((Decimal(str(v)) for v in normalized["BilledCost"]), Decimal(0)) == expected
        assert run.normalized[0].billed_cost == expected
    # the older assemblies would have given other numbers for the shared day
    for older in (OLDER, OLDEST):
        assert delivered_cost([report / PERIOD / older / f"{REPORT}-1.csv.gz"], SHARED_DAY) != expected


def test_synced_assemblies_without_a_period_manifest_are_a_tie_that_holds_the_day_back(
    tmp_path: Path, s3_endpoint: str
) -> None:
    client = s3_client(s3_endpoint)
    for bucket in ("tied", "tied-lake"):
        client.create_bucket(Bucket=bucket)
    report = legacy_landing(tmp_path / "landing", None, {OLDER: ("2023-11-09", 3), OLDEST: ("2023-11-05", 2)})
    assert len(sync_in_one_burst(client, report, "tied", f"cur/{REPORT}")) == 1
    config = _s3_config(tmp_path, s3_endpoint, "tied")
    store = config.store()

    choice = choose_current(adapter_for("aws_cur").discover(store, "cur", config.sources[0].url, "2023-11", "auto"))
    assert choice.current is None and choice.held_back
    assert {d.version for d in choice.ambiguous} == {OLDER, OLDEST}
    assert OLDER in choice.problem and OLDEST in choice.problem

    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError) as raised:
        build_raw_slice(config.sources[0], SHARED_DAY, store, config.lake_url, workdir)
    message = str(raised.value)
    assert OLDER in message and OLDEST in message and "ties as current" in message
    assert not store.exists(slice_url(config.lake_url, "raw_line_items", SHARED_DAY, "cur"))
    records = pl.read_parquet(
        io.BytesIO(
            client.get_object(Bucket="tied-lake", Key=quarantine_url("curated", "records", SHARED_DAY, "cur"))[
                "Body"
            ].read()
        )
    )
    assert set(records["kind"]) == {"ambiguous"}
    assert set(records["export_version"]) == {OLDER, OLDEST}


# ---- the named assembly incomplete: the others in time order, a tie among them held back ---------------


def test_an_incomplete_named_assembly_falls_back_to_the_previous_complete_one(tmp_path: Path) -> None:
    report = legacy_landing(tmp_path / "landing", CURRENT, {CURRENT: ("2023-11-14", 1), OLDER: ("2023-11-09", 3)})
    (report / PERIOD / CURRENT / f"{REPORT}-1.csv.gz").unlink()  # the copy lost a file of the named one
    same_mtime(report)
    adapter = adapter_for("aws_cur")
    choice = choose_current(adapter.discover(Store(), "cur", str(report), "2023-11", "auto"))
    assert choice.current.version == OLDER
    assert [d.version for d in choice.passed_over] == [CURRENT]
    assert choice.passed_over[0].incomplete and choice.passed_over[0].named_current

    config = load_config(
        write_config(tmp_path, [{"name": "cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01")
    )
    run = run_spine(config, SHARED_DAY)
    assert run.raw[0].version == OLDER and run.raw[0].passed_over_versions == [CURRENT]
    assert run.normalized[0].billed_cost == delivered_cost([report / PERIOD / OLDER / f"{REPORT}-1.csv.gz"], SHARED_DAY)

    # two complete candidates left with one LastModified: nothing decides between them
    legacy_landing(tmp_path / "landing", None, {OLDEST: ("2023-11-05", 2)})
    same_mtime(report)
    choice = choose_current(adapter.discover(Store(), "cur", str(report), "2023-11", "auto"))
    assert choice.current is None and choice.held_back
    assert {d.version for d in choice.ambiguous} == {OLDER, OLDEST}
    assert [d.version for d in choice.passed_over][0] == CURRENT  # the incomplete named one is still reported
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match="ties as current") as raised:
        build_raw_slice(config.sources[0], SHARED_DAY, Store(), config.lake_url, workdir)
    assert OLDER in str(raised.value) and OLDEST in str(raised.value) and "not delivered" in str(raised.value)


def test_an_unreadable_period_manifest_is_reported_and_time_order_decides(tmp_path: Path) -> None:
    report = legacy_landing(tmp_path / "landing", None, {OLDER: ("2023-11-09", 3), OLDEST: ("2023-11-05", 2)})
    (report / PERIOD / f"{REPORT}-Manifest.json").write_text("{ not json")
    same_mtime(report)
    newer = time.time()
    os.utime(report / PERIOD / OLDER / f"{REPORT}-Manifest.json", (newer, newer))
    choice = choose_current(adapter_for("aws_cur").discover(Store(), "cur", str(report), "2023-11", "auto"))
    assert choice.current.version == OLDER
    assert [p.kind for d in choice.passed_over for p in d.problems] == ["bad_manifest"]


# ---- Data Exports and Azure: dated by the times their manifests state ----------------------------------


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_data_exports_are_ordered_by_export_time_not_object_time(tmp_path: Path) -> None:
    sample = sample_as_cur2_frame()
    restated = sample.with_columns(
        (pl.col("line_item_unblended_cost").cast(pl.Decimal(38, 10)) * 2)
        .cast(pl.String)
        .alias("line_item_unblended_cost")
    )
    root = tmp_path / "landing" / "cur2-export"
    write_data_export(
        root, "exec-late", {"part-1.csv.gz": restated}, export_time="2023-11-12T06:00:00Z", file_format="csv"
    )
    write_data_export(
        root, "exec-early", {"part-1.csv.gz": sample}, export_time="2023-11-10T06:00:00Z", file_format="csv"
    )
    metadata = root / "metadata" / "BILLING_PERIOD=2023-11"
    _age(metadata / "exec-late" / "cur2-export-Manifest.json", 3600)  # copied later: object times reversed
    _age(metadata / "exec-early" / "cur2-export-Manifest.json", 60)
    deliveries = adapter_for("aws_cur2").discover(Store(), "cur2", str(root), "2023-11", "auto")
    assert [d.version for d in sorted(deliveries, key=lambda d: d.delivered_at)] == ["exec-early", "exec-late"]
    assert choose_current(deliveries).current.version == "exec-late"

    config = load_config(
        write_config(tmp_path, [{"name": "cur2", "provider": "aws_cur2", "url": str(root)}], start_date="2023-11-01")
    )
    run = run_spine(config, dt.date(2023, 11, 1))
    assert run.raw[0].version == "exec-late"
    day_rows = restated.filter(pl.col("line_item_usage_start_date").str.slice(0, 10) == "2023-11-01")
    assert run.normalized[0].billed_cost == sum((Decimal(v) for v in day_rows["line_item_unblended_cost"]), Decimal(0))

    # the same export time on two refreshes with other files: an error naming both, not a guess
    write_data_export(
        root, "exec-twin", {"part-1.csv.gz": sample}, export_time="2023-11-12T06:00:00Z", file_format="csv"
    )
    choice = choose_current(adapter_for("aws_cur2").discover(Store(), "cur2", str(root), "2023-11", "auto"))
    assert choice.current is None and {d.version for d in choice.ambiguous} == {"exec-late", "exec-twin"}
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError) as raised:
        build_raw_slice(config.sources[0], dt.date(2023, 11, 1), Store(), config.lake_url, workdir)
    assert "exec-late" in str(raised.value) and "exec-twin" in str(raised.value)


def test_azure_runs_are_ordered_by_submitted_time_not_object_time(tmp_path: Path) -> None:
    root = tmp_path / "landing" / "actual"
    late = write_run(
        root, "20230901-20230930", "run-late", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-12T00:00:00.1234567Z"
    )
    early = write_run(
        root, "20230901-20230930", "run-early", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-10T00:00:00Z"
    )
    _age(late / "manifest.json", 3600)
    _age(early / "manifest.json", 60)
    deliveries = AzureAdapter().discover(Store(), "azure", str(root), "2023-09", "auto")
    assert choose_current(deliveries).current.version == "ActualCost:run-late"

    # same submitted time, other files: held back naming both, even if one of them is checked first
    write_run(
        root,
        "20230901-20230930",
        "run-twin",
        {"part_1.csv": EA_ACTUAL, "part_2.csv": EA_ACTUAL},
        submitted="2023-09-12T00:00:00.1234567Z",
    )
    choice = choose_current(AzureAdapter().discover(Store(), "azure", str(root), "2023-09", "auto"))
    assert choice.held_back
    assert {d.version for d in choice.ambiguous} == {"ActualCost:run-late", "ActualCost:run-twin"}
    source = SourceConfig(name="azure", provider="azure", url=str(root))
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match="run-twin") as raised:
        build_raw_slice(source, dt.date(2023, 9, 4), Store(), str(tmp_path / "lake"), workdir)
    assert "run-late" in str(raised.value)

    # a run of the same time that fails its row counts is incomplete, not a rival
    counted = tmp_path / "counted" / "actual"
    write_run(
        counted,
        "20230901-20230930",
        "run-a",
        {"part_1.csv": EA_ACTUAL},
        submitted="2023-09-12T00:00:00Z",
        tamper={"part_1.csv": {"dataRowCount": 1}},
    )
    write_run(counted, "20230901-20230930", "run-b", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-12T00:00:00Z")
    choice = choose_current(AzureAdapter().discover(Store(), "azure", str(counted), "2023-09", "auto"))
    assert choice.current.version == "ActualCost:run-b" and not choice.ambiguous
