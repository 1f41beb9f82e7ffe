"""`billing.yaml`: the user-facing configuration contract, validated at load time.

A missing or wrong key must fail when the code location loads, naming the key, rather than in the
middle of a backfill. Pydantic models with `extra="forbid"` give exactly that.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from billing_pipeline.platform.encryption import lake_storage_options
from billing_pipeline.platform.lake import LakeUrl, raw_lake
from billing_pipeline.platform.lifecycle_config import LakeEncryptionConfig, RetentionConfig, check_lake_encryption
from billing_pipeline.platform.ops_config import (
    AlertsConfig,
    AnomalyConfig,
    AuditLogsConfig,
    AutomationConfig,
    CostModelConfig,
    ErrorBudgetConfig,
    SloConfig,
)
from billing_pipeline.platform.privacy_config import PrivacyConfig
from billing_pipeline.platform.storage import Store, options_for_url, under_prefix
from billing_pipeline.platform.views_config import BudgetConfig, ChargebackConfig, ReportingConfig, UnitCostConfig

CONFIG_ENV_VAR = "BILLING_CONFIG"
DEFAULT_CONFIG_FILE = "billing.yaml"

Provider = Literal["aws_cur2", "aws_cur", "focus", "gcp", "azure"]
SUPPORTED_PROVIDERS: tuple[str, ...] = ("aws_cur2", "aws_cur", "focus", "gcp", "azure")


class ConfigError(ValueError):
    """`billing.yaml` is missing, unreadable or has a missing / wrong key (named in the message)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One export source: where a provider delivers one export."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    provider: Provider
    url: str
    format: Literal["auto", "parquet", "csv"] = "auto"
    description: str = ""
    lookback_months: int = Field(default=2, ge=1)  # billing periods still open for restatement, incl. the current
    expected_latency_hours: float | None = Field(default=None, gt=0)  # None: the provider's documented delay


class DimensionRule(_Strict):
    """How one allocation dimension is read from tags: tag keys in precedence order, value aliases."""

    keys: list[str] = Field(min_length=1)
    values: dict[str, str] = Field(default_factory=dict)


class TagPolicy(_Strict):
    """Declarative tag policy: key aliases, folding, precedence and account-to-owner fallback."""

    strip_prefixes: list[str] = Field(default_factory=lambda: ["user:", "user_", "tag:"])
    dimensions: dict[str, DimensionRule]
    owner_dimension: str = "team"
    account_owners: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _owner_dimension_exists(self) -> TagPolicy:
        if self.owner_dimension not in self.dimensions:
            raise ValueError(
                f"owner_dimension {self.owner_dimension!r} is not one of dimensions {sorted(self.dimensions)}"
            )
        for account, values in self.account_owners.items():
            unknown = set(values) - set(self.dimensions)
            if unknown:
                raise ValueError(f"account_owners[{account!r}] names unknown dimensions {sorted(unknown)}")
        return self


class ReconciliationConfig(_Strict):
    """Tolerances under which a delta still counts as matched."""

    absolute_tolerance: Decimal = Decimal("0.01")
    relative_tolerance: Decimal = Decimal("0.0001")


class ShrinkAcceptance(_Strict):
    """An operator's acceptance of a held-back (day, source) version for one billing period."""

    source: str
    period: str = Field(pattern=r"^\d{4}-\d{2}$")  # YYYY-MM
    by: str = Field(min_length=1)  # who accepted (recorded in the state with the time it took effect)
    reason: str = ""


class PublishGuardConfig(_Strict):
    """Invariant 5: when a new version of a published (day, source) slice is held back instead of published.

    A new version with zero rows, or whose row count or absolute billed cost falls by more than
    `max_shrink_fraction` from the published one, waits for an operator (`accept`, or the run tag
    `billing/accept` = `<source>:<YYYY-MM>[,...]`).
    """

    max_shrink_fraction: float = Field(default=0.5, gt=0, le=1)
    accept: list[ShrinkAcceptance] = Field(default_factory=list)

    def accepted_by(self, source: str, period: str) -> str | None:
        for item in self.accept:
            if item.source == source and item.period == period:
                return item.by
        return None


class BillingConfig(_Strict):
    """The whole of `billing.yaml`."""

    lake_url: str  # a `LakeUrl` once parsed: it also knows `raw_lake_url`
    raw_lake_url: str | None = None  # raw slices and quarantine (clear identifiers); None: under lake_url
    start_date: dt.date
    end_date: dt.date | None = None  # the last usage day that is a partition (inclusive); None: yesterday (UTC)
    sources: list[SourceConfig] = Field(min_length=1)
    invoices_url: str
    tag_policy: TagPolicy
    duckdb_path: str | None = None
    # How many sources of a day a layer builds at once (threads: polars releases the GIL while it reads and
    # writes). A day's peak memory is then up to this many sources' peaks; 1 builds them one after the other.
    sources_in_parallel: int = Field(default=2, ge=1, le=32)
    # Storage: `storage_options` feed s3fs / gcsfs for every s3:// and gs:// URL; `storage` maps URL prefixes
    # (`s3://landing-bucket`, `gs://lake-bucket/curated`, or a bare `gs://`) to options of their own, which
    # replace `storage_options` whole for the URLs under them (longest prefix wins: `platform.storage.options_for_url`).
    storage_options: dict[str, Any] = Field(default_factory=dict)
    storage: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reconciliation: ReconciliationConfig = ReconciliationConfig()
    publish_guard: PublishGuardConfig = PublishGuardConfig()
    automation: AutomationConfig = AutomationConfig()
    slo: SloConfig = SloConfig()
    error_budget: ErrorBudgetConfig = ErrorBudgetConfig()
    anomalies: AnomalyConfig = AnomalyConfig()
    alerts: AlertsConfig = AlertsConfig()
    cost_model: CostModelConfig = CostModelConfig()
    audit_logs: AuditLogsConfig = AuditLogsConfig()
    reporting: ReportingConfig | None = None  # None: statements in billing currencies only
    chargeback: ChargebackConfig = ChargebackConfig()
    unit_costs: UnitCostConfig | None = None  # None: no business metrics, no unit costs
    budgets: BudgetConfig = BudgetConfig()  # no budgets: every forecast's status is `no_budget`
    lake_encryption: LakeEncryptionConfig = LakeEncryptionConfig()
    retention: RetentionConfig = RetentionConfig()
    privacy: PrivacyConfig | None = None  # None: identifiers stay clear in the curated layers
    config_path: str | None = None

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique, repeated: {duplicated}")
        return sources

    @field_validator("storage")
    @classmethod
    def _storage_prefixes_are_urls(cls, storage: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        local = sorted(prefix for prefix in storage if "://" not in prefix)
        if local:
            raise ValueError(
                f"keys must be object-store URL prefixes such as 's3://bucket' or 'gs://' (local paths take no "
                f"storage options): {local}"
            )
        return storage

    @model_validator(mode="after")
    def _end_after_start(self) -> BillingConfig:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named {name!r} in billing.yaml (have {[s.name for s in self.sources]})")

    def store(self) -> Store:
        """The storage client of the landing zone and the lake, with each location's options."""
        return Store(self.storage_options, self.storage)

    @property
    def raw_lake(self) -> str:
        """Where raw slices and the quarantine live (`raw_lake_url`, else the lake itself)."""
        return raw_lake(self.lake_url)

    def pseudonym_key(self) -> bytes | None:
        """The HMAC key of `privacy:` from its environment variable (None: no pseudonymization)."""
        return self.privacy.key() if self.privacy is not None else None

    @property
    def duckdb_file(self) -> str | None:
        """Where the DuckDB catalogue of views lives: configured, or inside a local lake."""
        if self.duckdb_path:
            return self.duckdb_path
        if "://" in self.lake_url:
            return None
        return str(Path(self.lake_url) / "lake.duckdb")


def _resolve(url: str, base: Path) -> str:
    """Local relative paths are relative to the config file; URLs stay as they are."""
    if "://" in url:
        return url
    path = Path(os.path.expanduser(url))
    return str(path if path.is_absolute() else (base / path).resolve())


def _lake_encrypted_locations(config: BillingConfig, lake_urls: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`storage` with the lake's encryption key folded into the options of each lake (curated and raw) and of
    any prefix inside one, so every lake write is encrypted and the landing zone's clients are left as configured."""
    if config.lake_encryption.kms_key_id is None:
        return dict(config.storage)
    locations = dict(config.storage)
    for lake_url in lake_urls:
        locations.setdefault(lake_url, options_for_url(lake_url, config.storage_options, config.storage))
    out: dict[str, dict[str, Any]] = {}
    for prefix, options in locations.items():
        lake = next((url for url in lake_urls if under_prefix(prefix, url)), None)
        out[prefix] = lake_storage_options(options, config.lake_encryption, lake) if lake else options
    return out


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = [f"invalid billing configuration {origin}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        message = "missing required key" if item["type"] == "missing" else item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (not part of billing.yaml's schema)"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def parse_config(raw: Any, base_dir: Path, origin: str = "<dict>") -> BillingConfig:
    """Validate a loaded YAML document and resolve relative paths against `base_dir`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid billing configuration {origin}: the top level must be a mapping")
    try:
        config = BillingConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, origin)) from None
    sources = [s.model_copy(update={"url": _resolve(s.url, base_dir)}) for s in config.sources]
    reporting, unit_costs = config.reporting, config.unit_costs
    if reporting is not None:
        reporting = reporting.model_copy(update={"fx_rates_url": _resolve(reporting.fx_rates_url, base_dir)})
    if unit_costs is not None:
        unit_costs = unit_costs.model_copy(update={"metrics_url": _resolve(unit_costs.metrics_url, base_dir)})
    raw_lake_url = _resolve(config.raw_lake_url or config.lake_url, base_dir)
    lake_url = LakeUrl(_resolve(config.lake_url, base_dir), raw_lake_url)
    try:
        check_lake_encryption(config.lake_encryption, lake_url)
        check_lake_encryption(config.lake_encryption, raw_lake_url)
        if config.privacy is not None:
            config.privacy.key()  # a missing key fails at load time, naming its variable
    except ValueError as error:
        raise ConfigError(f"invalid billing configuration {origin}:\n  - {error}") from None
    return config.model_copy(
        update={
            "lake_url": lake_url,
            "storage": _lake_encrypted_locations(config, (str(lake_url), raw_lake_url)),
            "raw_lake_url": raw_lake_url,
            "invoices_url": _resolve(config.invoices_url, base_dir),
            "duckdb_path": _resolve(config.duckdb_path, base_dir) if config.duckdb_path else None,
            "sources": sources,
            "reporting": reporting,
            "unit_costs": unit_costs,
            "config_path": origin,
        }
    )


def load_config(path: str | os.PathLike[str] | None = None) -> BillingConfig:
    """Load `billing.yaml` from `path`, else `$BILLING_CONFIG`, else `./billing.yaml`."""
    chosen = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE).expanduser().resolve()
    if not chosen.is_file():
        raise ConfigError(
            f"billing configuration not found at {chosen} (set {CONFIG_ENV_VAR} to the path of billing.yaml)"
        )
    try:
        raw = yaml.safe_load(chosen.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"billing configuration {chosen} is not valid YAML: {error}") from None
    return parse_config(raw, chosen.parent, origin=str(chosen))
