"""A generated month for the dashboards: the generator's first four days of every provider, run through the
real `billing_daily` job (spine, cost anomalies, SLO error budgets, and the state documents the pages read)
and then `billing_monthly` (chargeback, forecast, dashboards) on a Dagster instance on disk."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.names import JOB
from billing_pipeline.platform.storage import Store
from billing_pipeline.views.dashboards.publish import PAGES, page_url
from billing_pipeline.views.names import DASHBOARDS, MONTHLY_JOB

from ...conftest import write_config
from ..conftest import DAYS, FX_RATES, MONTH, SOURCES

REPORTING = {"currency": "USD", "fx_rates_url": str(FX_RATES)}
BUDGETS = {"currency": "USD", "total": 40000, "teams": {"web": 3000, "ml": 1000}}
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def dashboard_config_path(folder: Path, landing: Path, **extra: Any) -> Path:
    """billing.yaml over the generated landing zone, its lake in `folder`, partitions for the four days."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [
        {"name": name, "provider": provider, "url": str(landing / url)} for name, (provider, url) in SOURCES.items()
    ]
    return write_config(
        folder,
        sources,
        invoices_url=str(landing / "invoices"),
        start_date=MONTH.isoformat(),
        end_date=(MONTH + dt.timedelta(days=DAYS - 1)).isoformat(),
        **extra,
    )


def run_month(config_path: Path, instance: DagsterInstance, run_config: dict[str, Any] | None = None) -> Any:
    """`billing_daily` for each day, then `billing_monthly` for the month; returns the monthly run's result."""
    defs = build_definitions(config_path)
    daily = defs.resolve_job_def(JOB)
    for offset in range(DAYS):
        key = (MONTH + dt.timedelta(days=offset)).isoformat()
        assert daily.execute_in_process(partition_key=key, instance=instance, run_config=QUIET).success, key
    return defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
        partition_key=MONTH.isoformat(), instance=instance, run_config={**QUIET, **(run_config or {})}
    )


@pytest.fixture(scope="package")
def dashboard_month(generated_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The month in the reporting currency (USD) with budgets, through Dagster; its pages written."""
    root = tmp_path_factory.mktemp("dashboards")
    config_path = dashboard_config_path(root, generated_lake / "landing", reporting=REPORTING, budgets=BUDGETS)
    config = load_config(config_path)
    (root / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        result = run_month(config_path, instance)
        assert result.success
        materialization = instance.get_latest_materialization_event(AssetKey(DASHBOARDS)).asset_materialization
        urls = {name: page_url(config.lake_url, MONTH, name) for name in PAGES}
        return SimpleNamespace(
            config=config,
            config_path=config_path,
            store=Store(config.storage_options),
            urls=urls,
            metadata=materialization.metadata,
            partition=materialization.partition,
        )
