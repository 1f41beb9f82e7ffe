"""A re-run of a closed billing period lands in the audit log with who asked; a first build, or a re-run of
a period the source still restates, does not (the raw step decides, with the run's clock and tags)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from billing_pipeline.lifecycle.audit_log import OperatorRun, read_audit_log
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.raw import build_raw_slice_if_changed

from ..conftest import legacy_cur_landing, write_config

DAY = dt.date(2023, 11, 1)
IN_NOVEMBER = dt.datetime(2023, 11, 20, tzinfo=dt.UTC)  # 2023-11 still restated
IN_DECEMBER = dt.datetime(2023, 12, 20, tzinfo=dt.UTC)  # lookback 2: 2023-11 and 2023-12 open
IN_JANUARY = dt.datetime(2024, 1, 5, tzinfo=dt.UTC)  # 2023-11 closed


def _config(tmp_path: Path) -> BillingConfig:
    report = legacy_cur_landing(tmp_path / "landing")
    source = {"name": "cur", "provider": "aws_cur", "url": str(report)}
    return load_config(write_config(tmp_path, [source], start_date="2023-11-01"))


def _build(config: BillingConfig, operator: OperatorRun) -> None:
    with scratch_dir() as workdir:
        build_raw_slice_if_changed(config.sources[0], DAY, Store(), config.lake_url, workdir, operator=operator)


def _reruns(config: BillingConfig) -> pl.DataFrame:
    with scratch_dir() as workdir:
        audit = read_audit_log(Store(), config.lake_url, workdir)
    return audit.filter(pl.col("action") == "closed_month_rerun").sort("run_id")


def test_only_a_rerun_of_a_closed_month_is_audited_with_who_asked(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _build(config, OperatorRun("r0", "ops", at=IN_JANUARY))  # the first build of a closed month: a backfill
    _build(config, OperatorRun("r1", "ops", at=IN_NOVEMBER))
    _build(config, OperatorRun("r2", "ops", at=IN_DECEMBER))
    assert _reruns(config).height == 0
    _build(config, OperatorRun.from_tags("r3", {"dagster/user": "ana@example.org", "billing/requested_by": "jane"}))
    _build(config, OperatorRun.from_tags("r4", {"dagster/user": "ana"}))
    _build(config, OperatorRun.from_tags("r5", {}))
    reruns = _reruns(config)
    assert reruns.select("run_id", "who").rows() == [("r3", "jane"), ("r4", "ana"), ("r5", "unknown")]
    assert set(reruns["partition"]) == {"date=2023-11-01/source=cur"} and set(reruns["table"]) == {"raw_line_items"}
    assert all(
        d.startswith("billing period 2023-11 is closed (lookback 2 months); slice unchanged") for d in reruns["detail"]
    )
    assert not reruns["dry_run"].any()
