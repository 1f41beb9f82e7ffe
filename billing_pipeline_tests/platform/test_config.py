"""billing.yaml: a missing or wrong key fails at load time and names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from billing_pipeline.definitions import build_definitions
from billing_pipeline.platform.config import ConfigError, load_config

from ..conftest import write_config


def _valid(tmp_path: Path) -> dict:
    path = write_config(tmp_path, [{"name": "cur", "provider": "aws_cur2", "url": "landing/cur"}])
    return yaml.safe_load(path.read_text())


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "billing.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_valid_config_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _valid(tmp_path)))
    assert config.sources[0].url == str((tmp_path / "landing" / "cur").resolve())
    assert config.duckdb_file == str(Path(config.lake_url) / "lake.duckdb")


@pytest.mark.parametrize("key", ["lake_url", "start_date", "sources", "invoices_url", "tag_policy"])
def test_missing_key_is_named(tmp_path: Path, key: str) -> None:
    document = _valid(tmp_path)
    del document[key]
    with pytest.raises(ConfigError, match=rf"{key}: missing required key"):
        load_config(_write(tmp_path, document))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["sources"][0].update(provider="oracle"), r"sources\.0\.provider"),
        (lambda d: d["sources"][0].pop("url"), r"sources\.0\.url: missing required key"),
        (lambda d: d.update(start_date="first of october"), r"start_date"),
        (lambda d: d.update(lake_urll="typo"), r"lake_urll: unknown key"),
        (lambda d: d["tag_policy"].update(owner_dimension="nobody"), r"owner_dimension 'nobody'"),
        (lambda d: d["sources"].append(dict(d["sources"][0])), r"source names must be unique"),
    ],
)
def test_wrong_key_is_named(tmp_path: Path, mutate, expected: str) -> None:
    document = _valid(tmp_path)
    mutate(document)
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, document))


def test_missing_file_names_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="BILLING_CONFIG"):
        load_config()


def test_code_location_fails_to_load_on_a_bad_key(tmp_path: Path) -> None:
    document = _valid(tmp_path)
    document["sources"][0]["provider"] = "azure_typo"
    with pytest.raises(ConfigError, match="provider"):
        build_definitions(_write(tmp_path, document))


def test_definitions_load_and_expose_the_job(tmp_path: Path) -> None:
    from dagster import Definitions

    defs = build_definitions(_write(tmp_path, _valid(tmp_path)))
    Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("billing_daily")
    assert {str(k.path[-1]) for k in job.asset_layer.executable_asset_keys} == {
        "raw_line_items",
        "normalized_line_items",
        "tag_enriched_costs",
        "reconciliation_deltas",
        "cost_anomalies",
        "slo_error_budgets",
    }
    monthly = defs.resolve_job_def("billing_monthly")
    assert {str(k.path[-1]) for k in monthly.asset_layer.executable_asset_keys} == {
        "monthly_chargeback",
        "unit_costs",
        "budget_forecast",
        "dashboards",
    }


def test_views_sections_resolve_relative_paths_and_default_to_off(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _valid(tmp_path)))
    assert config.reporting is None and config.unit_costs is None
    assert config.chargeback.rule("tax").method == "proportional"
    document = _valid(tmp_path) | {
        "reporting": {"currency": "USD", "fx_rates_url": "fx/eurofxref-hist.csv"},
        "unit_costs": {"metrics_url": "metrics/daily.csv", "per": {"requests": 1000}},
        "chargeback": {"support": {"method": "even"}, "tax": {"method": "weights", "weights": {"platform": 1}}},
    }
    config = load_config(_write(tmp_path, document))
    assert config.reporting is not None and config.unit_costs is not None
    assert config.reporting.fx_rates_url == str((tmp_path / "fx" / "eurofxref-hist.csv").resolve())
    assert config.unit_costs.metrics_url == str((tmp_path / "metrics" / "daily.csv").resolve())
    assert config.chargeback.rule("support").method == "even"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"reporting": {"currency": "usd", "fx_rates_url": "x.csv"}}, r"reporting\.currency"),
        ({"reporting": {"currency": "USD"}}, r"reporting\.fx_rates_url: missing required key"),
        ({"chargeback": {"tax": {"method": "weights"}}}, r"chargeback\.tax: .*non-empty `weights`"),
        ({"chargeback": {"tax": {"method": "even", "weights": {"a": 1}}}}, r"chargeback\.tax: .*only read by"),
        ({"chargeback": {"taxes": {"method": "even"}}}, r"chargeback\.taxes: unknown key"),
        ({"chargeback": {"support": {"method": "random"}}}, r"chargeback\.support\.method"),
        ({"unit_costs": {"per": {"requests": 1000}}}, r"unit_costs\.metrics_url: missing required key"),
    ],
)
def test_wrong_views_key_is_named(tmp_path: Path, section: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, _valid(tmp_path) | section))
