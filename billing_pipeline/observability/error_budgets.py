"""SLOs with error budgets over the SLIs' per-day verdicts: attainment, budget left, burn rates, alert.

Plain functions, no Dagster (`defs/observability_assets.py` wraps them). An *event* is one SLI's verdict for one
(day, source): good when the source met the SLI's target that day (`SliResult.source_verdicts`; sources
not judged that day, e.g. a delivery not due yet or a billing period still open, give no event). Each day's
events are stored with the day's budgets at `<lake>/slo_error_budgets/date=D/part-0.parquet`; the budgets
of day D count the events of the `error_budget.window_days` days ending at D as recorded by each day's
last evaluation (a day never evaluated has no events; freshness pages for days that never arrive).

Per (SLI, source): attainment = good / events over the window; the error budget is (1 - objective) of the
events; budget left = 1 - failed / budget (negative: overspent; -inf: a zero-budget SLO that failed).
Burn rate over w days = failed share of the w days' events / (1 - objective) (Google SRE workbook, chapter
"Alerting on SLOs"); a page when the fast burn is above its threshold over its long and its short window,
a ticket when the slow burn is (the workbook's rules compare with `>`). The workbook's windows are hours;
the SLIs here are measured once per day, so the windows are days (defaults: page above 10x over 3 days and
the last day, ticket above 2x over 7 and 3 days), and a page needs two evaluations in its long window
unless the SLO has no budget at all (one bad first day is a 100 % failure rate: a ticket, not yet a page).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

import polars as pl

from billing_pipeline.observability import slis
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.names import SLO_BUDGETS
from billing_pipeline.platform.ops_config import BUDGETED_SLIS, BurnRateAlert
from billing_pipeline.platform.storage import Store, join, scratch_dir

TABLE = SLO_BUDGETS

# The SLI function of each budgeted SLO name (ops_config.BUDGETED_SLIS lists the same names).
SLI_FUNCTIONS: dict[str, slis.SliFunction] = {
    "export_success_rate": slis.export_success_rate,
    "export_latency_hours": slis.export_latency,
    "unallocated_percent": slis.unallocated_percent,
    "duplicate_rate": slis.duplicate_rate,
    "ingestion_cost": slis.ingestion_cost,
    "backfill_backlog": slis.backfill_backlog,
    "reconciliation_delta": slis.reconciliation_delta,
    "cost_anomalies": slis.cost_anomalies,
    "schema_failures": slis.schema_failures,
    "access_violations": slis.access_violations,
    "quarantine_rate": slis.quarantine_rate,
}
assert tuple(SLI_FUNCTIONS) == BUDGETED_SLIS

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "sli": pl.String(),
    "source": pl.String(),
    "value": pl.Float64(),
    "target": pl.Float64(),
    "good": pl.Boolean(),
}
WINDOWS = ("fast_long", "fast_short", "slow_long", "slow_short")
ALERTS = ("none", "ticket", "page")


def budget_url(lake_url: str, day: dt.date) -> str:
    return join(lake_url, TABLE, f"date={day.isoformat()}", "part-0.parquet")


def day_events(
    config: BillingConfig,
    store: Store,
    day: dt.date,
    now: dt.datetime,
    evaluated: Mapping[str, slis.SliResult] | None = None,
) -> pl.DataFrame:
    """Every budgeted SLI's verdict per judged source for one day: as `evaluated` holds it (the day's checks
    evaluated it in the same step, by SLO name), else evaluated now."""
    rows = []
    for name, compute in SLI_FUNCTIONS.items():
        known = (evaluated or {}).get(name)
        result = known if known is not None else compute(config, store, day, now)
        target = config.slo.resolve(name).target
        for source, good in sorted(result.source_verdicts().items()):
            own = result.extra.get(f"slo/{name}/{source}")  # a per-source target (M2's daily-window providers)
            rows.append(
                {
                    "date": day,
                    "sli": name,
                    "source": source,
                    "value": float(result.per_source.get(source, result.value)),
                    "target": float(own) if isinstance(own, (int, float)) else float(target),
                    "good": bool(good),
                }
            )
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


# Each day's budgets read the events stored with the window's earlier days (27 files by default): in a backfill
# each file was read again by every later day of its window. A file's events are kept for the process by its
# identity (path, size, ETag or mtime); a day evaluated again writes a file with another identity.
_EVENTS_BY_FILE: KeptByIdentity[str, pl.DataFrame] = KeptByIdentity(limit=10_000)


def recorded_events(store: Store, lake_url: str, days: list[dt.date]) -> pl.DataFrame:
    """The events stored with the budgets of each of `days` (days never evaluated give none)."""
    frames = []
    for day in days:
        url = budget_url(lake_url, day)
        try:
            identity = store.info(url).identity
        except FileNotFoundError:
            continue
        events = _EVENTS_BY_FILE.get(identity)
        if events is None:
            table = pl.read_parquet(store.read_bytes(url), columns=list(EVENT_SCHEMA))
            # budget rows without an event that day
            events = _EVENTS_BY_FILE.keep(identity, table.filter(pl.col("good").is_not_null()))
        frames.append(events)
    return pl.concat(frames) if frames else pl.DataFrame(schema=EVENT_SCHEMA)


def _burn(bad: pl.Expr, events: pl.Expr, budget: pl.Expr) -> pl.Expr:
    """Failed share / budget share; with no budget, any failure burns infinitely fast."""
    share = pl.when(events > 0).then(bad / events).otherwise(0.0)
    return pl.when(budget > 0).then(share / budget).when(bad > 0).then(math.inf).otherwise(0.0)


def _window_counts(age: pl.Expr, failed: pl.Expr, label: str, days: int) -> list[pl.Expr]:
    inside = age < days
    return [inside.sum().alias(f"events_{label}"), (inside & failed).sum().alias(f"failed_{label}")]


def budgets(config: BillingConfig, day: dt.date, events: pl.DataFrame) -> pl.DataFrame:
    """One row per (SLI, source) with events in the window ending at `day`: attainment, budget, burn rates
    and the alert (`page`, `ticket` or `none`) the multiwindow rule gives."""
    settings = config.error_budget
    windows: dict[str, int] = {
        "fast_long": settings.fast_burn.long_window_days,
        "fast_short": settings.fast_burn.short_window_days,
        "slow_long": settings.slow_burn.long_window_days,
        "slow_short": settings.slow_burn.short_window_days,
    }
    age = (pl.lit(day) - pl.col("date")).dt.total_days()
    failed = ~pl.col("good")
    counts = [pl.len().alias("events"), failed.sum().alias("failed")]
    for label, days in windows.items():
        counts += _window_counts(age, failed, label, days)
    objectives = {name: settings.objective_of(name) for name in BUDGETED_SLIS}
    table = (
        events.filter((age >= 0) & (age < settings.window_days))
        .group_by("sli", "source")
        .agg(*counts)
        .with_columns(
            objective=pl.col("sli").replace_strict(objectives, default=settings.objective, return_dtype=pl.Float64)
        )
        .with_columns(budget=1 - pl.col("objective"))
    )
    allowed = pl.col("budget") * pl.col("events")
    table = table.with_columns(
        attainment=1 - pl.col("failed") / pl.col("events"),
        error_budget_events=allowed,
        budget_left=pl.when(allowed > 0)
        .then(1 - pl.col("failed") / allowed)
        .when(pl.col("failed") > 0)
        .then(-math.inf)
        .otherwise(1.0),
        **{
            f"burn_rate_{label}": _burn(pl.col(f"failed_{label}"), pl.col(f"events_{label}"), pl.col("budget"))
            for label in windows
        },
    )

    def burning(alert: BurnRateAlert, speed: str) -> pl.Expr:
        enough = (pl.col(f"events_{speed}_long") >= alert.min_long_window_events) | (pl.col("budget") <= 0)
        return (
            (pl.col(f"burn_rate_{speed}_long") > alert.burn_rate)
            & (pl.col(f"burn_rate_{speed}_short") > alert.burn_rate)
            & enough
        )

    return table.with_columns(
        date=pl.lit(day),
        alert=pl.when(burning(settings.fast_burn, "fast"))
        .then(pl.lit("page"))
        .when(burning(settings.slow_burn, "slow"))
        .then(pl.lit("ticket"))
        .otherwise(pl.lit("none")),
    ).sort("sli", "source")


def evaluate(
    config: BillingConfig,
    store: Store,
    day: dt.date,
    now: dt.datetime,
    evaluated: Mapping[str, slis.SliResult] | None = None,
) -> pl.DataFrame:
    """Evaluate the day's SLIs (those not in `evaluated`, see `day_events`), count them with the window's
    recorded events, store and return the table: the day's events joined to the budgets of every (SLI,
    source) with events in the window."""
    today = day_events(config, store, day, now, evaluated)
    earlier = [day - dt.timedelta(days=k) for k in range(config.error_budget.window_days - 1, 0, -1)]
    events = pl.concat([recorded_events(store, config.lake_url, earlier), today])
    table = (
        budgets(config, day, events)
        .join(today.drop("date"), on=["sli", "source"], how="left")
        .select(
            "date",
            "sli",
            "source",
            "value",
            "target",
            "good",
            pl.exclude("date", "sli", "source", "value", "target", "good"),
        )
    )
    with scratch_dir("billing-slo-") as workdir:
        store.write_parquet(table, budget_url(config.lake_url, day), workdir)
    return table


def read_budgets(store: Store, lake_url: str, day: dt.date) -> pl.DataFrame | None:
    url = budget_url(lake_url, day)
    return pl.read_parquet(store.read_bytes(url)) if store.exists(url) else None


def describe(row: dict) -> str:
    """One (SLI, source) line a human reads: attainment, budget left and the burn rates behind the alert."""
    left = row["budget_left"]
    budget = "exhausted (no budget)" if math.isinf(left) else f"{left:.0%} of the error budget left"
    today = ""
    if row.get("good") is not None:
        today = f"today {row['value']:g} against the target {row['target']:g} ({'good' if row['good'] else 'bad'}), "
    return (
        f"source {row['source']!r}: {today}{row['attainment']:.1%} of {row['events']} evaluation(s) good over "
        f"the window (objective {row['objective']:.1%}), {budget}; burn rate "
        f"{rate_text(row['burn_rate_fast_long'])}/{rate_text(row['burn_rate_fast_short'])} (fast, long/short), "
        f"{rate_text(row['burn_rate_slow_long'])}/{rate_text(row['burn_rate_slow_short'])} (slow)"
    )


def rate_text(value: float) -> str:
    """A burn rate for people: one decimal, `inf` for a zero-budget SLO that failed."""
    return "inf" if math.isinf(value) else f"{value:.1f}x"


__all__ = [
    "ALERTS",
    "SLI_FUNCTIONS",
    "TABLE",
    "budget_url",
    "budgets",
    "day_events",
    "describe",
    "evaluate",
    "rate_text",
    "read_budgets",
    "recorded_events",
]
