"""The pipeline against what the generator *meant*, not against itself.

`conservation_delta == 0` compares the lake with totals the adapter computes from its own reading of
the raw rows: a mistake made on both sides (a credit dropped, a column misread) cancels out. Here a
generated month of every source the generator writes (AWS CUR 2.0, legacy CUR as gzip CSV and in its
Athena Parquet flavour, native FOCUS, GCP, Azure) goes through the real `billing_daily` job on a
SQLite Dagster instance on disk, and the normalized slices in the lake are compared with the
generator's `ground_truth.csv` per (day, source, billing account, currency), exactly, in Python
Decimal: the sums of BilledCost and of EffectiveCost (the ground truth gives both for every source)
and the number of rows kept (for GCP: one per charge and one per credit). The ground truth is read
with the csv module; the lake's cells are read through polars and summed in Python. No expectation
goes through an adapter.

The month is truncated to 5 days so that every step of the delivery plan happens: delivery 1 covers
days 1-2, delivery 2 days 1-4 restating 1-2, the final delivery days 1-5 restating 3-4 (the Athena
flavour is overwrite-mode: final delivery only). The days checked:
- day 1: the month's first day (restated once; in legacy CUR's re-sent file);
- day 2: GCP's corrections (negation + restatement) and its re-pulled file's duplicates;
- day 4: restated by the final delivery; CUR 2.0's duplicated rows;
- day 5: only in the final delivery; Azure's blob delivered twice.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import parquet_cost_totals, write_config

MONTH = "2026-10"
DAYS_IN_MONTH = 5
ROWS_PER_DAY = 30
CHECKED_DAYS = (1, 2, 4, 5)
# generator source -> (provider, the export root a user points the source at, as in billing.yaml)
SOURCES: dict[str, tuple[str, str]] = {
    "aws_cur2": ("aws_cur2", "aws_cur2/cur2-daily"),
    "aws_cur": ("aws_cur", "aws_cur/cur/legacy-cur"),
    "aws_cur_parquet": ("aws_cur", "aws_cur_parquet/cur/legacy-cur/legacy-cur"),  # CUR's Athena flavour
    "focus": ("focus", "focus/focus-export"),
    "gcp": ("gcp", "gcp/billing-export"),
    "azure": ("azure", "azure/cost-exports/actual-daily"),
}

Key = tuple[str, str]  # (billing account, currency)


def _day(n: int) -> dt.date:
    return dt.date.fromisoformat(f"{MONTH}-{n:02d}")


def read_ground_truth(path: Path) -> dict[tuple[dt.date, str], dict[Key, dict[str, Any]]]:
    """`ground_truth.csv` with the csv module: (day, source) -> (account, currency) -> its columns."""
    out: dict[tuple[dt.date, str], dict[Key, dict[str, Any]]] = defaultdict(dict)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["billing_account_id"], row["currency"])
            slot = out[(dt.date.fromisoformat(row["date"]), row["source"])]
            assert key not in slot, f"ground truth lists {row['source']} {row['date']} {key} twice"
            slot[key] = {
                "billed": Decimal(row["billed_cost"]),
                "effective": Decimal(row["effective_cost"]),
                "rows": int(row["rows"]),
                "duplicate_rows": int(row["duplicate_rows"]),
            }
    return dict(out)


class GeneratedMonth:
    def __init__(self, root: Path, truth: dict, results: dict, instance: Any) -> None:
        self.lake = str(root / "lake")
        self.truth = truth
        self.results = results
        self.instance = instance


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory):
    """A generated month of the five providers, and `billing_daily` run for the checked days on an
    SQLite instance in a temporary DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("ground_truth")
    landing = root / "landing"
    generate_landing_zone(landing, month=MONTH, rows_per_day=ROWS_PER_DAY, days=DAYS_IN_MONTH, providers=tuple(SOURCES))
    config_path = write_config(
        root,
        [{"name": name, "provider": provider, "url": str(landing / url)} for name, (provider, url) in SOURCES.items()],
        invoices_url=str(landing / "invoices"),
        start_date=f"{MONTH}-01",
    )
    truth = read_ground_truth(landing / "ground_truth.csv")
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    with instance_for_test() as instance:
        results = {
            _day(n): job.execute_in_process(partition_key=_day(n).isoformat(), instance=instance, raise_on_error=False)
            for n in CHECKED_DAYS
        }
        yield GeneratedMonth(root, truth, results, instance)


def test_the_checked_days_exercise_restatements_and_duplicates(month: GeneratedMonth) -> None:
    """Guards the choice of days: if the generator changes, the test must still see what it claims."""
    for source in SOURCES:
        assert all((_day(n), source) in month.truth for n in CHECKED_DAYS), source
    duplicated = {
        (day, source)
        for (day, source), keys in month.truth.items()
        if day in {_day(n) for n in CHECKED_DAYS} and any(v["duplicate_rows"] for v in keys.values())
    }
    assert {s for _, s in duplicated} >= {"aws_cur2", "aws_cur", "gcp", "azure"}
    assert (_day(2), "gcp") in duplicated and (_day(4), "aws_cur2") in duplicated
    assert (_day(5), "azure") in duplicated


def test_billing_daily_materializes_every_checked_day(month: GeneratedMonth) -> None:
    for day, result in month.results.items():
        failures = [
            str(e.event_specific_data.error.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        ]
        assert result.success, (day, failures)
    event = month.instance.get_latest_materialization_event(AssetKey("reconciliation_deltas"))
    assert event is not None and event.asset_materialization.partition == _day(CHECKED_DAYS[-1]).isoformat()


@pytest.mark.parametrize("source", list(SOURCES))
def test_normalized_costs_equal_the_ground_truth(month: GeneratedMonth, source: str) -> None:
    """Per (day, account, currency): sum of BilledCost, sum of EffectiveCost and rows kept, exactly."""
    for n in CHECKED_DAYS:
        day = _day(n)
        expected = {k: (v["billed"], v["effective"], v["rows"]) for k, v in month.truth[(day, source)].items()}
        target = Path(slice_url(month.lake, "normalized_line_items", day, source))
        assert target.exists(), f"{source} {day}: no normalized slice"
        got = parquet_cost_totals(target)
        assert got == expected, f"{source} {day}: lake (billed, effective, rows) != ground truth"


@pytest.mark.parametrize("source", list(SOURCES))
def test_duplicates_are_counted_once_and_never_in_the_costs(month: GeneratedMonth, source: str) -> None:
    """The ground truth's duplicate rows are the rows the lake's duplicates quarantine holds."""
    for n in CHECKED_DAYS:
        day = _day(n)
        expected = sum(v["duplicate_rows"] for v in month.truth[(day, source)].values())
        target = Path(quarantine_url(month.lake, "duplicates", day, source))
        got = pl.read_parquet(target).height if target.exists() else 0
        assert got == expected, f"{source} {day}: {got} duplicate rows quarantined, ground truth says {expected}"
