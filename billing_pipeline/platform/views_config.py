"""The views part of `billing.yaml`: reporting currency, chargeback split rules, unit-cost metrics and budgets.

Kept apart from `config.py` (like `ops_config.py`) so that what finance reads can change without
touching the pipeline's data contract. Every section is optional: an existing `billing.yaml` keeps
loading unchanged, and without `reporting` the statements carry billing-currency amounts only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SplitMethod = Literal["even", "proportional", "weights"]
SHARED_KINDS = ("unallocated", "support", "tax", "unused_commitment")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportingConfig(_Strict):
    """One currency every cross-source total is shown in, converted with the ECB's daily reference rates.

    `fx_rates_url`: a CSV in the European Central Bank's layout (`Date,USD,JPY,...`, EUR as the base,
    `N/A` where a rate is missing), or the ECB's `eurofxref-hist.zip` holding one. A day converts at the
    last rate published on or before it, and no older than `max_rate_age_days` (weekends, holidays).
    """

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    fx_rates_url: str
    max_rate_age_days: int = Field(default=7, ge=0)


class SplitRule(_Strict):
    """How one kind of shared cost is shared among owners.

    even: equally among the owners with direct spend in the cost's billing currency that month;
    proportional: by each such owner's direct effective cost (negative spend counts as 0; all 0 -> even);
    weights: by the fixed `weights` (owner -> weight), whether or not the owner spent that month.
    """

    method: SplitMethod = "proportional"
    weights: dict[str, Decimal] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_match_method(self) -> SplitRule:
        if self.method == "weights":
            if not self.weights:
                raise ValueError("method 'weights' needs a non-empty `weights` mapping (owner -> weight)")
            if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
                raise ValueError("weights must be >= 0 and add up to more than 0")
        elif self.weights:
            raise ValueError(f"`weights` is only read by method 'weights', not {self.method!r}")
        return self


class ChargebackConfig(_Strict):
    """`monthly_chargeback`: which rows are shared, and the rule that splits each kind among owners."""

    # when the daily refresh of the current and previous month runs (UTC): after the daily spine's schedule
    refresh_cron: str = "0 8 * * *"
    # ServiceName pattern (regex, case-insensitive) of support plans, besides ServiceSubcategory `Support`
    support_services: str = r"\bsupport\b"
    unallocated: SplitRule = SplitRule()
    support: SplitRule = SplitRule()
    tax: SplitRule = SplitRule()
    unused_commitment: SplitRule = SplitRule()

    def rule(self, kind: str) -> SplitRule:
        if kind not in SHARED_KINDS:
            raise KeyError(f"no split rule for cost kind {kind!r} (have {list(SHARED_KINDS)})")
        return getattr(self, kind)


class UnitCostConfig(_Strict):
    """The optional daily business-metrics CSV: `date,<dimension>,metric,value`, `<dimension>` being one
    of the tag policy's dimensions (`team`, `product`, ...). `per` scales a metric (requests: 1000 gives
    the cost per thousand requests)."""

    metrics_url: str
    per: dict[str, Decimal] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive_scales(self) -> UnitCostConfig:
        bad = sorted(metric for metric, scale in self.per.items() if scale <= 0)
        if bad:
            raise ValueError(f"per: scales must be > 0, not for {bad}")
        return self


AlertRoute = Literal["ticket", "page", "none"]


class TeamBudget(_Strict):
    """One team's monthly budget, and the alert route its warnings take (`alerts.ticket` by default).
    A plain number is read as the amount."""

    amount: Decimal = Field(gt=0)
    route: AlertRoute = "ticket"

    @model_validator(mode="before")
    @classmethod
    def _amount_alone(cls, value: object) -> object:
        return {"amount": value} if isinstance(value, (int, float, str, Decimal)) else value


class BudgetConfig(_Strict):
    """`budget_forecast`: monthly budgets per team (the tag policy's owner dimension) and in total.

    `currency`: what the amounts are in. With `reporting` it is the reporting currency (leave it out, or
    repeat it); without, one billing currency (default: the month's only one), and a budget then covers
    spend in that currency only. `cost`: which amount is forecast (amortized `effective_cost` by default).
    A forecast at `warn_percent` of its budget or more is `warn`, at `over_percent` or more `over`.
    """

    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    cost: Literal["effective_cost", "billed_cost"] = "effective_cost"
    total: Decimal | None = Field(default=None, gt=0)
    total_route: AlertRoute = "ticket"
    teams: dict[str, TeamBudget] = Field(default_factory=dict)
    warn_percent: Decimal = Field(default=Decimal(80), gt=0)
    over_percent: Decimal = Field(default=Decimal(100), gt=0)

    @model_validator(mode="after")
    def _warn_before_over(self) -> BudgetConfig:
        if self.warn_percent > self.over_percent:
            raise ValueError(f"warn_percent {self.warn_percent} is above over_percent {self.over_percent}")
        return self

    @property
    def configured(self) -> bool:
        return self.total is not None or bool(self.teams)
