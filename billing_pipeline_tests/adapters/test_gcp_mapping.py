"""GCP mapping in bounded memory: the charge and credit parts share no cached frame (polars held a cached
frame whole until both parts had read it), and the distinct values the lookups are built on come from one
streaming pass, checked here against an independent count."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from billing_pipeline.adapters.azure import AzureAdapter
from billing_pipeline.adapters.azure.columns import Lookups
from billing_pipeline.adapters.azure.headers import AzureFields
from billing_pipeline.adapters.gcp import GcpAdapter
from billing_pipeline.adapters.gcp.fields import GcpFields, distinct_values
from billing_pipeline.tools.generator.gcp_samples import koku_csv_to_nested

from ..conftest import SAMPLES

KOKU_2020 = SAMPLES / "koku_202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv"
EA_ACTUAL = SAMPLES / "finops-toolkit_EA_ActualCost_Small.csv"


def _sample() -> pl.DataFrame:
    return koku_csv_to_nested(KOKU_2020).with_row_index("x_RawRow")


def _cleaned(value: str | None) -> str | None:
    """A field as the mapping reads it: stripped, empty as null."""
    return (value.strip() or None) if value is not None else None


def test_charges_and_credits_share_no_cached_mapped_frame(tmp_path: Path) -> None:
    """polars may share the scan of the raw slice between the two parts, never the mapped charge rows:
    a cached mapped frame was held whole until the credit part had read it."""
    raw = _sample().drop("x_RawRow")
    assert (raw["credits"].list.len() > 0).any(), "the sample has credits"
    raw.write_parquet(tmp_path / "raw.parquet")
    scan = pl.scan_parquet(tmp_path / "raw.parquet").with_row_index("x_RawRow")  # as the normalized layer
    lines = [line.strip() for line in GcpAdapter().to_focus(scan).explain().splitlines() if line.strip()]
    cached = [lines[i + 1] for i, line in enumerate(lines) if line.startswith("CACHE[")]
    assert not [below for below in cached if below.startswith(("SELECT", "WITH_COLUMNS", "simple", "FILTER"))]


def test_credit_rows_follow_every_charge_row_in_order() -> None:
    raw = _sample()
    focus = GcpAdapter().to_focus(raw.lazy()).collect(engine="streaming")
    credits = raw["credits"].list.len().fill_null(0).to_list()
    expected_ids = raw["x_RawRow"].to_list() + [
        i for i, n in zip(raw["x_RawRow"], credits, strict=True) for _ in range(n)
    ]
    assert focus["x_RawRow"].to_list() == expected_ids
    expected_categories = [None] * raw.height + ["Credit"] * sum(credits)
    got_categories = [c if i >= raw.height else None for i, c in enumerate(focus["ChargeCategory"])]
    assert got_categories == expected_categories


def test_gcp_distinct_values_are_each_value_once() -> None:
    raw = _sample()
    got = distinct_values(raw.lazy(), GcpFields(raw.schema))
    paths = {
        "service": ("service", "description"),
        "pricing_unit": ("usage", "pricing_unit"),
        "unit": ("usage", "unit"),
        "region": ("location", "region"),
    }
    for name, (column, field) in paths.items():
        values = [_cleaned(row[field] if row else None) for row in raw[column].to_list()]
        assert len(got[name]) == len(set(got[name])), name
        assert set(got[name]) == set(values), name


def test_azure_lookups_cover_each_value() -> None:
    raw = pl.read_csv(EA_ACTUAL, infer_schema=False, encoding="utf8-lossy")
    lookups = Lookups.of(raw.lazy(), AzureFields(raw.schema))
    for column, table in (("MeterCategory", lookups.services), ("UnitOfMeasure", lookups.units)):
        expected = {_cleaned(v) for v in raw[column].to_list()} - {None}
        assert set(table) == expected, column
    assert AzureAdapter().to_focus(raw.with_row_index("x_RawRow").lazy()).collect(engine="streaming").height
