"""What the spine assets report: money per currency (never two currencies added), previews rounded for
people, and a described column schema for every column of the four assets.

`billing_daily` runs for one day over two FOCUS sources: the public FOCUS sample (USD) and a copy of it
billed in EUR (amounts scaled, every other row, the file delivered twice so that a copy is dropped as
duplicates). Every expected amount is summed here with the csv module and Decimal over the delivered
files, never by the pipeline's code.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.asset_metadata import (
    RECONCILIATION_DESCRIPTIONS,
    amount_text,
    currency_key,
    day_sums,
    slice_schemas,
)
from billing_pipeline.platform.focus import FOCUS_COLUMNS, FOCUS_VERSION, LINEAGE_COLUMNS
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.reconcile import RECONCILIATION_SCHEMA

from ..conftest import FOCUS_SAMPLE, write_config

DAY = "2024-09-05"
ASSETS = ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")
SCALED = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")  # EUR copy: amounts x 10,000,000
POLICY = {"owner_dimension": "team", "dimensions": {"team": {"keys": ["business_unit"]}}}
INVOICED_ACCOUNT = "1234567890123"
INVOICES = {"USD": Decimal("12.34"), "EUR": Decimal("98765.4321")}
# Numeric metadata that is not money: counts, hours, and a ratio of amounts in one currency.
NOT_MONEY = {"max_abs_relative_invoice_delta", "export_latency_hours"}


def _eur_copy(target: Path) -> None:
    """Every other row of the FOCUS sample, billed in EUR, its amounts scaled (written with the csv module)."""
    with (
        open(FOCUS_SAMPLE, newline="", encoding="utf-8") as source,
        open(target, "w", newline="", encoding="utf-8") as out,
    ):
        reader = csv.DictReader(source)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for index, row in enumerate(reader):
            if index % 2:
                continue
            row["BillingCurrency"] = "EUR"
            for column in SCALED:
                if re.fullmatch(r"-?\d+(\.\d+)?", row[column] or ""):
                    row[column] = format(Decimal(row[column]) * 10_000_000, "f")
            writer.writerow(row)


def _has_owner(tags: str) -> bool:
    try:
        parsed = json.loads(tags)
    except ValueError:
        return False
    return isinstance(parsed, dict) and bool(str(parsed.get("business_unit") or "").strip())


def _delivered(path: Path, day: str) -> dict[str, dict[str, Decimal]]:
    """currency -> billed, effective, unallocated (no business_unit tag) of the day's rows of one file."""
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["ChargePeriodStart"][:10] != day:
                continue
            totals = out[row["BillingCurrency"]]
            totals["billed"] += Decimal(row["BilledCost"])
            totals["effective"] += Decimal(row["EffectiveCost"])
            if not _has_owner(row["Tags"]):
                totals["unallocated"] += Decimal(row["BilledCost"])
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    """The day run twice (the second run reuses every slice); yields (folder, first, second materializations)."""
    tmp = tmp_path_factory.mktemp("metadata")
    usd, eur = tmp / "landing" / "usd", tmp / "landing" / "eur"
    usd.mkdir(parents=True)
    eur.mkdir(parents=True)
    (usd / FOCUS_SAMPLE.name).write_bytes(FOCUS_SAMPLE.read_bytes())
    _eur_copy(eur / "focus-eur.csv")
    (eur / "focus-eur-again.csv").write_bytes((eur / "focus-eur.csv").read_bytes())  # delivered twice
    invoices = tmp / "invoices"
    invoices.mkdir()
    with open(invoices / "2024-09.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["invoice_id", "billing_account_id", "billing_period", "currency", "amount"])
        for currency, amount in INVOICES.items():
            writer.writerow([f"INV-{currency}", INVOICED_ACCOUNT, "2024-09", currency, str(amount)])
    config = write_config(
        tmp,
        [
            {"name": "focus_usd", "provider": "focus", "url": str(usd)},
            {"name": "focus_eur", "provider": "focus", "url": str(eur)},
        ],
        start_date="2024-09-01",
        tag_policy=POLICY,
    )
    job = build_definitions(config).resolve_job_def(JOB_NAME)
    runs = []
    with instance_for_test() as instance:
        for _ in range(2):
            result = job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
            runs.append(
                {
                    e.asset_key.path[-1]: e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()
                }
            )
        assert instance.get_latest_materialization_event(AssetKey("reconciliation_deltas")) is not None
    assert all(set(r) == {*ASSETS, "cost_anomalies", "slo_error_budgets"} for r in runs), [sorted(r) for r in runs]
    yield tmp, runs[0], runs[1]


def _expected(tmp: Path) -> dict[str, dict[str, Decimal]]:
    usd = _delivered(tmp / "landing" / "usd" / FOCUS_SAMPLE.name, DAY)
    eur = _delivered(tmp / "landing" / "eur" / "focus-eur.csv", DAY)  # the second copy is a duplicate
    assert set(usd) == {"USD"} and set(eur) == {"EUR"}
    expected = {**usd, **eur}
    for currency in expected:
        expected[currency]["duplicate"] = eur[currency]["billed"] if currency == "EUR" else Decimal(0)
    assert expected["USD"]["billed"] and expected["EUR"]["billed"] and expected["EUR"]["unallocated"]
    return expected


def _values(materialization) -> dict[str, object]:
    return {k: v.value for k, v in materialization.metadata.items()}


def test_money_metadata_is_per_currency_and_equals_the_delivered_sums(run) -> None:
    tmp, first, _ = run
    expected = _expected(tmp)
    normalized = _values(first["normalized_line_items"])
    enriched = _values(first["tag_enriched_costs"])
    reconciliation = _values(first["reconciliation_deltas"])
    for currency, totals in expected.items():
        c = currency.lower()
        assert normalized[f"billed_cost_{c}"] == float(totals["billed"]), currency
        assert normalized[f"effective_cost_{c}"] == float(totals["effective"]), currency
        assert normalized[f"duplicate_cost_{c}"] == float(totals["duplicate"]), currency
        assert enriched[f"billed_cost_{c}"] == float(totals["billed"]), currency
        assert enriched[f"unallocated_cost_{c}"] == float(totals["unallocated"]), currency
        assert enriched[f"unallocated_percent_{c}"] == pytest.approx(
            float(totals["unallocated"] / totals["billed"] * 100)
        ), currency
        assert reconciliation[f"billed_cost_{c}"] == float(totals["billed"]), currency
        assert reconciliation[f"effective_cost_{c}"] == float(totals["effective"]), currency
        assert reconciliation[f"month_to_date_cost_{c}"] == float(totals["billed"]), currency  # first day built
        assert reconciliation[f"invoice_amount_{c}"] == float(INVOICES[currency]), currency
        assert reconciliation[f"max_abs_conservation_delta_{c}"] == 0.0, currency
    assert normalized["duplicate_rows"] > 0  # the EUR file delivered twice


def test_no_metadata_value_adds_two_currencies(run) -> None:
    """Every numeric metadata value that is not a count is keyed by one currency, and the keys are exactly
    the expected ones: a total over both currencies (under any name) would be an extra key."""
    _, first, second = run
    money_keys = {
        "normalized_line_items": {"billed_cost", "effective_cost", "duplicate_cost"},
        "tag_enriched_costs": {"billed_cost", "unallocated_cost", "unallocated_percent"},
        "reconciliation_deltas": {
            "billed_cost",
            "effective_cost",
            "month_to_date_cost",
            "invoice_amount",
            "max_abs_conservation_delta",
            "max_abs_invoice_delta",
        },
        "raw_line_items": set(),
        "cost_anomalies": set(),
    }
    for materializations in (first, second):
        for asset, materialization in materializations.items():
            if asset == "slo_error_budgets":  # ratios and burn rates: no money at all
                assert not any(k.endswith(("_usd", "_eur")) for k in _values(materialization)), asset
                continue
            floats = {
                k for k, v in _values(materialization).items() if isinstance(v, float) and not isinstance(v, bool)
            } - NOT_MONEY
            assert floats == {currency_key(name, c) for name in money_keys[asset] for c in ("USD", "EUR")}, asset
            for key in floats:
                assert key.endswith(("_usd", "_eur")), (asset, key)
    expected = _expected(tmp=run[0])
    both = float(expected["USD"]["billed"] + expected["EUR"]["billed"])
    assert both not in {v for m in first.values() for v in _values(m).values() if isinstance(v, float)}


def test_reused_slices_report_the_same_money(run) -> None:
    _, first, second = run
    assert second["normalized_line_items"].metadata["dagster/row_count"].value > 0
    for asset in ASSETS:
        before, after = _values(first[asset]), _values(second[asset])
        money = {k for k in before if k.endswith(("_usd", "_eur"))}
        assert money == {k for k in after if k.endswith(("_usd", "_eur"))}, asset
        assert {k: before[k] for k in money} == {k: after[k] for k in money}, asset


def test_previews_show_rounded_amounts_with_their_currency(run) -> None:
    tmp, first, second = run
    expected = _expected(tmp)
    for materializations in (first, second):
        for asset, materialization in materializations.items():
            preview = materialization.metadata["preview"].value
            assert "E-" not in preview and "E+" not in preview, (asset, preview)
            assert not re.search(r"\d\.\d{3,}", preview), (asset, preview)  # never 18 (or 3) decimals
    normalized = first["normalized_line_items"].metadata["preview"].value
    for currency, totals in expected.items():
        shown = f"{totals['billed'].quantize(Decimal('0.01')):,.2f} {currency}"
        assert shown in normalized, (shown, normalized)
    eur = f"{expected['EUR']['billed'].quantize(Decimal('0.01')):,.2f}"
    assert "," in eur  # the scaled EUR copy is in the thousands: separators are shown
    reconciliation = first["reconciliation_deltas"].metadata["preview"].value
    assert f"{INVOICES['EUR'].quantize(Decimal('0.01')):,.2f} EUR" in reconciliation
    assert "12.34 USD" in reconciliation


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        (Decimal("0E-18"), "USD", "0.00 USD"),
        (Decimal("0.000000000000000001"), "USD", "0.00 USD"),
        (Decimal("-0.004"), "EUR", "0.00 EUR"),
        (Decimal("1234567.895000000000000000"), "EUR", "1,234,567.90 EUR"),
        (Decimal("-98765.4321"), "JPY", "-98,765.43 JPY"),
        (Decimal("99999999999999999999.999999999999999999"), "USD", "100,000,000,000,000,000,000.00 USD"),
        (None, "USD", ""),
    ],
)
def test_amount_text_rounds_for_people(value: Decimal | None, currency: str, text: str) -> None:
    assert amount_text(value, currency) == text


def test_a_currency_key_is_the_name_and_the_lower_case_code() -> None:
    assert currency_key("billed_cost", "EUR") == "billed_cost_eur"
    assert currency_key("billed_cost", None) == "billed_cost_unknown"


def test_remote_slices_are_summed_per_currency_like_local_ones(tmp_path: Path) -> None:
    """A remote lake (here fsspec's memory filesystem) is read batch by batch: same sums as a local file."""
    frame = pl.DataFrame(
        {
            "BillingCurrency": ["USD", "EUR", "USD", None] * 50_000,
            "BilledCost": ["1.000000000000000001", "2.5", "-0.25", "7"] * 50_000,
        }
    ).with_columns(pl.col("BilledCost").cast(pl.Decimal(38, 18)))
    local = tmp_path / "part-0.parquet"
    frame.write_parquet(local, row_group_size=10_000)
    store = Store()
    remote = "memory://lake/normalized_line_items/part-0.parquet"
    fs, path = store.fs(remote)
    fs.pipe(path, local.read_bytes())
    sums = {"billed": pl.col("BilledCost").sum()}
    got = {
        u: day_sums(store, {"s": u}, sums, ["BillingCurrency", "BilledCost"]).sort("BillingCurrency")
        for u in (str(local), remote)
    }
    assert got[str(local)].equals(got[remote])
    totals = dict(got[remote].select("BillingCurrency", "billed").iter_rows())
    usd = (Decimal("1.000000000000000001") + Decimal("-0.25")) * 50_000
    assert totals == {"EUR": Decimal("2.5") * 50_000, "USD": usd, "unknown": Decimal(7) * 50_000}
    assert str(usd) == "37500.000000000000050000"  # exact: the 18th decimal is kept


def test_every_column_of_the_four_assets_is_described(run) -> None:
    tmp, first, _ = run
    lake = tmp / "lake"
    for asset in ASSETS:
        schema = first[asset].metadata["dagster/column_schema"].value
        described = {c.name: (c.description or "").strip() for c in schema.columns}
        assert len(described) == len(schema.columns), asset  # no column listed twice
        assert all(described.values()), [n for n, d in described.items() if not d]
        published = set()
        for part in (lake / asset / f"date={DAY}").glob("source=*/part-0.parquet"):
            published |= set(pl.read_parquet_schema(part))
        assert published and published <= set(described), (asset, published - set(described))
        assert set(LINEAGE_COLUMNS) <= set(described) or asset == "reconciliation_deltas", asset
    normalized = {
        c.name: c.description for c in first["normalized_line_items"].metadata["dagster/column_schema"].value.columns
    }
    for column in FOCUS_COLUMNS:
        assert column.description, column.name  # the FOCUS table itself describes every column
        assert normalized[column.name] == f"FOCUS {FOCUS_VERSION} {column.feature_level}. {column.description}"
    raw = {c.name: c.description for c in first["raw_line_items"].metadata["dagster/column_schema"].value.columns}
    with open(FOCUS_SAMPLE, newline="", encoding="utf-8") as handle:
        delivered = next(csv.reader(handle))
    assert all("as delivered" in raw[name] for name in delivered), raw
    assert set(RECONCILIATION_SCHEMA) <= set(RECONCILIATION_DESCRIPTIONS)
    enriched = {c.name for c in first["tag_enriched_costs"].metadata["dagster/column_schema"].value.columns}
    assert {"team", "team_rule", "allocation_rule", "unallocated"} <= enriched


def test_a_slice_metadata_cannot_read_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """A damaged slice in the lake never fails the step that reports on it: its source is left out of
    the sums and the schema, and the warning names it."""
    good, damaged = tmp_path / "good.parquet", tmp_path / "damaged.parquet"
    pl.DataFrame({"BillingCurrency": ["USD"], "BilledCost": ["1.25"]}).with_columns(
        pl.col("BilledCost").cast(pl.Decimal(38, 18))
    ).write_parquet(good)
    damaged.write_bytes(good.read_bytes()[:40])
    warnings: list[str] = []
    urls = {"good": str(good), "damaged": str(damaged)}
    sums = day_sums(
        Store(), urls, {"billed": pl.col("BilledCost").sum()}, ["BillingCurrency", "BilledCost"], warnings.append
    )
    assert sums.select("source", "BillingCurrency", "billed").rows() == [("good", "USD", Decimal("1.25"))]
    assert set(slice_schemas(Store(), urls, warnings.append)) == {"good"}
    assert len(warnings) == 2 and all("'damaged'" in w and str(damaged) in w for w in warnings)
