"""`privacy:` and `raw_lake_url` in billing.yaml: a missing key fails at load time naming its variable; the raw
lake defaults to the lake and the path helpers put raw slices and quarantine under it."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import pytest

from billing_pipeline.platform.config import ConfigError, load_config
from billing_pipeline.platform.lake import quarantine_url, quarantined_file_url, slice_url, view_globs
from billing_pipeline.platform.privacy_config import DEFAULT_KEY_ENV_VAR
from billing_pipeline.spine.privacy import Pseudonymizer

from ..conftest import write_config

SOURCES = [{"name": "a", "provider": "aws_cur2", "url": "landing"}]
DAY = dt.date(2026, 10, 2)


def test_a_privacy_section_without_its_key_fails_at_load_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BILLING_TEST_PII_KEY", raising=False)
    path = write_config(tmp_path, SOURCES, privacy={"key_env_var": "BILLING_TEST_PII_KEY"})
    with pytest.raises(ConfigError, match="BILLING_TEST_PII_KEY"):
        load_config(path)
    monkeypatch.setenv("BILLING_TEST_PII_KEY", "   ")
    with pytest.raises(ConfigError, match="missing: set the environment variable BILLING_TEST_PII_KEY"):
        load_config(path)
    monkeypatch.setenv("BILLING_TEST_PII_KEY", "short")
    with pytest.raises(ConfigError, match="5 bytes; at least 16"):
        load_config(path)
    monkeypatch.setenv("BILLING_TEST_PII_KEY", "a key long enough to use")
    config = load_config(path)
    assert config.privacy is not None and "a key long enough" not in config.model_dump_json()
    privacy = Pseudonymizer.of(config)
    assert privacy is not None and privacy.key == b"a key long enough to use"
    assert "a key long enough" not in repr(privacy)


def test_privacy_defaults_and_absence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEFAULT_KEY_ENV_VAR, "x" * 32)
    config = load_config(write_config(tmp_path, SOURCES, privacy={"tag_keys": ["Owner", "aws:createdBy", "E-Mail"]}))
    assert config.privacy is not None
    assert config.privacy.tag_keys == ["aws_createdby", "e_mail", "owner"]  # folded like the tag policy's keys
    assert config.privacy.columns == ["x_AccountOwnerId"] and config.privacy.email_values
    defaults = load_config(write_config(tmp_path, SOURCES, privacy={})).privacy
    assert defaults is not None and {"owner", "creator", "created_by", "contact", "email"} <= set(defaults.tag_keys)
    assert Pseudonymizer.of(load_config(write_config(tmp_path, SOURCES))) is None  # no section: no key needed


def test_raw_lake_url_defaults_to_the_lake_and_holds_raw_and_quarantine(tmp_path: Path) -> None:
    same = load_config(write_config(tmp_path, SOURCES, lake_url="lake"))
    assert same.raw_lake == same.lake_url == str(tmp_path / "lake")
    config = load_config(write_config(tmp_path, SOURCES, lake_url="lake", raw_lake_url="restricted/raw"))
    lake, raw = str(tmp_path / "lake"), str(tmp_path / "restricted" / "raw")
    assert (config.lake_url, config.raw_lake, config.raw_lake_url) == (lake, raw, raw)
    assert (
        slice_url(config.lake_url, "raw_line_items", DAY, "a")
        == f"{raw}/raw_line_items/date=2026-10-02/source=a/part-0.parquet"
    )
    assert slice_url(config.lake_url, "normalized_line_items", DAY, "a").startswith(f"{lake}/normalized_line_items/")
    assert quarantine_url(config.lake_url, "rows", DAY, "a").startswith(f"{raw}/quarantine/rows/")
    assert (
        quarantined_file_url(config.lake_url, "a", "v1", "s3://b/x/f.csv")
        == f"{raw}/quarantine/files/source=a/version=v1/f.csv"
    )
    views = view_globs(config.lake_url)
    assert views["quarantine_rows"][0] == f"{raw}/quarantine/rows"
    assert views["normalized_line_items"][0] == f"{lake}/normalized_line_items"
    assert views["audit_log"][0] == f"{lake}/audit_log"
    assert pickle.loads(pickle.dumps(config)).raw_lake == raw  # Dagster may send the config to another process


def test_an_encryption_key_must_suit_the_raw_lake_too(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        SOURCES,
        lake_url="s3://lake/curated",
        raw_lake_url=str(tmp_path / "raw"),
        lake_encryption={"kms_key_id": "alias/billing"},
    )
    with pytest.raises(ConfigError, match="applies to s3:// and gs:// lakes only"):
        load_config(path)
