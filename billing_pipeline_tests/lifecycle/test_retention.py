"""Retention on a local lake: dry run by default, whole partitions only, open periods and unresolved
quarantine records kept, every deletion in the append-only audit log (and its DuckDB view)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.lifecycle_jobs import RETENTION_JOB
from billing_pipeline.lifecycle.audit_log import read_audit_log
from billing_pipeline.lifecycle.retention import (
    EXPIRED,
    KEPT_OPEN,
    KEPT_QUARANTINE,
    KEPT_YOUNG,
    RetentionRun,
    apply_retention,
    plan_retention,
)
from billing_pipeline.platform.config import BillingConfig, ConfigError, load_config
from billing_pipeline.platform.lake import quarantine_url, quarantined_file_url, slice_url
from billing_pipeline.platform.names import NORMALIZED, RAW, SLO_BUDGETS
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.quarantine import QUARANTINE_RECORD_SCHEMA

from ..conftest import legacy_cur_landing, run_spine, write_config

DAY1, DAY2 = dt.date(2023, 11, 1), dt.date(2023, 11, 2)
LATER = dt.datetime(2031, 1, 15, tzinfo=dt.UTC)


def _config(tmp_path: Path, **extra) -> BillingConfig:
    report = legacy_cur_landing(tmp_path / "landing")
    return load_config(
        write_config(
            tmp_path,
            [{"name": "cur", "provider": "aws_cur", "url": str(report)}],
            start_date="2023-11-01",
            **extra,
        )
    )


def _plan(config: BillingConfig, today: dt.date) -> pl.DataFrame:
    with scratch_dir() as workdir:
        return plan_retention(config, Store(), today, workdir)


def _record(config: BillingConfig, day: dt.date, kind: str, version: str = "v1") -> str:
    """An `unreadable`-style quarantine record for (day, cur) with its quarantined copy."""
    store = Store()
    copy = quarantined_file_url(config.lake_url, "cur", version, "s3://landing/part-2.parquet")
    store.write_bytes(copy, b"\x00" * 64)
    record = {
        "source": "cur",
        "usage_date": day,
        "stage": "raw",
        "kind": kind,
        "file_uri": "s3://landing/part-2.parquet",
        "export_version": version,
        "reason": "truncated",
        "rows": 0,
        "quarantined_copy": copy,
        "detected_at": dt.datetime(2023, 11, 20, tzinfo=dt.UTC),
    }
    with scratch_dir() as workdir:
        store.write_parquet(
            pl.DataFrame([record], schema=QUARANTINE_RECORD_SCHEMA),
            quarantine_url(config.lake_url, "records", day, "cur"),
            workdir,
        )
    return copy


def test_lake_retention_job_dry_runs_by_default_then_deletes_and_audits(tmp_path: Path) -> None:
    config = _config(tmp_path)
    defs = build_definitions(config.config_path)
    raw = Path(slice_url(config.lake_url, RAW, DAY1, "cur"))
    normalized = Path(slice_url(config.lake_url, NORMALIZED, DAY1, "cur"))
    with instance_for_test() as instance:
        assert defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key="2023-11-01", instance=instance).success
        retention = defs.resolve_job_def(RETENTION_JOB)
        dry = retention.execute_in_process(instance=instance, tags={"dagster/user": "ops-bot"})
        assert dry.success and raw.exists()  # raw is kept 36 months by default: 2023-11 is past it, but a dry run
        first_file = next((Path(config.lake_url) / "audit_log").rglob("*.parquet"))
        first_bytes = first_file.read_bytes()
        real = retention.execute_in_process(
            instance=instance,
            run_config={"ops": {"lake_retention_pass": {"config": {"dry_run": False, "requested_by": "jane"}}}},
        )
        assert real.success
    assert not raw.exists() and not raw.parent.parent.exists()  # the whole partition, and its empty date folder
    assert normalized.exists()  # curated: 7 years
    assert first_file.read_bytes() == first_bytes  # never rewritten
    with scratch_dir() as workdir:
        everything = read_audit_log(Store(), config.lake_url, workdir)
    # past their age on today's clock: raw (36 months) and the SLO budgets report (25 months) of 2023-11
    assert set(everything["table"]) == {RAW, SLO_BUDGETS}
    audit = everything.filter(pl.col("table") == RAW).sort("dry_run")
    assert audit.select("who", "dry_run").rows() == [("jane", False), ("ops-bot", True)]
    assert audit["partition"].to_list() == ["date=2023-11-01/source=cur"] * 2
    assert (audit["files"] == 1).all() and (audit["bytes"] > 0).all()
    assert audit["run_id"].n_unique() == 2 and audit["at"].is_not_null().all()
    with duckdb.connect(str(Path(config.lake_url) / "lake.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            f"SELECT who, dry_run FROM audit_log WHERE \"table\" = '{RAW}' ORDER BY who"
        ).fetchall()
    assert rows == [("jane", False), ("ops-bot", True)]


def test_a_partition_of_an_open_billing_period_is_never_deleted(tmp_path: Path) -> None:
    config = _config(tmp_path, retention={"raw": "1 days", "curated": "1d"})
    run_spine(config, DAY1)
    december = _plan(config, dt.date(2023, 12, 10))  # lookback 2 months: November is still open
    assert set(december["decision"]) == {KEPT_OPEN}
    january = _plan(config, dt.date(2024, 1, 10))  # now only December and January are open
    assert set(january["decision"]) == {EXPIRED}
    november = _plan(config, dt.date(2023, 11, 1))
    assert set(november["decision"]) == {KEPT_YOUNG}


def test_an_unresolved_quarantine_record_keeps_every_partition_it_refers_to(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for day in (DAY1, DAY2):
        run_spine(config, day)
    copy = _record(config, DAY1, "unreadable")
    with scratch_dir() as workdir:
        result = apply_retention(config, Store(), RetentionRun(who="t", run_id="r1", dry_run=False, at=LATER), workdir)
    kept = result.plan.filter(pl.col("decision") == KEPT_QUARANTINE)
    assert set(kept["partition"]) == {"date=2023-11-01/source=cur", "source=cur/version=v1"}
    assert set(kept["table"]) == {
        RAW,
        NORMALIZED,
        "tag_enriched_costs",
        "reconciliation_deltas",
        "quarantine/records",
        "quarantine/files",
    }
    assert Path(copy).exists() and Path(slice_url(config.lake_url, RAW, DAY1, "cur")).exists()
    assert not Path(slice_url(config.lake_url, RAW, DAY2, "cur")).exists()
    assert set(result.audit["partition"]) == {"date=2023-11-02/source=cur"}


def test_an_accepted_record_no_longer_protects(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run_spine(config, DAY1)
    _record(config, DAY1, "accepted")
    plan = _plan(config, LATER.date())
    assert set(plan["decision"]) == {EXPIRED}


def test_nothing_expired_writes_no_audit_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run_spine(config, DAY1)
    with scratch_dir() as workdir:
        result = apply_retention(
            config, Store(), RetentionRun(who="t", run_id="r", at=dt.datetime(2023, 11, 5, tzinfo=dt.UTC)), workdir
        )
    assert result.audit_url is None and not (Path(config.lake_url) / "audit_log").exists()


@pytest.mark.parametrize(
    ("text", "amount", "unit"), [("90 days", 90, "days"), ("13m", 13, "months"), ("1 month", 1, "months")]
)
def test_retention_ages_in_days_or_months(tmp_path: Path, text: str, amount: int, unit: str) -> None:
    age = _config(tmp_path, retention={"quarantine": text}).retention.quarantine
    assert (age.amount, age.unit) == (amount, unit)


def test_defaults_keep_curated_seven_years_and_a_bad_age_fails_at_load(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert str(config.retention.curated) == "84 months" and config.retention.curated.cutoff(
        dt.date(2031, 1, 15)
    ) == dt.date(2024, 1, 1)
    with pytest.raises(ConfigError, match="retention.raw"):
        _config(tmp_path, retention={"raw": "2 years"})
    with pytest.raises(ConfigError, match="retention.archive"):
        _config(tmp_path, retention={"archive": "2 days"})


def test_with_a_raw_lake_raw_and_quarantine_expire_there_and_the_audit_stays_in_the_lake(tmp_path: Path) -> None:
    config = _config(tmp_path, raw_lake_url="restricted", retention={"raw": "1 days", "quarantine": "1 days"})
    for day in (DAY1, DAY2):
        run_spine(config, day)
    copy = Path(_record(config, DAY1, "unreadable"))
    raw1, raw2 = (Path(slice_url(config.lake_url, RAW, day, "cur")) for day in (DAY1, DAY2))
    assert raw1.is_relative_to(tmp_path / "restricted") and copy.is_relative_to(tmp_path / "restricted")
    assert not (tmp_path / "lake" / RAW).exists() and not (tmp_path / "lake" / "quarantine").exists()
    with scratch_dir() as workdir:
        result = apply_retention(config, Store(), RetentionRun(who="t", run_id="r1", dry_run=False, at=LATER), workdir)
        audit = read_audit_log(Store(), config.lake_url, workdir)
    roots = dict(result.plan.select("table", "root").unique().iter_rows())
    assert roots[RAW] == str(tmp_path / "restricted" / RAW)
    assert roots["quarantine/records"] == str(tmp_path / "restricted" / "quarantine" / "records")
    assert roots[NORMALIZED] == str(tmp_path / "lake" / NORMALIZED)
    assert raw1.exists() and copy.exists()  # the unresolved record still protects, across the two lakes
    assert not raw2.exists() and not raw2.parent.parent.exists() and (tmp_path / "restricted" / RAW).exists()
    assert {"date=2023-11-02/source=cur"} == set(audit.filter(pl.col("table") == RAW)["partition"])
    assert not (tmp_path / "restricted" / "audit_log").exists()
