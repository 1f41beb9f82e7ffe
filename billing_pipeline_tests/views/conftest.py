"""A generated month in a lake (every provider the generator writes, four days through the spine), shared
by the views' tests, and the ECB-layout reference-rate fixture."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import run_spine, write_config

FX_RATES = Path(__file__).parent.parent / "fixtures" / "fx" / "eurofxref-hist.csv"
MONTH = dt.date(2026, 10, 1)
DAYS = 4  # Thursday 1 to Sunday 4 October: two days convert at Friday's rate
SOURCES: dict[str, tuple[str, str]] = {
    "aws_cur2": ("aws_cur2", "aws_cur2/cur2-daily"),
    "aws_cur": ("aws_cur", "aws_cur/cur/legacy-cur"),
    "focus": ("focus", "focus/focus-export"),
    "gcp": ("gcp", "gcp/billing-export"),
    "azure": ("azure", "azure/cost-exports/actual-daily"),
}

ConfigFactory = Callable[..., BillingConfig]


@pytest.fixture(scope="package")
def generated_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `landing/` (the generator's month) and `lake/` (the spine run for its first days)."""
    root = tmp_path_factory.mktemp("views_month")
    landing = root / "landing"
    generate_landing_zone(landing, month="2026-10", rows_per_day=30, days=DAYS, providers=tuple(SOURCES))
    config = load_config(write_config(root, _sources(landing), invoices_url=str(landing / "invoices")))
    for day in range(1, DAYS + 1):
        run_spine(config, MONTH.replace(day=day))
    return root


def _sources(landing: Path) -> list[dict[str, str]]:
    return [
        {"name": name, "provider": provider, "url": str(landing / url)} for name, (provider, url) in SOURCES.items()
    ]


@pytest.fixture
def views_config(generated_lake: Path, tmp_path: Path) -> ConfigFactory:
    """A config over the generated lake (a copy, so each test writes its own views) with extra sections."""
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(generated_lake / "lake", lake)

    def build(**extra: Any) -> BillingConfig:
        folder = tmp_path / "config"
        folder.mkdir(exist_ok=True)
        landing = generated_lake / "landing"
        return load_config(
            write_config(
                folder,
                _sources(landing),
                lake_url=str(lake),
                invoices_url=str(landing / "invoices"),
                start_date=MONTH.isoformat(),
                **extra,
            )
        )

    return build
