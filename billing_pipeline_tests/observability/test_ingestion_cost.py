"""M5: the pipeline's own cost in money, month to date, from the quantities its state records and unit prices."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from pathlib import Path

import pytest

from billing_pipeline.defs.check_results import to_check_result
from billing_pipeline.observability import slis
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.state import write_state
from billing_pipeline.platform.storage import Store

from ..conftest import write_config
from ..ops_fixtures import cur2_month_frame, deliver_cur2, run_day

GIB = 2**30
NOW = dt.datetime(2023, 12, 20, tzinfo=dt.UTC)
# The documented defaults (README, "M5"): S3 Standard us-east-1 and a Fargate vCPU, USD, as of 2026.
STORAGE, PUT, LIST, GET = Fraction("0.023"), Fraction("0.005"), Fraction("0.005"), Fraction("0.0004")
VCPU_SECOND = Fraction("0.0000112444")

# What the state of each (source, day) records: per layer (bytes stored, compute seconds, writes), and for
# raw also bytes read and files read.
STATES: dict[tuple[str, str], dict] = {
    ("alpha", "2023-10-31"): {
        "raw": {"bytes_stored": GIB, "compute_seconds": 100.0, "writes": 1, "files_read": 9, "bytes_read": GIB},
        "normalized": {"bytes_stored": GIB // 2, "compute_seconds": 50.0, "writes": 1},
    },
    ("alpha", "2023-11-01"): {
        "raw": {
            "bytes_stored": 300_000_000,
            "compute_seconds": 12.5,
            "writes": 2,
            "files_read": 4,
            "bytes_read": 900_000_000,
        },
        "normalized": {"bytes_stored": 200_000_000, "compute_seconds": 6.0, "writes": 2},
        "enriched": {"bytes_stored": 210_000_000, "compute_seconds": 4.5, "writes": 1},
        "reconciliation": {"bytes_stored": 4_000, "compute_seconds": 0.5, "writes": 3},
    },
    ("beta", "2023-11-02"): {
        "raw": {"bytes_stored": 2 * GIB, "compute_seconds": 30.0, "writes": 1, "files_read": 12, "bytes_read": 5 * GIB}
    },
    ("alpha", "2023-11-03"): {
        "raw": {
            "bytes_stored": 400_000_000,
            "compute_seconds": 20.0,
            "writes": 1,
            "files_read": 2,
            "bytes_read": 1_200_000_000,
        },
        "normalized": {"bytes_stored": 250_000_000, "compute_seconds": 7.0, "writes": 1},
    },
    ("alpha", "2023-11-05"): {
        "raw": {
            "bytes_stored": 10 * GIB,
            "compute_seconds": 999.0,
            "writes": 1,
            "files_read": 99,
            "bytes_read": 10 * GIB,
        }
    },
}


def _expected(day: str, prices: dict[str, Fraction] | None = None) -> tuple[Fraction, dict[str, Fraction]]:
    """Month to date at `day`, per source, written out from the definition (README, M5)."""
    p = {
        "storage": STORAGE,
        "put": PUT,
        "list": LIST,
        "get": GET,
        "vcpu": VCPU_SECOND,
        "vcpus": Fraction(1),
        **(prices or {}),
    }
    until = dt.date.fromisoformat(day)
    first = until.replace(day=1)
    days_in_month = 30 if until.month == 11 else 31
    per_source: dict[str, Fraction] = {}
    for source in ("alpha", "beta"):
        cost = Fraction(0)
        mine = {dt.date.fromisoformat(d): s for (name, d), s in STATES.items() if name == source}
        d = first
        while d <= until:
            held = sum(layer.get("bytes_stored", 0) for when, s in mine.items() if when <= d for layer in s.values())
            cost += Fraction(held, GIB) * p["storage"] / days_in_month
            state = mine.get(d, {})
            if state:
                gets = state["raw"]["files_read"] + (len(state) - 1)  # upstream slice read by each later layer
                puts = sum(layer["writes"] for layer in state.values())
                lists = state["raw"]["writes"]
                cost += (gets * p["get"] + puts * p["put"] + lists * p["list"]) / 1000
                seconds = sum(Fraction(str(layer["compute_seconds"])) for layer in state.values())
                cost += seconds * p["vcpus"] * p["vcpu"]
            d += dt.timedelta(days=1)
        per_source[source] = cost
    return sum(per_source.values()), per_source


def _config(tmp_path: Path, **extra):
    sources = [{"name": n, "provider": "aws_cur2", "url": str(tmp_path / "landing" / n)} for n in ("alpha", "beta")]
    config = load_config(write_config(tmp_path, sources, start_date="2023-10-01", **extra))
    for (source, day), state in STATES.items():
        write_state(Store(), config.lake_url, source, dt.date.fromisoformat(day), state)
    return config


@pytest.mark.parametrize("day", ["2023-11-01", "2023-11-02", "2023-11-03", "2023-11-30", "2023-12-01"])
def test_month_to_date_money_from_the_recorded_quantities(tmp_path: Path, day: str) -> None:
    config = _config(tmp_path)
    result = slis.ingestion_cost(config, Store(), dt.date.fromisoformat(day), NOW)
    total, per_source = _expected(day)
    assert result.name == "ingestion_cost"
    assert result.value == pytest.approx(float(total), rel=1e-12)
    assert result.per_source == pytest.approx({k: float(v) for k, v in per_source.items()}, rel=1e-12)
    assert result.passed and math.isinf(result.target.target)  # no budget: reported, never failed
    assert "informational" in result.summary and "USD" in result.summary


def test_metadata_keeps_the_raw_quantities_and_labels_the_currency(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), NOW)
    metadata = {
        k: v.value if hasattr(v, "value") else v for k, v in to_check_result(result, "ingestion_cost").metadata.items()
    }
    assert metadata["currency"] == "USD" and metadata["month"] == "2023-11"
    assert metadata["sli/ingestion_cost"] == pytest.approx(float(_expected("2023-11-03")[0]), rel=1e-12)
    parts = sum(metadata[f"sli/ingestion_cost_{p}_usd"] for p in ("storage", "requests", "compute", "transfer"))
    assert parts == pytest.approx(metadata["sli/ingestion_cost"], rel=1e-12)
    assert metadata["sli/ingestion_cost_transfer_usd"] == 0.0  # same-region transfer is free by default
    day = STATES[("alpha", "2023-11-03")]
    assert metadata["sli/ingestion_compute_seconds"] == 27.0
    assert metadata["sli/ingestion_bytes_read"] == 1_200_000_000.0
    assert metadata["sli/ingestion_bytes_stored"] == 650_000_000.0
    assert (
        metadata["sli/ingestion_requests_get"],
        metadata["sli/ingestion_requests_put"],
        metadata["sli/ingestion_requests_list"],
    ) == (day["raw"]["files_read"] + 1, 2.0, 1.0)
    lake = sum(layer["bytes_stored"] for (_, d), s in STATES.items() if d <= "2023-11-03" for layer in s.values())
    assert metadata["sli/ingestion_lake_bytes"] == float(lake)
    assert metadata["sli/ingestion_compute_seconds_month"] == 12.5 + 6.0 + 4.5 + 0.5 + 30.0 + 27.0


def test_unit_prices_are_configurable(tmp_path: Path) -> None:
    prices = {
        "storage_per_gb_month": 0.1,
        "get_per_1000_requests": 1,
        "put_per_1000_requests": 2,
        "list_per_1000_requests": 3,
        "compute_per_vcpu_second": 0.5,
        "vcpus": 2,
        "currency": "EUR",
    }
    config = _config(tmp_path, cost_model=prices)
    result = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), NOW)
    total, _ = _expected(
        "2023-11-03",
        {
            "storage": Fraction("0.1"),
            "get": Fraction(1),
            "put": Fraction(2),
            "list": Fraction(3),
            "vcpu": Fraction("0.5"),
            "vcpus": Fraction(2),
        },
    )
    assert result.value == pytest.approx(float(total), rel=1e-12)
    assert result.extra["currency"] == "EUR" and "sli/ingestion_cost_storage_eur" in result.extra
    assert "EUR" in result.summary


def test_a_transfer_price_charges_the_bytes_read(tmp_path: Path) -> None:
    config = _config(tmp_path, cost_model={"transfer_per_gb": 0.09})
    result = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), NOW)
    read = 900_000_000 + 5 * GIB + 1_200_000_000
    assert result.extra["sli/ingestion_cost_transfer_usd"] == pytest.approx(read / GIB * 0.09, rel=1e-12)
    assert result.value == pytest.approx(float(_expected("2023-11-03")[0]) + read / GIB * 0.09, rel=1e-12)


def test_a_monthly_budget_fails_when_the_month_to_date_exceeds_it(tmp_path: Path) -> None:
    total = float(_expected("2023-11-03")[0])
    over = _config(tmp_path, slo={"ingestion_cost": {"target": total * 0.99}})
    result = slis.ingestion_cost(over, Store(), dt.date(2023, 11, 3), NOW)
    assert not result.passed and result.target.severity == "WARN"
    assert result.source_verdicts() == {slis.ALL_SOURCES: False}  # one bad event for its error budget
    assert "OVER the monthly budget" in result.summary
    within = slis.ingestion_cost(over, Store(), dt.date(2023, 11, 2), NOW)  # the same month, two days in
    assert within.passed and "within the monthly budget" in within.summary


def test_the_value_of_a_day_does_not_depend_on_when_it_is_evaluated(tmp_path: Path) -> None:
    config = _config(tmp_path)
    early = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), dt.datetime(2023, 11, 4, tzinfo=dt.UTC))
    late = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    assert early.value == late.value and early.extra == late.extra


def test_a_real_build_records_what_m5_prices(tmp_path: Path) -> None:
    period = "2023-11"
    root = tmp_path / "landing" / "alpha"
    deliver_cur2(root, "exec-1", cur2_month_frame(period, days=[dt.date(2023, 11, 3)]), period)
    config = load_config(
        write_config(tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01")
    )
    run_day(config, dt.date(2023, 11, 3))
    result = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 3), NOW)
    assert result.passed and result.value > 0
    assert result.extra["sli/ingestion_bytes_read"] > 0 and result.extra["sli/ingestion_bytes_stored"] > 0
    assert result.extra["sli/ingestion_requests_get"] >= 2 and result.extra["sli/ingestion_requests_put"] >= 4
    assert result.extra["sli/ingestion_cost_compute_usd"] > 0 and result.extra["sli/ingestion_cost_storage_usd"] > 0


def test_a_later_day_reads_only_the_state_files_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Month to date sums the state of every usage day of the lake; a backfill evaluates it day after day, so
    each state file is read once in a process, and again only when it changes (a rebuilt day)."""
    from billing_pipeline.observability import pipeline_cost

    config = _config(tmp_path)
    reads: list[str] = []
    read = pipeline_cost._read
    monkeypatch.setattr(pipeline_cost, "_read", lambda store, url: reads.append(url) or read(store, url))
    monkeypatch.setattr(pipeline_cost, "_USAGE_BY_FILE", KeptByIdentity(limit=200_000))
    first = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 30), NOW)
    assert len(reads) == len(STATES) and first.value == pytest.approx(float(_expected("2023-11-30")[0]), rel=1e-12)

    reads.clear()
    again = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 30), NOW)
    assert reads == [] and again.value == first.value

    rebuilt = {**STATES[("beta", "2023-11-02")]["raw"], "writes": 2, "bytes_stored": 3 * GIB}
    monkeypatch.setitem(STATES, ("beta", "2023-11-02"), {"raw": rebuilt})
    write_state(Store(), config.lake_url, "beta", dt.date(2023, 11, 2), STATES[("beta", "2023-11-02")])
    after = slis.ingestion_cost(config, Store(), dt.date(2023, 11, 30), NOW)
    assert [url.rsplit("/", 1)[-1] for url in reads] == ["date=2023-11-02.json"]
    assert after.value == pytest.approx(float(_expected("2023-11-30")[0]), rel=1e-12) != first.value
