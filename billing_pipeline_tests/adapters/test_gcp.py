"""GCP billing export: the public koku samples rebuilt into the native nested shape, append-only
semantics (corrections kept, re-exports counted once), credits as FOCUS rows, invoice months,
and the incremental BigQuery pull against a fake client that checks the query it is sent."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import shutil
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from billing_pipeline.adapters.gcp import CREDIT, GcpAdapter
from billing_pipeline.adapters.gcp_bigquery import QUERY, pull_export, pull_with_resource, watermark
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.storage import Store
from billing_pipeline.tools.generator.gcp_samples import koku_csv_to_nested, write_ndjson, write_parquet

from ..conftest import SAMPLES, gcp_delivered_totals, parquet_cost_totals, run_spine, write_config

KOKU_2020 = SAMPLES / "koku_202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv"
KOKU_2022 = SAMPLES / "koku_2022-08-01_5.csv"


def _config(tmp_path: Path, landing: Path, start: str = "2020-01-01") -> BillingConfig:
    return load_config(
        write_config(tmp_path, [{"name": "gcp", "provider": "gcp", "url": str(landing)}], start_date=start)
    )


def _expected(sample: Path) -> dict[tuple[dt.date, str, str], tuple[Decimal, int, int]]:
    """(day, account, currency) -> (cost + credits, charge rows, credit rows), with the csv module."""
    out: dict[tuple[dt.date, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
    with open(sample, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (dt.date.fromisoformat(row["usage_start_time"][:10]), row["billing_account_id"], row["currency"])
            credits = ast.literal_eval(row["credits"])
            out[key][0] += Decimal(repr(float(row["cost"]))) + sum(
                (Decimal(repr(float(c["amount"]))) for c in credits), Decimal(0)
            )
            out[key][1] += 1
            out[key][2] += len(credits)
    return {k: tuple(v) for k, v in out.items()}


def _normalized(config: BillingConfig, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, "gcp"))


def _independent(
    delivered: dict[tuple[dt.date, str, str], tuple[Decimal, int, int]],
    day: dt.date,
) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    """What the lake must hold for `day`, from the delivered cells alone (`gcp_delivered_totals`): per
    account and currency, BilledCost = EffectiveCost = cost + credits, one row per charge and per credit.
    Unlike `conservation_delta`, nothing here goes through the adapter, so a credit dropped both from the
    FOCUS rows and from the adapter's own raw totals still fails."""
    return {
        (account, currency): (total, total, charges + credits)
        for (d, account, currency), (total, charges, credits) in delivered.items()
        if d == day
    }


def _with_credits(frame: pl.DataFrame) -> pl.DataFrame:
    """The 2022 sample has no credits: give every second row (the odd ones) a sustained-use credit, so
    that a test on it also sees credits that go missing."""
    credit = pl.struct(
        pl.lit("Sustained Usage Discount").alias("name"),
        pl.lit(-0.012345).alias("amount"),
        pl.lit("Sustained Usage Discount").alias("full_name"),
        pl.lit("sud-1").alias("id"),
        pl.lit("SUSTAINED_USAGE_DISCOUNT").alias("type"),
    )
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 1)
        .then(pl.concat_list(credit))
        .otherwise(pl.col("credits"))
        .cast(pl.List(CREDIT))
        .alias("credits")
    )


def _lake(config: BillingConfig, day: dt.date) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    return parquet_cost_totals(slice_url(config.lake_url, "normalized_line_items", day, "gcp"))


@pytest.mark.parametrize("sample", [KOKU_2020, KOKU_2022], ids=["koku-2020-credits", "koku-2022-resources"])
@pytest.mark.parametrize("suffix", [".json.gz", ".parquet"])
def test_public_samples_are_conserved_exactly_with_credits_as_rows(tmp_path: Path, sample: Path, suffix: str) -> None:
    frame = koku_csv_to_nested(sample)
    landing = tmp_path / "landing"
    (write_ndjson if suffix == ".json.gz" else write_parquet)(frame, landing / f"export{suffix}")
    config = _config(tmp_path, landing)
    expected = _expected(sample)
    delivered = gcp_delivered_totals(landing / f"export{suffix}")
    assert delivered == expected  # the delivered file holds what the sample holds, credits included
    for day in sorted({k[0] for k in expected}):
        run = run_spine(config, day)
        assert (run.reconciliation["conservation_delta"] == 0).all()
        assert _lake(config, day) == _independent(delivered, day)
        normalized = _normalized(config, day)
        for (d, account, currency), (total, charges, credits) in expected.items():
            if d != day:
                continue
            rows = normalized.filter(pl.col("BillingAccountId") == account, pl.col("BillingCurrency") == currency)
            assert rows["BilledCost"].sum() == total
            assert rows.filter(pl.col("ChargeCategory") == "Credit").height == credits
            assert rows.filter(pl.col("ChargeCategory") != "Credit").height == charges
        assert run.normalized[0].duplicate_rows == 0 and run.normalized[0].quarantined_rows == 0
    credit = _normalized(config, sorted(k[0] for k in expected)[0]).filter(pl.col("ChargeCategory") == "Credit")
    if credit.height:
        assert set(credit["x_CreditType"]) == {"PROMOTION"}
        assert (credit["BilledCost"] == credit["EffectiveCost"]).all()
        assert credit["PricingQuantity"].null_count() == credit.height


def test_json_and_parquet_read_to_the_same_rows() -> None:
    adapter = GcpAdapter()
    frame = koku_csv_to_nested(KOKU_2022)
    with_json = adapter.read(write_ndjson(frame, Path(pytest.importorskip("tempfile").mkdtemp()) / "a.json"), "auto")
    with_parquet = adapter.read(
        write_parquet(frame, Path(pytest.importorskip("tempfile").mkdtemp()) / "a.parquet"), "auto"
    )
    assert with_json.collect().equals(with_parquet.collect())
    assert with_json.collect_schema()["usage_start_time"] == pl.Datetime("us", "UTC")


def test_a_reexported_window_is_counted_once_and_corrections_are_kept(tmp_path: Path) -> None:
    frame = _with_credits(koku_csv_to_nested(KOKU_2022))
    credits = frame["credits"].list.len().sum()
    assert credits > 0 and frame["credits"][0].len() == 0  # the corrected first row has none
    landing = tmp_path / "landing"
    write_ndjson(frame, landing / "export_date=2022-08-02" / "batch-1.json.gz")
    write_parquet(frame, landing / "export_date=2022-08-02" / "batch-1-repulled.parquet")  # same rows again
    # a correction: the first row negated and restated at a later export_time
    first = frame.head(1)
    later = first.get_column("export_time")[0] + dt.timedelta(days=3)
    negated = first.with_columns(
        -pl.col("cost") - 1.25,
        pl.lit(later).alias("export_time"),
        pl.struct(
            pl.lit("adj-1").alias("id"),
            pl.lit("late price change").alias("description"),
            pl.lit("COMPLETE_NEGATION").alias("mode"),
            pl.lit("USAGE_CORRECTION").alias("type"),
        ).alias("adjustment_info"),
        pl.lit("adjustment").alias("cost_type"),
    )
    write_ndjson(negated, landing / "export_date=2022-08-05" / "batch-2.json")
    config = _config(tmp_path, landing)
    day = dt.date(2022, 8, 1)
    run = run_spine(config, day)
    normalized = _normalized(config, day)
    # the re-pulled Parquet file repeats batch-1: counted once, from the delivered cells
    delivered = gcp_delivered_totals(
        landing / "export_date=2022-08-02" / "batch-1.json.gz", landing / "export_date=2022-08-05" / "batch-2.json"
    )
    assert _lake(config, day) == _independent(delivered, day)
    repulled = gcp_delivered_totals(landing / "export_date=2022-08-02" / "batch-1-repulled.parquet")
    assert run.normalized[0].duplicate_rows == sum(v[1] + v[2] for k, v in repulled.items() if k[0] == day)
    original = sum((Decimal(repr(v)) for v in frame["cost"]), Decimal(0)) + Decimal("-0.012345") * credits
    assert normalized["BilledCost"].sum() == original - Decimal(repr(frame["cost"][0])) - Decimal("1.25")
    assert run.normalized[0].duplicate_rows == frame.height + credits  # every re-pulled row and credit, counted
    duplicates = pl.read_parquet(quarantine_url(config.lake_url, "duplicates", day, "gcp"))
    assert duplicates["x_FileUri"].n_unique() == 1  # one copy kept (the first read), the other counted
    correction = normalized.filter(pl.col("ChargeClass") == "Correction")
    assert correction.height == 1 and correction["ChargeCategory"].item() == "Adjustment"
    assert correction["x_AdjustmentId"].item() == "adj-1"
    assert (run.reconciliation["conservation_delta"] == 0).all()
    # idempotence: same inputs, same rows
    again = run_spine(config, day)
    assert _normalized(config, day).drop("x_IngestedAt").equals(normalized.drop("x_IngestedAt"))
    assert again.normalized[0].duplicate_rows == run.normalized[0].duplicate_rows


def test_a_new_append_is_a_new_delivery_and_old_export_dates_are_skipped(tmp_path: Path) -> None:
    frame = koku_csv_to_nested(KOKU_2022)
    landing = tmp_path / "landing"
    write_ndjson(frame, landing / "export_date=2022-07-30" / "old.json")  # exported before the period
    write_ndjson(frame, landing / "export_date=2022-08-02" / "a.json")
    adapter = GcpAdapter()
    (first,) = adapter.discover(Store(), "gcp", str(landing), "2022-08", "auto")
    assert [Path(f).name for f in first.files] == ["a.json"]
    write_ndjson(frame.head(2), landing / "export_date=2022-08-03" / "b.json")
    (second,) = adapter.discover(Store(), "gcp", str(landing), "2022-08", "auto")
    assert second.version != first.version and len(second.files) == 2
    # each file keeps its identity (path, size, mtime): its day sums are cached by it across deliveries
    sizes = {f: Path(f).stat().st_size for f in second.files}
    assert len(second.file_identities) == len(second.files)
    assert all(i.startswith(f"{f}:{sizes[f]}:") for f, i in zip(second.files, second.file_identities, strict=True))
    assert first.file_identities[0] in second.file_identities


def test_a_row_without_cost_is_quarantined_with_its_credits(tmp_path: Path) -> None:
    frame = koku_csv_to_nested(KOKU_2020)
    broken = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("cost")).alias("cost"))
    landing = tmp_path / "landing"
    write_parquet(broken, landing / "export.parquet")
    config = _config(tmp_path, landing)
    day = broken.get_column("usage_start_time")[0].date()
    run = run_spine(config, day)
    assert _lake(config, day) == _independent(
        gcp_delivered_totals(landing / "export.parquet", skip=lambda row: row["cost"] is None), day
    )
    assert run.normalized[0].quarantined_rows == 1
    assert run.normalized[0].reasons == {"missing cost in cost": 1}
    bad = pl.read_parquet(quarantine_url(config.lake_url, "rows", day, "gcp"))
    assert bad.height == 1 and bad["credits"].str.contains("FreeTrial").all()  # nested kept, as JSON text
    assert (run.reconciliation["conservation_delta"] == 0).all()
    assert run.reconciliation["quarantined_total"].sum() == Decimal("-0.000005")  # the credit went with it


def test_late_rows_reconcile_on_their_invoice_month(tmp_path: Path) -> None:
    frame = koku_csv_to_nested(KOKU_2022).with_columns(
        pl.lit(1.5).alias("cost"),
        pl.lit([])
        .cast(
            pl.List(
                pl.Struct(
                    {
                        "name": pl.String,
                        "amount": pl.Float64,
                        "full_name": pl.String,
                        "id": pl.String,
                        "type": pl.String,
                    }
                )
            )
        )
        .alias("credits"),
    )
    base = frame.get_column("usage_start_time")[0]
    july_31 = frame.head(2).with_columns(
        (pl.col("usage_start_time") - (base - dt.datetime(2022, 7, 31, 23, tzinfo=dt.UTC))).alias("usage_start_time"),
        (pl.col("usage_end_time") - (base - dt.datetime(2022, 7, 31, 23, tzinfo=dt.UTC))).alias("usage_end_time"),
        pl.struct(pl.lit("202208").alias("month"), pl.lit(None, dtype=pl.String).alias("publisher_type")).alias(
            "invoice"
        ),
    )
    landing = tmp_path / "landing"
    write_ndjson(pl.concat([frame, july_31]), landing / "export.json")
    invoices = tmp_path / "invoices"
    invoices.mkdir()
    account = frame["billing_account_id"][0]
    total = Decimal("1.5") * (frame.height + 2)
    (invoices / "gcp.csv").write_text(
        f"invoice_id,billing_account_id,billing_period,currency,amount\nG-202208,{account},2022-08,USD,{total}\n"
    )
    config = _config(tmp_path, landing)
    run_spine(config, dt.date(2022, 7, 31))
    late = _normalized(config, dt.date(2022, 7, 31))
    assert set(late["BillingPeriodStart"].dt.date()) == {dt.date(2022, 8, 1)}
    assert set(late["x_InvoiceMonth"]) == {"202208"}
    august = run_spine(config, dt.date(2022, 8, 1)).reconciliation.row(0, named=True)
    assert august["month_to_date_total"] == total  # July 31's late rows count on August's invoice
    assert august["invoice_delta"] == 0


# ---- the BigQuery pull ------------------------------------------------------------------------------


class _Job:
    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def result(self) -> _Job:
        return self

    def to_arrow(self) -> pa.Table:
        return self.table


class FakeBigQuery:
    """Answers the pull's query like BigQuery would, from rows shaped like the export table."""

    def __init__(self, rows: pl.DataFrame) -> None:
        self.rows = rows
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def query(self, query: str, job_config: Any = None) -> _Job:
        params = {p.name: p.value for p in job_config.query_parameters}
        types = {p.name: p.type_ for p in job_config.query_parameters}
        assert types == {"since": "DATE", "watermark": "TIMESTAMP", "until": "TIMESTAMP"}
        self.calls.append((query, params))
        selected = self.rows.filter(
            pl.col("usage_start_time").dt.date() >= params["since"],
            pl.col("export_time") > params["watermark"],
            pl.col("export_time") <= params["until"],
        ).sort("export_time")
        return _Job(selected.to_arrow())

    def __enter__(self) -> FakeBigQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Resource:
    def __init__(self, client: FakeBigQuery) -> None:
        self.client = client

    def get_client(self) -> FakeBigQuery:
        return self.client


def test_bigquery_pull_is_incremental_parameterized_and_never_pulls_twice(tmp_path: Path) -> None:
    rows = koku_csv_to_nested(KOKU_2020)
    fake = FakeBigQuery(rows)
    out = tmp_path / "landing" / "gcp-pulled"
    table = "billing-proj.billing.gcp_billing_export_resource_v1_000000_B0BBA4_940A77"
    store = Store()
    last_export = rows["export_time"].max()
    now = last_export + dt.timedelta(hours=2)
    first = pull_with_resource(_Resource(fake), table, store, str(out), dt.date(2020, 11, 1), now=now)
    assert first.rows == rows.height and first.new_watermark == last_export
    query, params = fake.calls[0]
    assert query == QUERY.format(table=table)
    assert "DATE(_PARTITIONTIME) >= @since" in query and "export_time > @watermark" in query
    assert params["since"] == dt.date(2020, 11, 1) and params["until"] == now - dt.timedelta(hours=1)
    assert watermark(store, str(out)) == last_export

    again = pull_export(fake, table, store, str(out), dt.date(2020, 11, 1), now=now)
    assert again.rows == 0 and fake.calls[1][1]["watermark"] == last_export

    correction = rows.head(1).with_columns(-pl.col("cost"), pl.lit(now + dt.timedelta(hours=3)).alias("export_time"))
    fake.rows = pl.concat([rows, correction])
    later = pull_export(fake, table, store, str(out), dt.date(2020, 11, 1), now=now + dt.timedelta(hours=5))
    assert later.rows == 1
    with pytest.raises(ValueError, match="not a BigQuery table"):
        pull_export(
            fake, "proj.ds.t`; DROP TABLE x; --", store, str(out), dt.date(2020, 11, 1), now=now + dt.timedelta(days=9)
        )

    config = _config(tmp_path, out)
    day = rows["usage_start_time"][0].date()
    run = run_spine(config, day)
    assert run.normalized[0].duplicate_rows == 0  # pulled once, ingested once
    assert (run.reconciliation["conservation_delta"] == 0).all()
    pulled = sorted(out.rglob("bq-*.parquet"))
    assert len(pulled) == 2  # the first pull and the correction
    assert _lake(config, day) == _independent(gcp_delivered_totals(*pulled), day)  # credits included
    shutil.rmtree(out)


# ---- the generator's month of GCP appends -------------------------------------------------------------


def test_generated_month_matches_ground_truth_and_its_invoice(tmp_path: Path) -> None:
    from billing_pipeline.tools.generator import generate_landing_zone

    truth = generate_landing_zone(tmp_path / "landing", rows_per_day=20, providers=["gcp"])
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "gcp", "provider": "gcp", "url": str(tmp_path / "landing" / "gcp" / "billing-export")}],
            invoices_url=str(tmp_path / "landing" / "invoices"),
            start_date="2026-10-01",
        )
    )
    formats = {p.suffix for d in truth.deliveries for p in d.data_files}
    assert formats == {".gz", ".parquet"}  # NDJSON and Parquet appends
    exports = [d.export_time for d in truth.deliveries]
    assert exports == sorted(exports)
    days = sorted(set(truth.frame["date"]))
    # the re-pulled file's rows are duplicates; every other delivered file counts, corrections included
    repulled = [p for d in truth.deliveries if d.duplicate_rows for p in d.data_files]
    assert len(repulled) == 1
    delivered = gcp_delivered_totals(*[p for d in truth.deliveries for p in d.data_files if p not in repulled])
    for day in days:
        run = run_spine(config, day)
        assert _lake(config, day) == _independent(delivered, day), day
        expected = truth.frame.filter(pl.col("date") == day).row(0, named=True)
        got = run.normalized[0]
        assert (got.billed_cost, got.effective_cost, got.rows, got.duplicate_rows) == (
            expected["billed_cost"],
            expected["effective_cost"],
            expected["rows"],
            expected["duplicate_rows"],
        ), day
        assert (run.reconciliation["conservation_delta"] == 0).all()
    last = run.reconciliation.row(0, named=True)
    assert last["status"] == "matched" and last["invoice_delta"] == 0  # late month-end rows are on November's
    month_end = _normalized(config, days[-1])
    assert set(month_end["x_InvoiceMonth"]) == {"202610", "202611"}
    assert month_end.filter(pl.col("ChargeCategory") == "Credit").height > 0
    corrected = _normalized(config, days[1]).filter(pl.col("ChargeClass") == "Correction")
    assert corrected.height >= 6  # negations and restatements, both kept
    # idempotence: the whole spine again, same rows
    before = _normalized(config, days[1])
    run_spine(config, days[1])
    assert _normalized(config, days[1]).drop("x_IngestedAt").equals(before.drop("x_IngestedAt"))


def test_a_late_append_requests_only_the_days_it_changes(tmp_path: Path) -> None:
    """Invariant 4 for an append-only source: the sensor asks for exactly the days a new file touches."""
    from billing_pipeline.defs.sensors import scan_source
    from billing_pipeline.platform.storage import scratch_dir
    from billing_pipeline.spine.raw import build_raw_slice_if_changed
    from billing_pipeline.tools.generator import generate_landing_zone

    generate_landing_zone(tmp_path / "landing", days=4, rows_per_day=20, providers=["gcp"])
    landing = tmp_path / "landing" / "gcp" / "billing-export"
    config = _config(tmp_path, landing, start="2026-10-01")
    source, store, now = config.sources[0], Store(), dt.datetime(2026, 10, 12, tzinfo=dt.UTC)
    first = scan_source(store, config, source, {}, now, lambda key: True)
    days = sorted({r.day for r in first.requests})
    assert days == [dt.date(2026, 10, d) for d in range(1, 5)]
    with scratch_dir() as workdir:
        for day in days:
            build_raw_slice_if_changed(source, day, store, config.lake_url, workdir)
    assert scan_source(store, config, source, first.cursor, now, lambda key: True).requests == []
    late = pl.read_parquet(next(landing.rglob("*.parquet"))).head(2)  # two more rows of that file's day
    late_day = late["usage_start_time"][0].date()
    late = late.with_columns(pl.col("export_time") + dt.timedelta(days=5), -pl.col("cost"))
    write_ndjson(late, landing / "export_date=2026-10-11" / "late.json.gz")
    again = scan_source(store, config, source, first.cursor, now, lambda key: True)
    assert sorted({r.day for r in again.requests}) == [late_day]


def test_gcp_and_azure_sources_in_s3(tmp_path: Path) -> None:
    """Remote landing and lake (moto S3 on 127.0.0.1): the same code as for local folders and gs://."""
    from ..adapters.test_azure import EA_ACTUAL, write_run
    from ..s3 import moto_server, s3_client, upload_tree

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        with moto_server() as endpoint:
            client = s3_client(endpoint)
            for bucket in ("landing", "lake"):
                client.create_bucket(Bucket=bucket)
            frame = _with_credits(koku_csv_to_nested(KOKU_2022))
            rows = frame.height + frame["credits"].list.len().sum()  # a FOCUS row per charge and per credit
            write_ndjson(frame, tmp_path / "gcp" / "export_date=2022-08-02" / "a.json.gz")
            write_parquet(frame, tmp_path / "gcp" / "export_date=2022-08-02" / "a-again.parquet")
            upload_tree(client, tmp_path / "gcp", "landing", "gcp-export")
            write_run(tmp_path / "azure", "20230901-20230930", "run-1", {"part_1.csv": EA_ACTUAL})
            upload_tree(client, tmp_path / "azure", "landing", "azure-export")
            config = load_config(
                write_config(
                    tmp_path,
                    [
                        {"name": "gcp", "provider": "gcp", "url": "s3://landing/gcp-export"},
                        {"name": "azure", "provider": "azure", "url": "s3://landing/azure-export"},
                    ],
                    lake_url="s3://lake/curated",
                    invoices_url="s3://landing/invoices",
                    start_date="2022-08-01",
                    storage_options={"endpoint_url": endpoint},
                )
            )
            gcp = run_spine(config, dt.date(2022, 8, 1))
            assert gcp.normalized[0].rows == rows and gcp.normalized[0].duplicate_rows == rows
            lake = client.get_object(
                Bucket="lake", Key=slice_url("curated", "normalized_line_items", dt.date(2022, 8, 1), "gcp")
            )["Body"].read()
            delivered = gcp_delivered_totals(tmp_path / "gcp" / "export_date=2022-08-02" / "a.json.gz")
            assert parquet_cost_totals(lake) == _independent(delivered, dt.date(2022, 8, 1))
            azure = run_spine(config, dt.date(2023, 9, 4))
            assert azure.raw[1].version == "ActualCost:run-1" and azure.normalized[1].rows == 9
            assert (pl.concat([gcp.reconciliation, azure.reconciliation])["conservation_delta"] == 0).all()
