"""Month-end spend forecast against budgets: will each team, and the month in total, land on budget?

Spend: a team's is its direct spend (the tag policy's owner dimension, cost kind `direct`: shared costs
are split only once the month is known, in `monthly_chargeback`); the total is every row of the month.
The amount is `budgets.cost` (default `effective_cost`, amortized), in the reporting currency when
`reporting` is set, else per billing currency (a budget then covers spend in its own currency only).

Method, per (scope, team, currency), over the month's observed days (the first day of the month, or
`start_date`, to `as_of`, the last usage day with any cost; a day a team did not spend on counts as 0):
- forecast = month to date + for each remaining day up to the month's end, the mean observed spend of
  its weekday (weekday seasonality), or the overall daily mean for a weekday not seen yet;
- interval = forecast + remaining days x the 10th (low) and 90th (high) percentile, linearly
  interpolated, of the day-level residuals: each observed day minus its weekday's mean where that
  weekday was seen at least twice, else minus the overall daily mean (a weekday seen once would fit
  itself exactly and claim no uncertainty). A closed month has no remaining days: forecast = actual.
- status against the budget: `over` when forecast >= `over_percent` % of it (default 100), `warn` when
  >= `warn_percent` % (default 80), else `ok`; `no_budget` without one. Compared in exact decimals.

Each team (and the total) that reaches `warn` or `over` is alerted once through the alert path, keyed
by (scope, team, month, status), and only when its status got worse than in the table written before.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from billing_pipeline.observability.alerts import Alert, Poster, SendReport, alert_key, send_alerts
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.storage import Store, join, scratch_dir
from billing_pipeline.views.month import (
    DIRECT,
    REPORTING_AMOUNTS,
    daily_totals,
    enriched_files,
    month_bounds,
    month_label,
)

BUDGET_FORECAST = "budget_forecast"
TEAM, TOTAL = "team", "total"  # the `scope` of a row
NO_BUDGET, OK, WARN, OVER = "no_budget", "ok", "warn", "over"
STATUS_RANK = {NO_BUDGET: 0, OK: 0, WARN: 1, OVER: 2}
LOW_QUANTILE, HIGH_QUANTILE = 0.1, 0.9
KEYS = ["scope", "team", "currency"]
STATS = ["month_to_date", "forecast", "forecast_low", "forecast_high"]


class BudgetCurrencyError(ValueError):
    """The budgets' currency cannot be told, or differs from the reporting currency."""


def forecast_url(lake_url: str, month: dt.date) -> str:
    return join(lake_url, BUDGET_FORECAST, f"month={month_label(month)}", "part-0.parquet")


@dataclass(frozen=True)
class Window:
    """The month's observed days (`first` to `as_of`, none when `as_of` is None) and the days left after them."""

    first: dt.date
    as_of: dt.date | None
    last: dt.date

    @property
    def observed(self) -> list[dt.date]:
        return _days(self.first, self.as_of) if self.as_of else []

    @property
    def remaining(self) -> list[dt.date]:
        start = max(self.first, self.as_of + dt.timedelta(days=1)) if self.as_of else self.first
        return _days(start, self.last)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def month_window(config: BillingConfig, totals: pl.DataFrame, month: dt.date) -> Window:
    """From the month's first day (or `start_date`) to its last, observed up to the last day with costs."""
    first, last = month_bounds(month)
    seen = totals.filter(pl.col("date").is_between(first, last))["date"].max()
    return Window(max(first, config.start_date), seen if isinstance(seen, dt.date) else None, last)


def daily_spend(config: BillingConfig, totals: pl.DataFrame) -> pl.DataFrame:
    """`(date, scope, team, currency, spend)` from `daily_totals`: each team's direct spend and the total."""
    cost = config.budgets.cost
    if config.reporting:
        amount, currency = pl.col(REPORTING_AMOUNTS[cost]), pl.lit(config.reporting.currency)
    else:
        amount, currency = pl.col(cost), pl.col("BillingCurrency")
    owner = pl.col(config.tag_policy.owner_dimension)
    rows = totals.lazy().select(
        "date", "cost_kind", owner.alias(TEAM), currency.alias("currency"), amount.alias("spend")
    )
    teams = rows.filter((pl.col("cost_kind") == DIRECT) & pl.col(TEAM).is_not_null()).select(
        "date", pl.lit(TEAM).alias("scope"), TEAM, "currency", "spend"
    )
    total = rows.select(
        "date", pl.lit(TOTAL).alias("scope"), pl.lit(None, dtype=pl.String).alias(TEAM), "currency", "spend"
    )
    return pl.concat([teams, total]).group_by("date", *KEYS).agg(pl.col("spend").sum().cast(MONEY)).collect()


def _zero_filled(daily: pl.DataFrame, window: Window) -> pl.DataFrame:
    """One row per key and observed day (0 where the key spent nothing that day), with its weekday."""
    days = pl.DataFrame({"date": window.observed}, schema={"date": pl.Date})
    grid = daily.select(KEYS).unique().join(days, how="cross")
    return grid.join(daily, on=["date", *KEYS], how="left", nulls_equal=True).with_columns(
        pl.col("spend").fill_null(pl.lit(0, dtype=MONEY)), pl.col("date").dt.weekday().alias("weekday")
    )


def _remaining_weekdays(window: Window) -> pl.DataFrame:
    """`(weekday, days)`: how many of each weekday are left in the month."""
    days = pl.DataFrame({"date": window.remaining}, schema={"date": pl.Date})
    return days.group_by(pl.col("date").dt.weekday().alias("weekday")).agg(pl.len().alias("days"))


def forecast_spend(daily: pl.DataFrame, window: Window) -> pl.DataFrame:
    """Per key: month to date, forecast and its interval (module docstring), as MONEY."""
    series = _zero_filled(daily, window)
    spend = pl.col("spend").cast(pl.Float64)
    overall = series.group_by(KEYS).agg(pl.col("spend").sum().alias("month_to_date"), spend.mean().alias("daily"))
    weekday = series.group_by(*KEYS, "weekday").agg(spend.mean().alias("weekday_mean"), pl.len().alias("seen"))
    fitted = pl.when(pl.col("seen") >= 2).then(pl.col("weekday_mean")).otherwise(pl.col("daily"))
    residual = (spend - fitted).alias("residual")
    spread = (
        series.join(weekday, on=[*KEYS, "weekday"], nulls_equal=True)
        .join(overall, on=KEYS, nulls_equal=True)
        .group_by(KEYS)
        .agg(
            residual.quantile(LOW_QUANTILE, "linear").alias("low"),
            residual.quantile(HIGH_QUANTILE, "linear").alias("high"),
        )
    )
    estimate = (
        overall.join(_remaining_weekdays(window), how="cross")
        .join(weekday, on=[*KEYS, "weekday"], how="left", nulls_equal=True)
        .group_by(KEYS)
        .agg((pl.col("days") * pl.coalesce("weekday_mean", "daily")).sum().alias("rest"))
    )
    left = len(window.remaining)
    forecast = pl.col("month_to_date") + pl.col("rest").fill_null(0.0).cast(MONEY)
    return (
        overall.join(spread, on=KEYS, how="left", nulls_equal=True)
        .join(estimate, on=KEYS, how="left", nulls_equal=True)
        .select(
            *KEYS,
            pl.col("month_to_date").cast(MONEY),
            forecast.cast(MONEY).alias("forecast"),
            (forecast + (pl.col("low") * left).cast(MONEY)).cast(MONEY).alias("forecast_low"),
            (forecast + (pl.col("high") * left).cast(MONEY)).cast(MONEY).alias("forecast_high"),
        )
    )


def budget_currency(config: BillingConfig, totals: pl.DataFrame) -> str | None:
    """The reporting currency when set; else `budgets.currency`, else the month's only billing currency."""
    stated = config.budgets.currency
    if config.reporting:
        if stated and stated != config.reporting.currency:
            raise BudgetCurrencyError(
                f"budgets.currency {stated} differs from reporting.currency {config.reporting.currency}: "
                "with a reporting currency, budgets are in it"
            )
        return config.reporting.currency
    if stated or not config.budgets.configured:
        return stated
    billed = sorted(totals["BillingCurrency"].drop_nulls().unique().to_list())
    if len(billed) != 1:
        raise BudgetCurrencyError(
            f"budgets: the month is billed in {billed or 'no currency'}; set budgets.currency (or reporting)"
        )
    return billed[0]


def _budgets(config: BillingConfig, currency: str | None) -> pl.DataFrame:
    """`(scope, team, currency, budget)` of every configured budget."""
    budgets = config.budgets
    teams = list(budgets.teams)
    scopes = [TEAM] * len(teams) + ([TOTAL] if budgets.total is not None else [])
    amounts = [b.amount for b in budgets.teams.values()] + ([budgets.total] if budgets.total is not None else [])
    return pl.DataFrame(
        {"scope": scopes, TEAM: teams + [None] * (len(scopes) - len(teams)), "budget": amounts},
        schema={"scope": pl.String, TEAM: pl.String, "budget": MONEY},
    ).with_columns(pl.lit(currency, dtype=pl.String).alias("currency"))


def _status(config: BillingConfig) -> pl.Expr:
    """`over` / `warn` / `ok` / `no_budget`, comparing forecast x 100 with budget x percent exactly."""
    forecast, budget = pl.col("forecast") * 100, pl.col("budget")
    over = pl.lit(config.budgets.over_percent, dtype=MONEY)
    warn = pl.lit(config.budgets.warn_percent, dtype=MONEY)
    return (
        pl.when(budget.is_null())
        .then(pl.lit(NO_BUDGET))
        .when(forecast >= budget * over)
        .then(pl.lit(OVER))
        .when(forecast >= budget * warn)
        .then(pl.lit(WARN))
        .otherwise(pl.lit(OK))
        .alias("status")
    )


def forecast_table(config: BillingConfig, totals: pl.DataFrame, month: dt.date) -> pl.DataFrame:
    """The month's forecast per team and in total, against the budgets (a budgeted team with no spend yet
    has a row of zeros)."""
    window = month_window(config, totals, month)
    spend = forecast_spend(daily_spend(config, totals), window)
    joined = spend.join(
        _budgets(config, budget_currency(config, totals)), on=KEYS, how="full", coalesce=True, nulls_equal=True
    )
    zero = pl.lit(0, dtype=MONEY)
    return (
        joined.with_columns(pl.col(c).fill_null(zero) for c in STATS)
        .select(
            pl.lit(month_label(month)).alias("month"),
            pl.lit(window.as_of, dtype=pl.Date).alias("as_of"),
            *KEYS,
            pl.lit(len(window.observed), dtype=pl.Int32).alias("days_observed"),
            pl.lit(len(window.remaining), dtype=pl.Int32).alias("days_remaining"),
            *STATS,
            "budget",
            (pl.col("forecast").cast(pl.Float64) / pl.col("budget").cast(pl.Float64) * 100).alias("budget_percent"),
            _status(config),
        )
        .sort("scope", TEAM, "currency", nulls_last=True)
    )


def previous_statuses(store: Store, url: str) -> pl.DataFrame:
    """`(scope, team, currency, status)` of the table written before (empty when there is none)."""
    if not store.exists(url):
        return pl.DataFrame(schema={**dict.fromkeys(KEYS, pl.String), "status": pl.String})
    return pl.read_parquet(io.BytesIO(store.read_bytes(url))).select(*KEYS, "status")


def _money(value: object) -> str:
    return f"{float(str(value)):,.2f}"


def budget_alerts(config: BillingConfig, table: pl.DataFrame, previous: pl.DataFrame) -> list[Alert]:
    """One alert per team (and the total) whose status reached `warn` or `over` since the previous table."""
    rank = {k: pl.col(k).replace_strict(STATUS_RANK, default=0, return_dtype=pl.Int8) for k in ("status", "was")}
    worse = (
        table.filter(pl.col("status").is_in([WARN, OVER]))
        .join(previous.rename({"status": "was"}), on=KEYS, how="left", nulls_equal=True)
        .filter(rank["status"] > rank["was"].fill_null(0))
    )
    budgets = config.budgets
    out = []
    for row in worse.iter_rows(named=True):  # a handful of teams, at most one row each
        team, status, month, currency = row[TEAM], row["status"], row["month"], row["currency"]
        who = f"team {team}" if row["scope"] == TEAM else "total spend"
        route = budgets.teams[team].route if row["scope"] == TEAM else budgets.total_route
        headline = f"budget {status}: {who} forecast at {row['budget_percent']:.0f}% of its budget"
        out.append(
            Alert(
                key=alert_key("budget", row["scope"], team, month, status),
                route=route,
                severity="ERROR" if status == OVER else "WARN",
                title=f"{headline} for {month}",
                summary=(
                    f"{who}: forecast {_money(row['forecast'])} {currency} (interval {_money(row['forecast_low'])} "
                    f"to {_money(row['forecast_high'])}) against a budget of {_money(row['budget'])} {currency}; "
                    f"{_money(row['month_to_date'])} spent to {row['as_of']}, {row['days_remaining']} day(s) left"
                ),
                partition=month,
                origin=BUDGET_FORECAST,
                details={k: str(row[k]) for k in ("month_to_date", *STATS[1:], "budget", "as_of")},
                cause=f"budget {row['scope']} {team} {month}",
                headline=headline,
            )
        )
    return out


def _teams_spending_in(config: BillingConfig, store: Store, month: dt.date, sources: set[str]) -> set[str]:
    """Owners (the tag policy's owner dimension) with allocated rows from `sources` in the month; only the
    owner column of each slice is read (range reads in an object store)."""
    import pyarrow.parquet as pq  # noqa: PLC0415 - column-only reads through the store's file handle

    owner = config.tag_policy.owner_dimension
    teams: set[str] = set()
    for _, url in enriched_files(store, config.lake_url, month):
        if any(f"/source={source}/" in url for source in sources):
            fs, path = store.fs(url)
            with fs.open(path, "rb") as handle:
                column = pq.ParquetFile(handle).read(columns=[owner]).column(owner)
            teams |= {team for team in column.to_pylist() if team is not None}
    return teams


def threatened_budgets(config: BillingConfig, store: Store, day: dt.date, sources: list[str]) -> list[dict[str, str]]:
    """The budgets at `warn` / `over` in the month of `day` that the spend of `sources` feeds (`*`: every
    source): the total always, a team when it has allocated rows from one of them this month. Read from the
    month's `budget_forecast` table; none before it is written. Each as text: scope, team, month, currency,
    forecast, budget, budget_percent, status."""
    url = forecast_url(config.lake_url, day.replace(day=1))
    if not sources or not store.exists(url):
        return []
    table = pl.read_parquet(io.BytesIO(store.read_bytes(url))).filter(pl.col("status").is_in([WARN, OVER]))
    if "*" not in sources and table.filter(pl.col("scope") == TEAM).height:
        teams = _teams_spending_in(config, store, day.replace(day=1), set(sources))
        table = table.filter((pl.col("scope") == TOTAL) | pl.col(TEAM).is_in(sorted(teams)))
    fields = ("scope", TEAM, "month", "currency", "forecast", "budget", "status")
    return [
        {**{k: "" if row[k] is None else str(row[k]) for k in fields}, "budget_percent": f"{row['budget_percent']:.0f}"}
        for row in table.iter_rows(named=True)
    ]


def threat_text(budget: Mapping[str, str]) -> str:
    """One threatened budget for people: whose, forecast against budget, status."""
    who = f"team {budget[TEAM]}" if budget["scope"] == TEAM else "total spend"
    return (
        f"{who} {budget['month']}: forecast {_money(budget['forecast'])} {budget['currency']} against a budget of "
        f"{_money(budget['budget'])} ({budget['budget_percent']}%, {budget['status']})"
    )


@dataclass(frozen=True)
class PublishedForecast:
    """What `publish_forecast` wrote and alerted."""

    table: pl.DataFrame
    url: str
    alerts: list[Alert]
    report: SendReport | None  # None when nothing needed alerting


def publish_forecast(
    config: BillingConfig,
    store: Store,
    month: dt.date,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
) -> PublishedForecast:
    """Forecast the month, alert what got worse (before writing, so a failed write alerts again rather than
    never), and write `<lake>/budget_forecast/month=YYYY-MM/part-0.parquet`."""
    url = forecast_url(config.lake_url, month)
    with scratch_dir("billing-forecast-") as workdir:
        table = forecast_table(config, daily_totals(config, store, month, workdir), month)
        alerts = budget_alerts(config, table, previous_statuses(store, url))
        report = (
            send_alerts(config, store, alerts, f"{BUDGET_FORECAST} {month_label(month)}", now, env, poster)
            if alerts
            else None
        )
        store.write_parquet(table, url, workdir)
    return PublishedForecast(table, url, alerts, report)
