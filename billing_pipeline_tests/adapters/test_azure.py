"""Azure cost exports: the public EA / MCA / localized samples through the spine with exact
conservation, run manifests as the completeness signal (incomplete runs held back, the previous
complete run used), restatements, legitimate repeated rows vs. true duplicates, Actual vs Amortized."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import shutil
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.adapters.azure import (
    AzureAdapter,
    blob_entry,
    canonical_header,
    focus_unit_name,
    manifest_document,
)
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.guard import DeliveryIncompleteError
from billing_pipeline.spine.raw import build_raw_slice

from ..conftest import SAMPLES, run_spine, write_config

EA_ACTUAL = SAMPLES / "finops-toolkit_EA_ActualCost_Small.csv"
EA_AMORTIZED = SAMPLES / "finops-toolkit_EA_AmortizedCost_Small.csv"
EA_CONVERTERS = SAMPLES / "focus_converters_sample-anonymous-ea-export-dataset.csv"
KOKU_V2 = SAMPLES / "koku_azure_version_2.csv"
MCA_CAMEL = SAMPLES / "koku_camel_azure_version_2.csv"
GERMAN = SAMPLES / "opencost_headersets__German.csv"
LOCALIZED_YA = SAMPLES / "opencost_headersets__YA.csv"
PAYG = SAMPLES / "opencost_headersets__PayAsYouGo.csv"
COST = (
    "Cost",
    "CostInBillingCurrency",
    "costInBillingCurrency",
    "PreTaxCost (PreTaxCost)",
    "PreTaxCost",
    "costInBillingCurrency",
)
DATE = ("Date", "date", "UsageDateTime (UsageDateTime)", "UsageDateTime")


def _day(text: str) -> dt.date:
    for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


def write_run(
    root: Path,
    range_name: str,
    run_id: str,
    files: dict[str, bytes | Path],
    dataset: str = "ActualCost",
    submitted: str = "2023-09-25T00:00:00Z",
    overwrite: bool = False,
    tamper: dict | None = None,
) -> Path:
    """One partitioned export run: its blobs and a manifest.json (optionally with wrong numbers)."""
    folder = root / range_name if overwrite else root / range_name / run_id
    folder.mkdir(parents=True, exist_ok=True)
    blobs = []
    for name, content in files.items():
        target = folder / name
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_bytes(content)
        blobs.append(blob_entry(target, f"exports/{root.name}/{target.relative_to(root)}"))
    for name, change in (tamper or {}).items():
        for blob in blobs:
            if blob["blobName"].endswith(name):
                blob.update(change)
    document = manifest_document(run_id, blobs, dataset, dt.datetime.fromisoformat(submitted.replace("Z", "+00:00")))
    (folder / "manifest.json").write_text(json.dumps(document))
    return folder


def _config(tmp_path: Path, root: Path, start: str = "2019-01-01") -> BillingConfig:
    return load_config(
        write_config(tmp_path, [{"name": "azure", "provider": "azure", "url": str(root)}], start_date=start)
    )


def _expected(sample: Path) -> dict[tuple[dt.date, str, str], Decimal]:
    out: dict[tuple[dt.date, str, str], Decimal] = defaultdict(Decimal)
    with open(sample, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            keys = {canonical_header(k): v for k, v in row.items()}
            cost = next(keys[c.lower()] for c in ("CostInBillingCurrency", "Cost", "PreTaxCost") if c.lower() in keys)
            date = next(keys[c.lower()] for c in ("Date", "UsageDateTime") if c.lower() in keys)
            account = keys.get("billingaccountid") or keys.get("subscriptionid") or keys.get("subscriptionguid")
            currency = next(keys[c] for c in ("billingcurrency", "billingcurrencycode", "currency") if c in keys)
            out[(_day(date), account, currency)] += Decimal(cost)
    return dict(out)


def _normalized(config: BillingConfig, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, "azure"))


@pytest.mark.parametrize(
    "sample",
    [EA_ACTUAL, EA_CONVERTERS, KOKU_V2, MCA_CAMEL, GERMAN, LOCALIZED_YA, PAYG],
    ids=["ea-actual", "ea-costinbillingcurrency", "koku-v2", "mca-camel", "german", "localized-ya", "payg"],
)
def test_public_samples_are_conserved_exactly(tmp_path: Path, sample: Path) -> None:
    expected = _expected(sample)
    days = sorted({k[0] for k in expected})
    root = tmp_path / "landing" / "actual"
    range_name = f"{days[0]:%Y%m}01-{days[0]:%Y%m}28"
    write_run(root, range_name, "run-1", {"part_0_0001.csv": sample})
    config = _config(tmp_path, root)
    for day in days:
        run = run_spine(config, day)
        assert run.raw[0].problems == []
        assert (run.reconciliation["conservation_delta"] == 0).all()
        target = Path(slice_url(config.lake_url, "normalized_line_items", day, "azure"))
        normalized = (
            pl.read_parquet(target)
            if target.exists()
            else pl.DataFrame(
                schema={
                    "BillingAccountId": pl.String,
                    "BillingCurrency": pl.String,
                    "BilledCost": pl.Decimal(38, 18),
                    "ServiceName": pl.String,
                    "PricingUnit": pl.String,
                }
            )
        )
        got = normalized.group_by("BillingAccountId", "BillingCurrency").agg(pl.col("BilledCost").sum())
        valid = {(k[1], k[2]): v for k, v in expected.items() if k[0] == day and len(k[2]) == 3}
        assert {(a, c): v for a, c, v in got.iter_rows()} == valid
        invalid = [k for k in expected if k[0] == day and len(k[2]) != 3]  # koku-v2 bills in "MC"
        assert (run.normalized[0].quarantined_rows > 0) == bool(invalid)
        assert normalized["ServiceName"].null_count() == 0 and normalized["PricingUnit"].str.contains("/1").sum() == 0


def test_actual_and_amortized_views_follow_domain_rules(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    write_run(root / "actual", "20230901-20230930", "a-1", {"part_1.csv": EA_ACTUAL}, "ActualCost")
    write_run(root / "amortized", "20230901-20230930", "m-1", {"part_1.csv": EA_AMORTIZED}, "AmortizedCost")
    config = load_config(
        write_config(
            tmp_path,
            [
                {"name": "actual", "provider": "azure", "url": str(root / "actual")},
                {"name": "amortized", "provider": "azure", "url": str(root / "amortized")},
            ],
            start_date="2023-09-01",
        )
    )
    purchase_day, covered_day = dt.date(2023, 9, 21), dt.date(2023, 9, 22)
    run_spine(config, purchase_day)
    run_spine(config, covered_day)
    actual = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", purchase_day, "actual"))
    purchase = actual.filter(pl.col("ChargeCategory") == "Purchase").row(0, named=True)
    assert purchase["BilledCost"] == Decimal("3.25") and purchase["EffectiveCost"] == 0  # amortized onto usage
    assert purchase["CommitmentDiscountType"] == "Reservation" and purchase["x_Dataset"] == "ActualCost"
    amortized = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", covered_day, "amortized"))
    covered = amortized.filter(pl.col("x_PricingModel") == "Reservation")
    assert covered.height and (covered["BilledCost"] == 0).all() and (covered["EffectiveCost"] > 0).all()
    assert set(covered["CommitmentDiscountStatus"]) == {"Used"} and set(covered["PricingCategory"]) == {"Committed"}
    on_demand = amortized.filter(pl.col("x_PricingModel") == "OnDemand")
    assert (on_demand["BilledCost"] == on_demand["EffectiveCost"]).all()
    raw = pl.read_csv(EA_AMORTIZED, infer_schema=False, encoding="utf8-lossy")
    day_raw = raw.filter(pl.col("Date") == "09/22/2023")
    assert amortized["EffectiveCost"].sum() == day_raw["Cost"].cast(pl.Decimal(38, 18)).sum()


def test_incomplete_runs_are_held_back_and_the_previous_complete_run_is_used(tmp_path: Path) -> None:
    root = tmp_path / "landing" / "actual"
    day = dt.date(2023, 9, 4)
    write_run(root, "20230901-20230930", "run-1", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-10T00:00:00Z")
    restated = pl.read_csv(EA_ACTUAL, infer_schema=False).with_columns(
        (pl.col("Cost").cast(pl.Decimal(38, 18)) * 2).cast(pl.String).alias("Cost")
    )
    body = restated.write_csv().encode()
    # newer runs, each incomplete in its own way
    write_run(
        root,
        "20230901-20230930",
        "run-2",
        {"part_1.csv": body},
        submitted="2023-09-11T00:00:00Z",
        tamper={"part_1.csv": {"dataRowCount": 99}},
    )
    write_run(
        root,
        "20230901-20230930",
        "run-3",
        {"part_1.csv": body},
        submitted="2023-09-12T00:00:00Z",
        tamper={"part_1.csv": {"byteCount": 5}},
    )
    missing = write_run(
        root, "20230901-20230930", "run-4", {"part_1.csv": body, "part_2.csv": body}, submitted="2023-09-13T00:00:00Z"
    )
    (missing / "part_2.csv").unlink()
    config = _config(tmp_path, root)
    run = run_spine(config, day)
    assert run.raw[0].version == "ActualCost:run-1"
    assert run.raw[0].passed_over_versions == ["ActualCost:run-4", "ActualCost:run-3", "ActualCost:run-2"]
    reasons = " ".join(pl.read_parquet(quarantine_url(config.lake_url, "records", day, "azure"))["reason"])
    assert "dataRowCount 99" in reasons and "byteCount 5" in reasons and "not delivered" in reasons
    expected = sum(v for k, v in _expected(EA_ACTUAL).items() if k[0] == day)
    assert _normalized(config, day)["BilledCost"].sum() == expected

    # a complete restatement wins; only incomplete runs of a month hold the day back
    write_run(root, "20230901-20230930", "run-5", {"part_1.csv": body}, submitted="2023-09-14T00:00:00Z")
    assert run_spine(config, day).raw[0].version == "ActualCost:run-5"
    assert _normalized(config, day)["BilledCost"].sum() == expected * 2
    alone = tmp_path / "alone" / "actual"
    write_run(alone, "20230901-20230930", "run-1", {"part_1.csv": body}, tamper={"part_1.csv": {"dataRowCount": 1}})
    other = _config(tmp_path / "alone", alone)
    with scratch_dir() as workdir, pytest.raises(DeliveryIncompleteError, match="dataRowCount 1"):
        build_raw_slice(other.sources[0], day, Store(), other.lake_url, workdir)


def test_early_month_reexport_of_the_previous_month_restates_it(tmp_path: Path) -> None:
    root = tmp_path / "landing" / "actual"
    write_run(root, "20230901-20230930", "mtd-30", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-30T06:00:00Z")
    final = pl.read_csv(EA_ACTUAL, infer_schema=False).with_columns(pl.lit("1.00").alias("Cost"))
    write_run(
        root,
        "20230901-20230930",
        "reexport-10-02",
        {"part_1.csv.gz": gzip.compress(final.write_csv().encode())},
        submitted="2023-10-02T06:00:00Z",
    )
    write_run(
        root,
        "20231001-20231031",
        "mtd-10-02",
        {"part_1.csv": b"Date,Cost,BillingCurrency,BillingAccountId\n"},
        submitted="2023-10-02T07:00:00Z",
    )
    config = _config(tmp_path, root)
    run = run_spine(config, dt.date(2023, 9, 4))
    assert run.raw[0].version == "ActualCost:reexport-10-02"
    normalized = _normalized(config, dt.date(2023, 9, 4))
    assert normalized["BilledCost"].sum() == normalized.height


def test_repeated_rows_are_kept_and_a_blob_delivered_twice_is_counted_once(tmp_path: Path) -> None:
    sample = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy")
    usage = sample.filter(pl.col("Date") == "09/04/2023")
    with_repeat = pl.concat([usage, usage.head(2)])  # two legitimate identical rows within one blob
    body = with_repeat.write_csv().encode()
    root = tmp_path / "landing" / "actual"
    write_run(root, "20230901-20230930", "run-1", {"part_0_0001.csv": body, "part_0_0002.csv": body})
    config = _config(tmp_path, root)
    day = dt.date(2023, 9, 4)
    run = run_spine(config, day)
    stats = run.normalized[0]
    assert stats.rows == with_repeat.height  # the repeats within the blob are kept
    assert stats.duplicate_rows == with_repeat.height  # the second blob is the same rows again
    expected = with_repeat["Cost"].cast(pl.Decimal(38, 18)).sum()
    assert _normalized(config, day)["BilledCost"].sum() == expected
    assert (run.reconciliation["conservation_delta"] == 0).all()
    assert run.reconciliation["duplicate_total"].sum() == expected


def test_overwrite_mode_parquet_and_legacy_files_without_manifest(tmp_path: Path) -> None:
    frame = pl.read_csv(EA_CONVERTERS, infer_schema=False).with_columns(
        pl.col("CostInBillingCurrency").cast(pl.Float64)
    )
    parquet = tmp_path / "part.parquet"
    frame.write_parquet(parquet)
    root = tmp_path / "landing" / "overwrite"
    write_run(root, "20230901-20230930", "run-9", {"part_0_0001.parquet": parquet}, overwrite=True)
    config = _config(tmp_path, root)
    day = dt.date(2023, 9, 2)
    run = run_spine(config, day)
    assert run.raw[0].version == "ActualCost:run-9" and (run.reconciliation["conservation_delta"] == 0).all()
    assert _normalized(config, day)["BilledCost"].sum() == sum(v for k, v in _expected(EA_CONVERTERS).items())

    legacy = tmp_path / "legacy" / "usage" / "20190701-20190731"
    legacy.mkdir(parents=True)
    shutil.copy(PAYG, legacy / "old.csv")  # an older, non-partitioned export: no manifest at all
    deliveries = AzureAdapter().discover(Store(), "legacy", str(legacy.parent), "2019-07", "auto")
    assert [d.version for d in deliveries] == ["ActualCost:file:old.csv"]


def test_unit_and_header_spellings() -> None:
    assert focus_unit_name("1 Hour") == "Hours"
    assert focus_unit_name("100 Hours") == "100 Hours"
    assert focus_unit_name("10K") == "10000 Units"
    assert focus_unit_name("1 GB/Month") == "GB-Months"
    assert focus_unit_name("1 /Month") == "Months"
    assert focus_unit_name("10 GB") == "10 GB"
    assert canonical_header("\ufeffKategorie der Verbrauchseinheit (MeterCategory)") == "metercategory"
    assert canonical_header("costInBillingCurrency") == "costinbillingcurrency"


def test_generated_runs_match_ground_truth(tmp_path: Path) -> None:
    from billing_pipeline.tools.generator import generate_landing_zone

    truth = generate_landing_zone(tmp_path / "landing", days=5, rows_per_day=40, providers=["azure"])
    root = tmp_path / "landing" / "azure" / "cost-exports" / "actual-daily"
    config = _config(tmp_path, root, start="2026-10-01")
    assert [d.number for d in truth.deliveries] == [1, 2, 3] and truth.deliveries[-1].final
    manifest = json.loads(truth.deliveries[-1].manifest.read_text())
    assert manifest["dataRowCount"] == sum(b["dataRowCount"] for b in manifest["blobs"])
    for day in sorted(set(truth.frame["date"])):
        run = run_spine(config, day)
        assert run.raw[0].version == f"ActualCost:{truth.deliveries[-1].delivery_id}"  # the re-export wins
        expected = truth.frame.filter(pl.col("date") == day).row(0, named=True)
        got = run.normalized[0]
        assert (got.billed_cost, got.effective_cost, got.rows, got.duplicate_rows) == (
            expected["billed_cost"],
            expected["effective_cost"],
            expected["rows"],
            expected["duplicate_rows"],
        ), day
        assert (run.reconciliation["conservation_delta"] == 0).all()


def test_a_restating_run_requests_only_the_days_it_changes(tmp_path: Path) -> None:
    from billing_pipeline.defs.sensors import scan_source
    from billing_pipeline.spine.raw import build_raw_slice_if_changed

    root = tmp_path / "landing" / "actual"
    write_run(root, "20230901-20230930", "run-1", {"part_1.csv": EA_ACTUAL}, submitted="2023-09-25T00:00:00Z")
    config = _config(tmp_path, root, start="2023-09-01")
    source, store, now = config.sources[0], Store(), dt.datetime(2023, 9, 28, tzinfo=dt.UTC)
    first = scan_source(store, config, source, {}, now, lambda key: True)
    days = sorted({r.day for r in first.requests})
    assert days == [dt.date(2023, 9, 4), dt.date(2023, 9, 5), dt.date(2023, 9, 21)]
    with scratch_dir() as workdir:
        for day in days:
            build_raw_slice_if_changed(source, day, store, config.lake_url, workdir)
    restated = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy").with_columns(
        pl.when(pl.col("Date") == "09/05/2023").then(pl.lit("9.99")).otherwise(pl.col("Cost")).alias("Cost")
    )
    write_run(
        root,
        "20230901-20230930",
        "run-2",
        {"part_1.csv": restated.write_csv().encode()},
        submitted="2023-09-26T00:00:00Z",
    )
    again = scan_source(store, config, source, first.cursor, now, lambda key: True)
    assert sorted({r.day for r in again.requests}) == [dt.date(2023, 9, 5)]


def test_a_focus_cost_run_goes_through_the_focus_mapping(tmp_path: Path) -> None:
    focus = pl.read_csv(SAMPLES / "focus-sample-data_FOCUS-1.0_focus_sample.csv", infer_schema=False).filter(
        pl.col("ProviderName") == "Microsoft"
    )
    root = tmp_path / "landing" / "focus-cost"
    first = dt.date.fromisoformat(focus["ChargePeriodStart"].min()[:10])
    write_run(
        root,
        f"{first:%Y%m}01-{first:%Y%m}30",
        "run-1",
        {"part_0_0001.csv": focus.write_csv().encode()},
        dataset="FocusCost",
    )
    config = _config(tmp_path, root, start=f"{first:%Y-%m}-01")
    day_rows = focus.filter(pl.col("ChargePeriodStart").str.slice(0, 10) == first.isoformat())
    run = run_spine(config, first)
    assert run.raw[0].version == "FocusCost:run-1"
    assert (run.reconciliation["conservation_delta"] == 0).all()
    normalized = _normalized(config, first)
    assert normalized.height == day_rows.height
    assert normalized["BilledCost"].sum() == day_rows["BilledCost"].cast(pl.Decimal(38, 18)).sum()
