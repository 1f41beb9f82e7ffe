"""The operations part of `billing.yaml`: automation, SLO targets, anomaly rules and alert routes.

Kept apart from `config.py` so that the pipeline's data contract and its operations contract can
change independently; `config.py` only adds the optional keys (`automation`, `slo`, `anomalies`,
`alerts`, and per source `lookback_months` / `expected_latency_hours`). Every key has a default, so
an existing `billing.yaml` keeps loading unchanged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

Severity = Literal["WARN", "ERROR"]
Route = Literal["page", "ticket", "none"]

# How long after a usage day ends each provider's export is documented to hold that day (hours).
# AWS CUR / CUR 2.0 / FOCUS (Data Exports): refreshed "at least once a day", up to 3 times -> 24 h.
# GCP billing export: no latency guarantee, rows keep landing for a day or more; a 3-day lookback
# is common practice -> 72 h. Azure Cost Management: data typically within 8-24 h -> 24 h.
DEFAULT_LATENCY_HOURS: dict[str, float] = {"aws_cur2": 24.0, "aws_cur": 24.0, "focus": 24.0, "gcp": 72.0, "azure": 24.0}
FALLBACK_LATENCY_HOURS = 24.0

# M2: providers whose delivery timestamp marks the start of a daily export run rather than the moment its
# files landed (Azure Cost Management exports: the run's `submittedTime`; the run then writes its files over
# minutes to hours). Every other provider's timestamp is when the files landed (manifest `exportTime` or
# file modification time), which a sensor polling every few minutes sees in near real time.
DAILY_WINDOW_PROVIDERS: frozenset[str] = frozenset({"azure"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutomationConfig(_Strict):
    """Sensors and the daily schedule."""

    sensor_interval_seconds: int = Field(default=300, ge=1)
    schedule_cron: str = "0 6 * * *"
    freshness_window_days: int = Field(default=7, ge=1)


class SloTarget(_Strict):
    """A resolved SLO: the threshold, the check severity on breach, and where the alert goes."""

    target: float
    severity: Severity
    route: Route
    blocking: bool = False


class SloOverride(_Strict):
    """What a user may change for one SLI in `billing.yaml` (anything left out keeps its default)."""

    target: float | None = None
    severity: Severity | None = None
    route: Route | None = None


# name -> (default target, severity, route, blocking). Defaults follow DESIGN.md's SLI table. The SLIs in
# BUDGETED_SLIS route nowhere themselves: their error budgets page on a fast burn and ticket on a slow one
# (`error_budget:`); each anomaly itself is still ticketed (`anomalies.route`). The direction
# of each comparison is fixed in `slis.py`: M1 has a floor (>=), M8 is strict (< 3 per week), everything
# else a ceiling (<=).
SLO_DEFAULTS: dict[str, SloTarget] = {
    "publish_guard": SloTarget(target=0.0, severity="ERROR", route="page"),
    "source_failures": SloTarget(target=0.0, severity="ERROR", route="page"),
    # M1: complete deliveries / deliveries due, per source and day (DESIGN: >= 99.9 % daily).
    "export_success_rate": SloTarget(target=0.999, severity="WARN", route="none"),
    # M2: provider's delivery timestamp -> first seen by the pipeline, hours (DESIGN: < 1 h where the provider
    # delivers near real time). Providers in DAILY_WINDOW_PROVIDERS stamp the start of a daily export run,
    # not the moment its files landed, so they are judged against `export_latency_hours_daily_window`.
    "export_latency_hours": SloTarget(target=1.0, severity="WARN", route="none"),
    "export_latency_hours_daily_window": SloTarget(target=6.0, severity="WARN", route="none"),
    "freshness": SloTarget(target=0.0, severity="ERROR", route="page"),
    "unallocated_percent": SloTarget(target=5.0, severity="WARN", route="none"),  # M3, month to date, per source
    "unallocated_jump_points": SloTarget(target=10.0, severity="ERROR", route="page"),
    "duplicate_rate": SloTarget(target=0.001, severity="WARN", route="none"),  # M4: 0.1 % per source
    "duplicate_rate_blocking": SloTarget(target=0.45, severity="ERROR", route="page"),
    "ingestion_compute_seconds": SloTarget(target=900.0, severity="WARN", route="ticket"),
    # M5 in money: the target is a monthly budget in `cost_model.currency`; none by default (reported only).
    "ingestion_cost": SloTarget(target=float("inf"), severity="WARN", route="none"),
    "backfill_backlog": SloTarget(target=4.0, severity="WARN", route="none"),  # M6: hours behind, 0-4 h
    "reconciliation_delta": SloTarget(target=0.005, severity="WARN", route="none"),  # M7: closed period, 0.5 %
    "cost_anomalies": SloTarget(target=3.0, severity="WARN", route="none"),  # M8: fewer than 3 per rolling week
    # Quarantined share of a (day, source)'s rows and billed cost: a ticket above 1 %, a page when most of
    # a delivery's rows (> 50 %) went to quarantine.
    "quarantine_rate": SloTarget(target=0.01, severity="WARN", route="none"),
    "quarantine_rate_majority": SloTarget(target=0.5, severity="ERROR", route="page"),
    "schema_failures": SloTarget(target=0.0, severity="ERROR", route="none"),
    "access_violations": SloTarget(target=0.0, severity="ERROR", route="none"),
}


class SloConfig(RootModel[dict[str, SloOverride]]):
    """`slo:` maps an SLI name to overrides of its default target / severity / route."""

    root: dict[str, SloOverride] = Field(default_factory=dict)

    @field_validator("root")
    @classmethod
    def _known(cls, targets: dict[str, SloOverride]) -> dict[str, SloOverride]:
        unknown = sorted(set(targets) - set(SLO_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown SLI names {unknown}; known: {sorted(SLO_DEFAULTS)}")
        return targets

    def resolve(self, name: str) -> SloTarget:
        default = SLO_DEFAULTS[name]
        override = self.root.get(name)
        if override is None:
            return default
        return default.model_copy(update={k: v for k, v in override.model_dump().items() if v is not None})


# M1-M10 (and the quarantine rate) as SLOs with error budgets (`error_budgets.py`): each day's verdict per
# source is one event; the budget checks page or ticket on their burn rates, so the SLI checks themselves
# route nowhere by default (their red stays in the UI). Freshness and the contract guards are not budgeted.
BUDGETED_SLIS: tuple[str, ...] = (
    "export_success_rate",
    "export_latency_hours",
    "unallocated_percent",
    "duplicate_rate",
    "ingestion_cost",
    "backfill_backlog",
    "reconciliation_delta",
    "cost_anomalies",
    "schema_failures",
    "access_violations",
    "quarantine_rate",
)


class BurnRateAlert(_Strict):
    """Alert when the burn rate over both windows (ending at the evaluated day) is above `burn_rate`."""

    long_window_days: int = Field(ge=1)
    short_window_days: int = Field(ge=1)
    burn_rate: float = Field(gt=0)
    # Evaluations the long window must hold before this alert fires (a zero-budget SLO needs one): with a
    # single day of history one bad day is a 100 % failure rate, which is a ticket, not yet a page.
    min_long_window_events: int = Field(default=1, ge=1)


class ErrorBudgetConfig(_Strict):
    """`error_budget:` SLOs over each SLI's per-day verdicts (the Google SRE workbook's multiwindow,
    multi-burn-rate alerts, at the daily resolution the SLIs are measured at).

    The objective is the share of (day, source) evaluations in `window_days` that must meet the SLI's target;
    the error budget is the rest. Burn rate = share of failed evaluations in a window / (1 - objective): 1
    spends the budget exactly over the window. A page needs the fast burn over its long and its short window
    (sustained and still happening); a ticket the slow burn over both of its windows.
    """

    window_days: int = Field(default=28, ge=1)
    objective: float = Field(default=0.95, gt=0, le=1)
    # No budget at all where one failure is already an incident: a drifted schema, a denied read.
    objectives: dict[str, float] = Field(default_factory=lambda: {"schema_failures": 1.0, "access_violations": 1.0})
    fast_burn: BurnRateAlert = BurnRateAlert(
        long_window_days=3, short_window_days=1, burn_rate=10.0, min_long_window_events=2
    )
    slow_burn: BurnRateAlert = BurnRateAlert(long_window_days=7, short_window_days=3, burn_rate=2.0)

    @field_validator("objectives")
    @classmethod
    def _known_slis(cls, objectives: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(objectives) - set(BUDGETED_SLIS))
        if unknown:
            raise ValueError(f"unknown SLI names {unknown}; budgeted: {list(BUDGETED_SLIS)}")
        bad = {name: value for name, value in objectives.items() if not 0 < value <= 1}
        if bad:
            raise ValueError(f"objectives must be in (0, 1]: {bad}")
        return objectives

    @field_validator("fast_burn", "slow_burn")
    @classmethod
    def _short_within_long(cls, alert: BurnRateAlert) -> BurnRateAlert:
        if alert.short_window_days > alert.long_window_days:
            raise ValueError("short_window_days must not exceed long_window_days")
        return alert

    def objective_of(self, sli: str) -> float:
        return self.objectives.get(sli, self.objective)


class AnomalyConfig(_Strict):
    """Weekday-seasonal baseline (same weekday over the previous weeks, median + MAD) and burn rate."""

    weeks: int = Field(default=4, ge=1)
    min_history_weeks: int = Field(default=2, ge=1)
    mad_threshold: float = Field(default=3.5, gt=0)
    min_abs_change: float = Field(default=10.0, ge=0)
    min_relative_change: float = Field(default=0.2, ge=0)
    dimensions: list[Literal["service", "account", "team"]] = Field(
        default_factory=lambda: ["service", "account", "team"]
    )
    burn_rate_factor: float = Field(default=3.0, gt=0)
    burn_rate_history_days: int = Field(default=28, ge=1)
    burn_rate_min_history_days: int = Field(default=7, ge=1)
    max_rows_listed: int = Field(default=5, ge=0)
    route: Route = "ticket"  # each anomaly found, one by one (M8's weekly count has an error budget)


class WebhookRoute(_Strict):
    """One alert destination. The URL may itself be a secret (Slack's is): then name an env variable."""

    kind: Literal["slack", "pagerduty"]
    url: str | None = None
    url_env: str | None = None
    routing_key_env: str | None = None  # PagerDuty Events API v2: the name of the variable, never the key


class AlertsConfig(_Strict):
    """Where alerts go: `ticket` (Slack-compatible webhook) and `page` (PagerDuty Events API v2)."""

    ticket: WebhookRoute | None = None
    page: WebhookRoute | None = None
    cooldown_minutes: float = Field(default=60.0, ge=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    dagster_url: str = "http://localhost:3000"  # the webserver's base URL: alerts link runs and checks under it
    # Base of the runbook links (`<runbook_url>#runbook-<sli>`): the README as published for your team, e.g.
    # https://github.com/<org>/billing-pipeline/blob/main/README.md. A relative default is shown as text.
    runbook_url: str = "README.md"
    # Outbox: a delivery that failed is retried after retry_initial_seconds, doubling up to retry_max_seconds.
    retry_initial_seconds: float = Field(default=30.0, ge=0)
    retry_max_seconds: float = Field(default=3600.0, ge=0)
    retention_days: int = Field(default=35, ge=1)  # how long one-off alerts (anomalies) and routed runs are remembered


# ---- M5 ingestion cost and M10 access violations ---------------------------------------------------------


class CostModelConfig(_Strict):
    """`cost_model:` unit prices that turn what the pipeline records into money (M5).

    Defaults: AWS list prices in us-east-1 as of 2026, in USD: S3 Standard storage (first 50 TB)
    0.023 per GB-month, PUT/COPY/POST/LIST 0.005 and GET 0.0004 per 1,000 requests, and a Fargate
    Linux/x86 vCPU (0.04048 per vCPU-hour = 0.0000112444 per vCPU-second). Same-region transfer
    from S3 to compute is free, hence `transfer_per_gb` 0. A GB is 2**30 bytes, as AWS bills storage.
    """

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    storage_per_gb_month: Decimal = Field(default=Decimal("0.023"), ge=0)
    put_per_1000_requests: Decimal = Field(default=Decimal("0.005"), ge=0)
    list_per_1000_requests: Decimal = Field(default=Decimal("0.005"), ge=0)
    get_per_1000_requests: Decimal = Field(default=Decimal("0.0004"), ge=0)
    compute_per_vcpu_second: Decimal = Field(default=Decimal("0.0000112444"), ge=0)
    vcpus: Decimal = Field(default=Decimal("1"), gt=0)  # vCPUs a build holds while it runs
    transfer_per_gb: Decimal = Field(default=Decimal("0"), ge=0)


class AuditLogsConfig(_Strict):
    """`audit_logs:` where the object store's audit trail is delivered (M10); both optional.

    Each is a folder (local path, relative to billing.yaml, or `s3://`), or a list of them; files may be
    gzipped. `{yyyy}`, `{mm}` and `{dd}` in a URL are replaced by the dates to read, so only those folders
    are listed (CloudTrail's `.../CloudTrail/<region>/{yyyy}/{mm}/{dd}/`). Records of a day may arrive in
    files named up to `delivery_lag_days` later (S3 delivers server access logs best effort, within hours).
    """

    s3_access_logs_url: str | list[str] | None = None
    cloudtrail_url: str | list[str] | None = None
    delivery_lag_days: int = Field(default=1, ge=0)

    @staticmethod
    def _urls(value: str | list[str] | None) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    @property
    def s3_access_logs_urls(self) -> list[str]:
        return self._urls(self.s3_access_logs_url)

    @property
    def cloudtrail_urls(self) -> list[str]:
        return self._urls(self.cloudtrail_url)

    @property
    def configured(self) -> bool:
        return bool(self.s3_access_logs_urls or self.cloudtrail_urls)


__all__ = [
    "DAILY_WINDOW_PROVIDERS",
    "DEFAULT_LATENCY_HOURS",
    "SLO_DEFAULTS",
    "AlertsConfig",
    "BUDGETED_SLIS",
    "AnomalyConfig",
    "BurnRateAlert",
    "ErrorBudgetConfig",
    "AuditLogsConfig",
    "AutomationConfig",
    "CostModelConfig",
    "SloConfig",
    "SloTarget",
    "WebhookRoute",
]
