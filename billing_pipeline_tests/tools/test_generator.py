"""The sample billing-export generator: layout, determinism, exact ground truth, scale.

Everything is recomputed from the written files (as a reader would see them), never from the
generator's internals, so these tests also pin the file formats the pipeline's readers rely on.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.tools.generator import (
    CUR2_COLUMNS,
    CUR2_MAP_COLUMNS,
    FOCUS_COLUMNS,
    LEGACY_CUR_COLUMNS,
    GroundTruth,
    generate_landing_zone,
    plan_deliveries,
)
from billing_pipeline.tools.generator.__main__ import main

MONEY = pl.Decimal(38, 8)
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CUR2_ROOT = Path("aws_cur2/cur2-daily")
FOCUS_ROOT = Path("focus/focus-export")
LEGACY_ROOT = Path("aws_cur/cur/legacy-cur")
PERIOD = "BILLING_PERIOD=2026-10"


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> GroundTruth:
    out = tmp_path_factory.mktemp("landing")
    return generate_landing_zone(out, rows_per_day=200, providers=("aws_cur2", "aws_cur", "aws_cur_parquet", "focus"))


# --- helpers -------------------------------------------------------------------------------------


def _manifests(root: Path) -> list[dict]:
    """Data Exports manifests of an export root, oldest refresh first."""
    found = [json.loads(p.read_text()) for p in (root / "metadata" / PERIOD).glob("*/*-Manifest.json")]
    return sorted(found, key=lambda m: m["exportTime"])


def _resolve(root: Path, uri: str) -> Path:
    """Resolve a manifest URI by its path relative to the export root (the bucket differs)."""
    relative = uri.split(f"/{root.name}/", 1)[1]
    return root / relative


def _cur2_frame(out: Path, manifest: dict) -> pl.DataFrame:
    root = out / CUR2_ROOT
    return pl.concat([pl.read_parquet(_resolve(root, u)) for u in manifest["dataFiles"]])


def _focus_frame(out: Path, manifest: dict) -> pl.DataFrame:
    root = out / FOCUS_ROOT
    return pl.concat([pl.read_csv(_resolve(root, u), infer_schema=False) for u in manifest["dataFiles"]])


def _legacy_manifests(out: Path) -> list[dict]:
    root = out / LEGACY_ROOT / "20261001-20261101"
    found = [json.loads(p.read_text()) for p in root.glob("*/legacy-cur-Manifest.json")]
    return sorted(found, key=lambda m: os.path.getmtime(root / m["assemblyId"] / "legacy-cur-Manifest.json"))


def _legacy_frame(out: Path, manifest: dict) -> pl.DataFrame:
    base = out / "aws_cur"
    return pl.concat([pl.read_csv(base / key, infer_schema=False) for key in manifest["reportKeys"]])


def _truth(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "ground_truth.csv", infer_schema=False).with_columns(
        pl.col("billed_cost").cast(MONEY),
        pl.col("effective_cost").cast(MONEY),
        pl.col("rows").cast(pl.Int64),
        pl.col("duplicate_rows").cast(pl.Int64),
    )


def _amortized(type_col: str, cols: dict[str, str]) -> pl.Expr:
    """Effective cost of a CUR row by the table in DOMAIN.md, from the written columns."""
    t = pl.col(type_col)

    def c(key: str) -> pl.Expr:
        return pl.col(cols[key]).cast(MONEY)

    return (
        pl.when(t == "SavingsPlanCoveredUsage")
        .then(c("sp_effective"))
        .when(t == "SavingsPlanRecurringFee")
        .then(c("sp_total") - c("sp_used"))
        .when(t.is_in(["SavingsPlanNegation", "SavingsPlanUpfrontFee"]))
        .then(pl.lit(0, MONEY))
        .when(t == "DiscountedUsage")
        .then(c("ri_effective"))
        .when(t == "RIFee")
        .then(c("ri_unused_upfront") + c("ri_unused_recurring"))
        .when((t == "Fee") & pl.col(cols["ri_arn"]).is_not_null())
        .then(pl.lit(0, MONEY))
        .otherwise(c("unblended"))
    )


CUR2_COLS = {
    "sp_effective": "savings_plan_savings_plan_effective_cost",
    "sp_total": "savings_plan_total_commitment_to_date",
    "sp_used": "savings_plan_used_commitment",
    "ri_effective": "reservation_effective_cost",
    "ri_unused_upfront": "reservation_unused_amortized_upfront_fee_for_billing_period",
    "ri_unused_recurring": "reservation_unused_recurring_fee",
    "ri_arn": "reservation_reservation_a_r_n",
    "unblended": "line_item_unblended_cost",
}
LEGACY_COLS = {
    "sp_effective": "savingsPlan/SavingsPlanEffectiveCost",
    "sp_total": "savingsPlan/TotalCommitmentToDate",
    "sp_used": "savingsPlan/UsedCommitment",
    "ri_effective": "reservation/EffectiveCost",
    "ri_unused_upfront": "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod",
    "ri_unused_recurring": "reservation/UnusedRecurringFee",
    "ri_arn": "reservation/ReservationARN",
    "unblended": "lineItem/UnblendedCost",
}


def _totals(
    df: pl.DataFrame,
    source: str,
    key: list[str],
    date: pl.Expr,
    account: str,
    currency: str,
    billed: pl.Expr,
    effective: pl.Expr,
) -> pl.DataFrame:
    """Per day/account/currency totals of a frame, duplicates (same key) removed and counted."""
    counted = df.with_columns(date.alias("date"), billed.alias("_b"), effective.alias("_e"))
    distinct = counted.unique(subset=key, keep="first", maintain_order=True)
    dups = counted.group_by("date", account, currency).len("_all")
    return (
        distinct.group_by("date", account, currency)
        .agg(
            pl.col("_b").sum().alias("billed_cost"), pl.col("_e").sum().alias("effective_cost"), pl.len().alias("rows")
        )
        .join(dups, on=["date", account, currency])
        .select(
            pl.lit(source).alias("source"),
            "date",
            pl.col(account).alias("billing_account_id"),
            pl.col(currency).alias("currency"),
            pl.col("billed_cost").cast(MONEY),
            pl.col("effective_cost").cast(MONEY),
            pl.col("rows").cast(pl.Int64),
            (pl.col("_all") - pl.col("rows")).cast(pl.Int64).alias("duplicate_rows"),
        )
    )


def _assert_same(recomputed: pl.DataFrame, truth: pl.DataFrame, source: str) -> None:
    expected = truth.filter(pl.col("source") == source).sort("date", "billing_account_id", "currency")
    got = recomputed.sort("date", "billing_account_id", "currency").select(expected.columns)
    assert got.height == expected.height > 0
    assert got.to_dicts() == expected.to_dicts()


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield str(p.relative_to(root)), p.read_bytes()


# --- constants -----------------------------------------------------------------------------------


def test_column_constants() -> None:
    assert len(CUR2_COLUMNS) == len(set(CUR2_COLUMNS)) == 128
    assert set(CUR2_MAP_COLUMNS) == {"product", "resource_tags", "cost_category", "discount"}
    assert {"bill/InvoiceId", "lineItem/ResourceId", "resourceTags/user:Team", "resourceTags/user:cost-center"} <= set(
        LEGACY_CUR_COLUMNS
    )
    assert {"BilledCost", "EffectiveCost", "ChargePeriodStart", "Tags", "InvoiceId"} <= set(FOCUS_COLUMNS)
    listed = SHARED / "cur2_columns.txt"
    if listed.exists():
        names = [ln.strip() for ln in listed.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert names == CUR2_COLUMNS


def test_delivery_plan() -> None:
    plans = plan_deliveries(31)
    assert [p.days[-1] for p in plans] == [28, 30, 31]
    assert plans[1].restated == (27, 28) and plans[2].restated == (29, 30)
    assert plans[2].final and plans[2].revisions[28] == 1 and plans[2].revisions[1] == 0
    assert [p.number for p in plan_deliveries(1)] == [3]


# --- layout ----------------------------------------------------------------------------------------


def test_layout(landing: GroundTruth) -> None:
    out = landing.out
    assert (out / "ground_truth.csv").exists() and (out / "invoices" / "invoices.csv").exists()
    cur2 = _manifests(out / CUR2_ROOT)
    assert len(cur2) == 3
    for m in cur2:
        assert set(m) == {
            "executionId",
            "exportArn",
            "exportTime",
            "billingPeriod",
            "columns",
            "dataFiles",
            "additionalOutputFiles",
        }
        assert m["exportArn"].startswith("arn:aws:bcm-data-exports:us-east-1:111111111111:export/cur2-daily-")
        assert m["billingPeriod"] == {"start": "2026-10-01T00:00:00.000Z", "end": "2026-11-01T00:00:00.000Z"}
        assert [c["name"] for c in m["columns"]] == CUR2_COLUMNS
        assert m["additionalOutputFiles"] == []
        for uri in m["dataFiles"]:
            assert uri.startswith(
                f"s3://aws-billing-exports-111111111111/billing/cur2-daily/data/{PERIOD}/"
                f"{m['executionId']}/cur2-daily-0000"
            )
            assert uri.endswith(".snappy.parquet")
    focus = _manifests(out / FOCUS_ROOT)
    assert len(focus) == 3 and all(u.endswith(".csv.gz") for m in focus for u in m["dataFiles"])
    assert [c["name"] for c in focus[0]["columns"]] == FOCUS_COLUMNS

    legacy = _legacy_manifests(out)
    assert len(legacy) == 3
    period_manifest = json.loads((out / LEGACY_ROOT / "20261001-20261101" / "legacy-cur-Manifest.json").read_text())
    assert period_manifest == legacy[-1]
    for m in legacy:
        assert m["charset"] == "UTF-8" and m["compression"] == "GZIP" and m["contentType"] == "text/csv"
        assert m["bucket"] == "legacy-cur-bucket" and m["reportName"] == "legacy-cur"
        assert m["billingPeriod"] == {"start": "20261001T000000.000Z", "end": "20261101T000000.000Z"}
        assert m["columns"][0] == {"category": "identity", "name": "LineItemId", "type": "String"}
        assert {"category": "lineItem", "name": "UnblendedCost", "type": "OptionalBigDecimal"} in m["columns"]
        for key in m["reportKeys"]:
            assert key.startswith(f"cur/legacy-cur/20261001-20261101/{m['assemblyId']}/legacy-cur-")
    athena = out / "aws_cur_parquet/cur/legacy-cur/legacy-cur/year=2026/month=10"
    assert sorted(p.name for p in athena.iterdir())[0] == "legacy-cur-00001.snappy.parquet"


def test_manifests_list_exactly_the_files_written(landing: GroundTruth) -> None:
    out = landing.out
    for root, suffix in ((out / CUR2_ROOT, ".snappy.parquet"), (out / FOCUS_ROOT, ".csv.gz")):
        manifests = _manifests(root)
        written = {p for p in (root / "data" / PERIOD).rglob(f"*{suffix}")}
        listed = {_resolve(root, u) for m in manifests for u in m["dataFiles"]}
        assert listed == written
        for m in manifests:
            folder = root / "data" / PERIOD / m["executionId"]
            assert {_resolve(root, u) for u in m["dataFiles"]} == set(folder.iterdir())
    for m in _legacy_manifests(out):
        folder = out / LEGACY_ROOT / "20261001-20261101" / m["assemblyId"]
        keys = {out / "aws_cur" / k for k in m["reportKeys"]}
        assert keys == set(folder.glob("*.csv.gz"))


def test_deliveries_arrive_in_order(landing: GroundTruth) -> None:
    by_source: dict[str, list] = {}
    for d in landing.deliveries:
        by_source.setdefault(d.source, []).append(d)
    assert {s: len(v) for s, v in by_source.items()} == {"aws_cur2": 3, "aws_cur": 3, "aws_cur_parquet": 1, "focus": 3}
    for deliveries in by_source.values():
        for earlier, later in zip(deliveries, deliveries[1:], strict=False):
            assert later.export_time > earlier.export_time
            newest_before = max(os.path.getmtime(p) for p in (*earlier.data_files, earlier.manifest))
            assert min(os.path.getmtime(p) for p in later.data_files) > newest_before
        for d in deliveries:
            if d.manifest is not None:
                assert os.path.getmtime(d.manifest) >= max(os.path.getmtime(p) for p in d.data_files)
    exports = [m["exportTime"] for m in _manifests(landing.out / CUR2_ROOT)]
    assert exports == sorted(set(exports))


# --- ground truth ------------------------------------------------------------------------------------


def test_cur2_final_totals_equal_ground_truth(landing: GroundTruth) -> None:
    df = _cur2_frame(landing.out, _manifests(landing.out / CUR2_ROOT)[-1])
    got = _totals(
        df,
        "aws_cur2",
        ["identity_line_item_id", "identity_time_interval"],
        pl.col("line_item_usage_start_date").dt.date(),
        "bill_payer_account_id",
        "line_item_currency_code",
        pl.col("line_item_unblended_cost").cast(MONEY),
        _amortized("line_item_line_item_type", CUR2_COLS),
    )
    truth = _truth(landing.out).with_columns(pl.col("date").str.to_date())
    _assert_same(got, truth, "aws_cur2")
    assert got["duplicate_rows"].sum() == 5
    # The returned object and the CSV agree.
    assert landing.frame.filter(pl.col("source") == "aws_cur2")["billed_cost"].sum() == got["billed_cost"].sum()


def test_legacy_final_totals_equal_ground_truth(landing: GroundTruth) -> None:
    manifest = _legacy_manifests(landing.out)[-1]
    keys = manifest["reportKeys"]
    assert len(keys) >= 3
    # The last file was delivered twice: same bytes under a second key.
    assert (landing.out / "aws_cur" / keys[-1]).read_bytes() == (landing.out / "aws_cur" / keys[-2]).read_bytes()
    df = _legacy_frame(landing.out, manifest)
    got = _totals(
        df,
        "aws_cur",
        ["identity/LineItemId", "identity/TimeInterval"],
        pl.col("lineItem/UsageStartDate").str.slice(0, 10).str.to_date(),
        "bill/PayerAccountId",
        "lineItem/CurrencyCode",
        pl.col("lineItem/UnblendedCost").cast(MONEY),
        _amortized("lineItem/LineItemType", LEGACY_COLS),
    )
    truth = _truth(landing.out).with_columns(pl.col("date").str.to_date())
    _assert_same(got, truth, "aws_cur")
    assert got["duplicate_rows"].sum() > 0


def test_athena_flavour_totals(landing: GroundTruth) -> None:
    folder = landing.out / "aws_cur_parquet/cur/legacy-cur/legacy-cur/year=2026/month=10"
    df = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])
    assert {
        "line_item_usage_start_date",
        "line_item_unblended_cost",
        "product_product_name",
        "resource_tags_user_team",
        "resource_tags_user_cost_center",
        "resource_tags_user_costcenter",
        "reservation_reservation_a_r_n",
    } <= set(df.columns)
    got = _totals(
        df,
        "aws_cur_parquet",
        ["identity_line_item_id", "identity_time_interval"],
        pl.col("line_item_usage_start_date").dt.date(),
        "bill_payer_account_id",
        "line_item_currency_code",
        pl.col("line_item_unblended_cost").cast(MONEY),
        _amortized("line_item_line_item_type", CUR2_COLS),
    )
    truth = _truth(landing.out).with_columns(pl.col("date").str.to_date())
    _assert_same(got, truth, "aws_cur_parquet")
    same = truth.filter(pl.col("source") == "aws_cur")
    assert same["billed_cost"].sum() == got["billed_cost"].sum()


def test_focus_final_totals_equal_ground_truth(landing: GroundTruth) -> None:
    df = _focus_frame(landing.out, _manifests(landing.out / FOCUS_ROOT)[-1])
    assert df.columns == FOCUS_COLUMNS
    df = df.with_row_index("_row")
    got = _totals(
        df,
        "focus",
        ["_row"],
        pl.col("ChargePeriodStart").str.slice(0, 10).str.to_date(),
        "BillingAccountId",
        "BillingCurrency",
        pl.col("BilledCost").cast(MONEY),
        pl.col("EffectiveCost").cast(MONEY),
    )
    truth = _truth(landing.out).with_columns(pl.col("date").str.to_date())
    _assert_same(got, truth, "focus")
    assert set(got["currency"]) == {"USD", "EUR"}


def test_invoices_equal_month_totals(landing: GroundTruth) -> None:
    out = landing.out
    invoices = pl.read_csv(out / "invoices" / "invoices.csv", infer_schema=False)
    assert invoices.columns == ["invoice_id", "billing_account_id", "billing_period", "currency", "amount", "issuer"]
    assert set(invoices["billing_period"]) == {"2026-10"}
    truth = _truth(out).filter(pl.col("source") != "aws_cur_parquet")
    month = truth.group_by("billing_account_id", "currency").agg(pl.col("billed_cost").sum().alias("amount"))
    joined = invoices.with_columns(pl.col("amount").cast(MONEY)).join(
        month, on=["billing_account_id", "currency"], how="full", suffix="_truth"
    )
    assert joined.height == 4
    assert joined.filter(pl.col("amount") != pl.col("amount_truth")).height == 0
    ids = dict(zip(invoices["billing_account_id"], invoices["invoice_id"], strict=True))
    # Only the final delivery carries invoice ids, and they are the invoices'.
    cur2 = _manifests(out / CUR2_ROOT)
    assert _cur2_frame(out, cur2[0])["bill_invoice_id"].null_count() == _cur2_frame(out, cur2[0]).height
    assert set(_cur2_frame(out, cur2[-1])["bill_invoice_id"]) == {ids["111111111111"]}
    assert set(_legacy_frame(out, _legacy_manifests(out)[-1])["bill/InvoiceId"]) == {ids["999988887777"]}
    final_focus = _focus_frame(out, _manifests(out / FOCUS_ROOT)[-1])
    pairs = set(zip(final_focus["BillingAccountId"], final_focus["InvoiceId"], strict=True))
    assert pairs == {(a, ids[a]) for a in set(final_focus["BillingAccountId"])}
    assert _focus_frame(out, _manifests(out / FOCUS_ROOT)[0])["InvoiceId"].null_count() > 0


# --- content -------------------------------------------------------------------------------------


def test_cur2_types_and_maps(landing: GroundTruth) -> None:
    path = next((landing.out / CUR2_ROOT / "data").rglob("*.parquet"))
    df = pl.read_parquet(path)
    assert df.columns == CUR2_COLUMNS
    for name in CUR2_MAP_COLUMNS:
        assert df.schema[name] == pl.Map(pl.String, pl.String)
    assert df.schema["line_item_usage_start_date"] == pl.Datetime("ms", "UTC")
    assert df.schema["line_item_unblended_cost"] == pl.Float64
    keys = set(df.select(pl.col("resource_tags").map.keys().explode().drop_nulls()).to_series())
    assert {"user_team", "user_cost_center", "user_env", "user_environment", "user_owner"} <= keys
    assert all(k.startswith("user_") for k in keys)
    assert df.select(pl.col("product").map.get("product_name").is_not_null().all()).item()
    # Money has at most 8 decimals and its float repr is that exact decimal.
    for value in df["line_item_unblended_cost"].drop_nulls().to_list()[:2000]:
        assert Decimal(repr(value)).as_tuple().exponent >= -8
    types = set(df["line_item_line_item_type"])
    assert {
        "Usage",
        "DiscountedUsage",
        "SavingsPlanCoveredUsage",
        "SavingsPlanNegation",
        "SavingsPlanRecurringFee",
        "RIFee",
        "Fee",
        "Tax",
    } <= types
    usage = df.filter(pl.col("line_item_line_item_type") == "Usage")
    assert usage.filter(pl.col("pricing_public_on_demand_cost") < pl.col("line_item_unblended_cost")).height == 0
    untagged = usage.filter(pl.col("resource_tags").map.len() == 0).height / usage.height
    assert 0.1 < untagged < 0.4


def test_messy_tags_in_legacy_and_focus(landing: GroundTruth) -> None:
    legacy = _legacy_frame(landing.out, _legacy_manifests(landing.out)[-1])
    for key in (
        "Team",
        "team",
        "TEAM",
        "owner",
        "cost-center",
        "CostCenter",
        "cost_center",
        "env",
        "Environment",
        "Stage",
        "product",
        "app",
    ):
        assert legacy[f"resourceTags/user:{key}"].drop_nulls().len() > 0, key
    focus = _focus_frame(landing.out, _manifests(landing.out / FOCUS_ROOT)[-1])
    tags = [json.loads(t) for t in focus["Tags"].drop_nulls().to_list()]
    keys = {k for t in tags for k in t}
    assert {"Team", "team", "owner", "CostCenter", "cost-center"} <= keys
    assert all(isinstance(v, str) for t in tags for v in t.values())


def test_focus_semantics(landing: GroundTruth) -> None:
    df = _focus_frame(landing.out, _manifests(landing.out / FOCUS_ROOT)[-1])
    money = ["BilledCost", "EffectiveCost", "ContractedCost", "ListCost"]
    d = df.with_columns(
        *[pl.col(c).cast(MONEY) for c in money],
    )
    assert set(d["ChargeCategory"]) == {"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
    assert set(d["ChargeClass"].drop_nulls()) == {"Correction"}
    assert set(d["ChargeFrequency"]) <= {"One-Time", "Recurring", "Usage-Based"}
    usage = d.filter(pl.col("ChargeCategory") == "Usage")
    ordered = (pl.col("ListCost") >= pl.col("ContractedCost")) & (pl.col("ContractedCost") >= 0)
    assert usage.filter(~ordered).is_empty()
    priced = df.filter(pl.col("PricingQuantity").is_not_null() & pl.col("ChargeClass").is_null())
    for price, cost in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
        for p, q, c in priced.select(price, "PricingQuantity", cost).iter_rows():
            assert Decimal(p) * Decimal(q) == Decimal(c), (price, p, q, c)
    assert d.filter((pl.col("ChargeCategory") == "Purchase") & (pl.col("EffectiveCost") != 0)).is_empty()
    assert d.filter((pl.col("ChargeCategory") == "Tax") & (pl.col("BilledCost") != pl.col("EffectiveCost"))).is_empty()
    assert d.filter((pl.col("ChargeCategory") == "Credit") & (pl.col("BilledCost") >= 0)).is_empty()
    # Commitment: purchased = used + unused over the whole month.
    commit = d.filter(pl.col("CommitmentDiscountId").is_not_null())
    bought = commit.filter(pl.col("ChargeCategory") == "Purchase")["BilledCost"].sum()
    amortized = commit.filter(pl.col("ChargeCategory") == "Usage")["EffectiveCost"].sum()
    assert bought == amortized > 0
    assert set(commit["CommitmentDiscountStatus"].drop_nulls()) == {"Used", "Unused"}
    for col in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"):
        assert df[col].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:00:00Z$").all(), col
    assert (df["ChargePeriodEnd"] > df["ChargePeriodStart"]).all()
    assert set(df["BillingPeriodStart"]) == {"2026-10-01T00:00:00Z"}
    assert set(df["ProviderName"]) == {"Oracle", "MongoDB"}
    assert set(zip(df["BillingAccountId"], df["BillingCurrency"], strict=True)).__len__() == 2


def test_restatements_touch_only_restated_days(landing: GroundTruth) -> None:
    out = landing.out
    manifests = _manifests(out / CUR2_ROOT)
    value_cols = [
        "identity_line_item_id",
        "line_item_unblended_cost",
        "line_item_usage_amount",
        "line_item_resource_id",
        "savings_plan_used_commitment",
    ]

    def by_day(df: pl.DataFrame) -> dict:
        df = df.unique(subset=["identity_line_item_id", "identity_time_interval"], keep="first")
        df = df.with_columns(pl.col("line_item_usage_start_date").dt.day().alias("d")).sort(value_cols)
        return {d: g.select(value_cols).rows() for (d,), g in df.group_by("d")}

    first, second, final = (by_day(_cur2_frame(out, m)) for m in manifests)
    assert sorted(first) == list(range(1, 29)) and sorted(final) == list(range(1, 32))
    assert sorted(d for d in first if first[d] != second[d]) == [27, 28]
    assert sorted(d for d in second if second[d] != final[d]) == [29, 30]
    # Same line items, different costs on a restated day.
    assert [r[0] for r in second[28]] == sorted(r[0] for r in first[28])
    totals = landing.delivery_totals.filter(pl.col("source") == "aws_cur2")
    assert totals["delivery"].unique().sort().to_list() == [1, 2, 3]
    spike = landing.anomalies.filter(pl.col("source") == "aws_cur2").row(0, named=True)
    daily = (
        _cur2_frame(out, manifests[-1])
        .filter(pl.col("line_item_product_code") == spike["service"], pl.col("line_item_line_item_type") == "Usage")
        .group_by(pl.col("line_item_usage_start_date").dt.date().alias("date"))
        .agg(pl.col("line_item_unblended_cost").sum())
    )
    peak = daily.filter(pl.col("date") == spike["date"])["line_item_unblended_cost"].item()
    assert peak > 3 * daily["line_item_unblended_cost"].median()


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = generate_landing_zone(tmp_path / "a", days=5, rows_per_day=60, seed=11)
    b = generate_landing_zone(tmp_path / "b", days=5, rows_per_day=60, seed=11)
    c = generate_landing_zone(tmp_path / "c", days=5, rows_per_day=60, seed=12)
    files_a, files_b = dict(_files(a.out)), dict(_files(b.out))
    assert files_a.keys() == files_b.keys() and len(files_a) > 20
    assert files_a == files_b
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(c.frame)
    for p in files_a:
        if p.endswith(".gz"):
            gzip.decompress(files_a[p])  # valid gzip, deterministic header


def test_scales_to_many_rows_per_day(tmp_path: Path) -> None:
    truth = generate_landing_zone(tmp_path, days=1, rows_per_day=200_000, providers=["aws_cur2"])
    (delivery,) = truth.deliveries
    assert delivery.final and len(delivery.data_files) >= 2
    assert truth.frame["rows"].to_list() == [200_000] and truth.frame["duplicate_rows"].to_list() == [5]
    total = 0
    for path in delivery.data_files:
        df = pl.read_parquet(path, columns=["identity_line_item_id", "identity_time_interval"])
        total += df.height
        # Duplicates sit in the same file as the row they copy.
        within = df.height - df.unique().height
        assert within in (0, 5)
    assert total == 200_005
    manifest = json.loads(delivery.manifest.read_text())
    assert len(manifest["dataFiles"]) == len(delivery.data_files)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--days", "4", "--rows-per-day", "40", "--only", "focus,aws_cur"]) == 0
    assert "wrote" in capsys.readouterr().out
    truth = pl.read_csv(tmp_path / "ground_truth.csv")
    assert set(truth["source"]) == {"focus", "aws_cur"}
    assert not (tmp_path / "aws_cur2").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--only", "oci"])
    with pytest.raises(ValueError):
        generate_landing_zone(tmp_path, month="2026-13")


def test_fixed_charges_stay_below_a_million_at_scale() -> None:
    """Fees, taxes and commitments grow with volume; no single value may reach 1e6."""
    from billing_pipeline.tools.generator._util import Month
    from billing_pipeline.tools.generator.aws import AwsModel
    from billing_pipeline.tools.generator.catalog import ACME
    from billing_pipeline.tools.generator.focus import FocusModel

    month = Month.parse("2026-10")
    aws = AwsModel(ACME, month, 7, 1_000_000, 100_000)  # uncapped, its support fee would be ~$1.9M
    fixed = aws._fixed_rows(1, 0)
    money = [c for c in fixed.columns if c.endswith(("_cost", "_fee", "_rate", "_commitment_to_date", "_value"))]
    assert fixed.select(pl.max_horizontal(pl.col(money).abs()).max()).item() < 2**53
    assert fixed["_billed"].abs().max() < 10**14 and aws.sp_daily < 10**14
    vendors = FocusModel(month, 7, 1_000_000, 100_000).vendors
    for vm in vendors:
        rows = vm.fixed_rows(1, 0)
        costs = ["BilledCost", "EffectiveCost", "ContractedCost", "ListCost"]
        assert rows.select(pl.max_horizontal(pl.col(costs).abs()).max()).item() < 10**14
