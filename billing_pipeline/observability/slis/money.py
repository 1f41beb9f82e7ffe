"""Money: M3 unallocated spend, M5 the pipeline's own cost, M7 reconciliation against the invoice and M8
cost anomalies (read from the `cost_anomalies` table the asset of that name writes)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from billing_pipeline.observability import anomalies
from billing_pipeline.observability.slis.base import SliResult, at_most, listed, states_of
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import RECONCILED
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine.calendar import period_closed


def _money_by_currency(state: dict) -> dict[str, tuple[Decimal, Decimal]]:
    """(billed, unallocated) per billing currency of one (day, source)'s enriched build. A state recorded
    before currencies were (no `by_currency`) gives its totals under "" (its source's one currency)."""
    result = (state.get("enriched") or {}).get("result") or {}
    by_currency = result.get("by_currency")
    if by_currency:
        return {
            currency: (Decimal(str(m["billed"])), Decimal(str(m["unallocated"]))) for currency, m in by_currency.items()
        }
    if result.get("billed_cost") is None:
        return {}
    return {"": (Decimal(str(result["billed_cost"])), Decimal(str(result.get("unallocated_cost") or 0)))}


def _shares(totals: dict[str, tuple[Decimal, Decimal]]) -> dict[str, float]:
    """Percent of billed cost without an owner, per currency (a currency billing nothing has no share)."""
    return {currency: float(unallocated / billed * 100) for currency, (billed, unallocated) in totals.items() if billed}


def _day_shares(states: dict[str, dict]) -> dict[tuple[str, str], float]:
    """(source, currency) -> the day's unallocated percent."""
    return {
        (name, currency): share
        for name, state in states.items()
        for currency, share in _shares(_money_by_currency(state)).items()
    }


def _named(source: str, currency: str) -> str:
    return f"{source} {currency}".strip()


def unallocated_percent(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M3: percent of billed cost without an owner, month to date (the 1st to this day), per source.

    Shares are taken per billing currency, never across (a source may bill in two); a source's value is its
    worst currency, and the SLI's value the worst source. The day's own worst (source, currency) share stays
    as `sli/unallocated_percent_day`.
    """
    first = day.replace(day=1)
    month = [first + dt.timedelta(days=k) for k in range((day - first).days + 1)]
    per_source: dict[str, float] = {}
    worst_currency: dict[str, str] = {}
    for source in config.sources:
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        for current in month:
            for currency, (billed, unallocated) in _money_by_currency(
                read_state(store, config.lake_url, source.name, current)
            ).items():
                before = totals.get(currency, (Decimal(0), Decimal(0)))
                totals[currency] = (before[0] + billed, before[1] + unallocated)
        shares = _shares(totals)
        if shares:
            worst_currency[source.name] = max(shares, key=shares.__getitem__)
            per_source[source.name] = shares[worst_currency[source.name]]
    target = config.slo.resolve("unallocated_percent")
    failing = {
        name: f"{share:.2f}% of its {(worst_currency[name] + ' ').lstrip()}billed cost {first:%Y-%m-%d} to "
        f"{day} has no owner"
        for name, share in per_source.items()
        if share > target.target
    }
    value = max(per_source.values(), default=0.0)
    today = _day_shares(states_of(config, store, day))
    worst_today = max(today, key=today.__getitem__, default=None)
    summary = (
        f"month to date, worst source {value:.2f}% unallocated (target {target.target:g}%)"
        + (f"; failing: {listed(failing)}" if failing else "")
        + (
            f"; the day: {today[worst_today]:.2f}% of {_named(*worst_today)}'s billed cost has no owner"
            if worst_today
            else "; the day: nothing billed"
        )
    )
    return SliResult(
        "unallocated_percent",
        value,
        target,
        not failing,
        per_source,
        extra={"sli/unallocated_percent_day": today[worst_today] if worst_today else 0.0},
        summary=summary,
        failing=failing,
    )


def unallocated_jump(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Percentage points the unallocated share rose since the previous day (a tagging outage): the largest
    rise of any (source, currency) billed on both days."""
    today = _day_shares(states_of(config, store, day))
    before = _day_shares(states_of(config, store, day - dt.timedelta(days=1)))
    rises = {key: today[key] - before[key] for key in today.keys() & before.keys()}
    worst = max(rises, key=rises.__getitem__, default=None)
    jump = rises[worst] if worst else 0.0
    where = f" ({_named(*worst)}: {before[worst]:.2f}% -> {today[worst]:.2f}%)" if worst else ""
    return at_most(
        "unallocated_jump_points",
        jump,
        config,
        extra={"unallocated_percent_previous_day": before[worst] if worst else -1.0},
        summary=f"unallocated share moved {jump:+.2f} points since the previous day{where}",
    )


def ingestion_cost(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M5: the pipeline's own storage, requests and compute in money, month to date at this usage day.

    Unit prices from `cost_model:`; quantities from the state of every (day, source) (`pipeline_cost.py`).
    Informational: it fails only when a monthly budget is set (`slo.ingestion_cost.target`, in
    `cost_model.currency`) and the month to date exceeds it. The raw quantities stay in the metadata.
    """
    from billing_pipeline.observability import pipeline_cost

    mtd = pipeline_cost.month_to_date(config, store, day)
    total, ccy = mtd.total, mtd.currency.lower()
    used, today = mtd.usage_day, mtd.day_cost
    extra: dict[str, float | int | str] = {
        "currency": mtd.currency,
        "month": mtd.month,
        **{
            f"sli/ingestion_cost_{part}_{ccy}": float(getattr(total, part))
            for part in ("storage", "requests", "compute", "transfer")
        },
        f"sli/ingestion_cost_day_{ccy}": float(today.total),
        "sli/ingestion_compute_seconds": used.compute_seconds,
        "sli/ingestion_bytes_read": used.read_bytes,
        "sli/ingestion_bytes_stored": used.stored_bytes,
        "sli/ingestion_requests_get": used.get_requests,
        "sli/ingestion_requests_put": used.put_requests,
        "sli/ingestion_requests_list": used.list_requests,
        "sli/ingestion_compute_seconds_month": mtd.usage_month.compute_seconds,
        "sli/ingestion_gb_months": float(mtd.gb_months),
        "sli/ingestion_lake_bytes": mtd.lake_bytes,
    }
    money, size = pipeline_cost.money, pipeline_cost.size
    budget = config.slo.resolve("ingestion_cost").target
    if budget == float("inf"):
        verdict = "no monthly budget set (slo.ingestion_cost.target): informational"
    else:
        verdict = (
            f"{'OVER' if total.total > Decimal(str(budget)) else 'within'} the monthly budget of "
            f"{mtd.currency} {money(budget)}"
        )
    summary = (
        f"month to date ({mtd.month}-01..{day.isoformat()}): {mtd.currency} {money(total.total)} (storage "
        f"{money(total.storage)}, requests {money(total.requests)}, compute {money(total.compute)}, transfer "
        f"{money(total.transfer)}); this day {mtd.currency} {money(today.total)}: {used.compute_seconds:.1f} s "
        f"compute, {size(used.read_bytes)} read, {size(used.stored_bytes)} stored, lake {size(mtd.lake_bytes)};"
        f" {verdict}"
    )
    result = at_most(
        "ingestion_cost",
        float(total.total),
        config,
        per_source={name: float(cost.total) for name, cost in mtd.per_source.items()},
        extra=extra,
        summary=summary,
    )
    result.whole_day = True  # the monthly budget is the pipeline's, not a source's
    return result


JUDGED_STATUSES = ("matched", "mismatch")


def _joined(*texts: str | None) -> str:
    return "; ".join(t for t in texts if t)


def _invoice_text(row: dict) -> str:
    account = f"account {row['BillingAccountId']} {row['BillingCurrency']}"
    delta = f"{row['invoice_delta_relative'] or 0.0:+.4%}"
    return f"{account}: {row['month_to_date_total']} against invoice {row['invoice_amount']} ({delta}, {row['status']})"


def _break_text(row: dict) -> str:
    account = f"account {row['BillingAccountId']} {row['BillingCurrency']}"
    return (
        f"{account}: conservation break of {row['conservation_delta']} "
        "(raw - quarantined - duplicates != normalized): a pipeline bug"
    )


def _unbuilt_days(config: BillingConfig, store: Store, day: dt.date, table: pl.DataFrame) -> dict[str, list[dt.date]]:
    """Per judged source, the days of the closed period before `day` never built (no raw or held-back state)."""
    first = day.replace(day=1)
    unbuilt: dict[str, list[dt.date]] = {}
    for source in {str(s) for s in table.filter(pl.col("status").is_in(JUDGED_STATUSES))["source"]}:
        missing = [
            first + dt.timedelta(days=k)
            for k in range((day - first).days)
            if not set(read_state(store, config.lake_url, source, first + dt.timedelta(days=k))) & {"raw", "held_back"}
        ]
        if missing:
            unbuilt[source] = missing
    return unbuilt


def _reconciliation_summary(
    day: dt.date,
    value: float,
    target: float,
    per_source: dict[str, float],
    month_to_date: dict[str, float],
    unbuilt: dict[str, list[dt.date]],
    failing: dict[str, str],
) -> str:
    """What a human reads: the closed period's worst delta, or the open month's, then what is not judged yet
    and what fails."""
    if per_source:
        summary = f"closed period {day:%Y-%m}: worst invoice delta {value:.4%} (target {target:.2%})"
    elif month_to_date:
        summary = (
            f"period {day:%Y-%m} open: month-to-date delta {max(month_to_date.values()):.4%} against the "
            "month's invoice (information, judged on the period's last day)"
        )
    else:
        summary = f"period {day:%Y-%m}: no invoice to judge against yet"
    if unbuilt:
        summary += "; not judged yet (days of the period never built, the month to date lacks them): " + listed(
            {
                name: f"{len(days)} day(s), first {days[0]}; materialize them, then {day} again"
                for name, days in unbuilt.items()
            }
        )
    if failing:
        summary += f"; failing: {listed(failing)}"
    return summary


def reconciliation_delta(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M7: |export total - invoice| / invoice per closed billing period, worst source; any conservation
    break is an ERROR.

    A period is judged from its last day's partition on (`reconciliation.period_closed`): it fails when a
    row's status is `mismatch` (beyond `reconciliation.absolute_tolerance` and `relative_tolerance`) or its
    relative delta is above the SLO target (0.5 %). While the month is open the month-to-date delta is
    information only (`sli/reconciliation_delta_month_to_date`), never a failure. A source with days of the
    closed period never built (no state: a backfill of the last day alone, or still running) is not judged
    yet: its month to date lacks those days.
    """
    frames = []
    for source in config.sources:
        url = slice_url(config.lake_url, RECONCILED, day, source.name)
        if store.exists(url):
            frames.append(pl.read_parquet(store.read_bytes(url)))
    table = pl.concat(frames, how="diagonal_relaxed") if frames else None
    target = config.slo.resolve("reconciliation_delta")
    per_source: dict[str, float] = {}
    month_to_date: dict[str, float] = {}
    failing: dict[str, str] = {}
    unbuilt: dict[str, list[dt.date]] = {}
    breaks = 0
    if table is not None and table.height:
        breaks = table.filter(pl.col("status") == "conservation_break").height
        if period_closed(day):
            unbuilt = _unbuilt_days(config, store, day, table)
        for row in table.sort("source", "BillingAccountId", "BillingCurrency", nulls_last=True).iter_rows(named=True):
            source, relative = row["source"], abs(row["invoice_delta_relative"] or 0.0)
            if row["status"] == "month_in_progress" or (row["status"] in JUDGED_STATUSES and source in unbuilt):
                month_to_date[source] = max(month_to_date.get(source, 0.0), relative)
            elif row["status"] in JUDGED_STATUSES:
                per_source[source] = max(per_source.get(source, 0.0), relative)
                beyond = abs(row["invoice_delta"] or 0) > config.reconciliation.absolute_tolerance
                if row["status"] == "mismatch" or (relative > target.target and beyond):
                    failing[source] = _joined(failing.get(source), _invoice_text(row))
            elif row["status"] == "conservation_break":
                failing[source] = _joined(failing.get(source), _break_text(row))
    value = max(per_source.values(), default=0.0)
    extra: dict[str, float | int | str] = {
        "sli/conservation_breaks": breaks,
        "sli/reconciliation_delta_month_to_date": max(month_to_date.values(), default=0.0),
        "billing_period": day.strftime("%Y-%m"),
        "period_closed": "yes" if period_closed(day) else "no",
    }
    extra.update({f"sli/reconciliation_delta_month_to_date/{s}": v for s, v in sorted(month_to_date.items())})
    summary = _reconciliation_summary(day, value, target.target, per_source, month_to_date, unbuilt, failing)
    # judged per source once its period is closed; a conservation break fails its source on any day
    result = SliResult(
        "reconciliation_delta", value, target, not failing, per_source, extra, summary=summary, failing=failing
    )
    if breaks:
        result.severity = "ERROR"
    return result


def anomalous_spends(table: pl.DataFrame) -> int:
    """Anomalous spends of one day's anomaly table: service, account and team each partition the same spend,
    so one spike flagged on its service, its account and its team is one anomalous spend. The day counts the
    most keys flagged in any one dimension (a burn-rate breach, dimension `total`, is one)."""
    if table.is_empty():
        return 0
    return int(table.group_by("dimension").len()["len"].max())


def cost_anomalies(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M8: anomalous spends detected in the rolling week ending at this day (the 7 days D-6..D), fewer than
    the target (3) per week.

    Reads the tables the `cost_anomalies` asset stored for the day and the six days before (it never detects
    or writes), and counts them per day as `anomalous_spends` (one spike flagged on its service, account and
    team counts once; every flag is still listed). The check routes nowhere itself (`route: none`): each
    anomaly is alerted from the asset's table (`anomalies.route`), and the weekly count through its error
    budget.
    """
    week = {
        day - dt.timedelta(days=k): anomalies.read_published(store, config.lake_url, day - dt.timedelta(days=k))
        for k in range(6, -1, -1)
    }
    table = week[day]
    counts = {d: anomalous_spends(frame) for d, frame in week.items()}
    value = float(sum(counts.values()))
    target = config.slo.resolve("cost_anomalies")
    days = ", ".join(f"{d:%m-%d}: {n}" for d, n in sorted(counts.items()) if n)
    messages = pl.concat(list(week.values()), how="diagonal_relaxed")["message"].tail(3).to_list()
    summary = (
        f"{int(value)} anomalous spend{'' if value == 1 else 's'} in the week {day - dt.timedelta(days=6)} to "
        f"{day} ({'fewer than' if value < target.target else 'NOT fewer than'} {target.target:g} per week)"
        + (f"; per day {days}" if days else "")
        + (f"; latest: {'; '.join(messages)}" if messages else "")
    )
    return SliResult(
        "cost_anomalies",
        value,
        target.model_copy(update={"route": "none"}),
        value < target.target,
        extra={
            "sli/cost_anomalies_day": counts[day],
            "sli/cost_anomaly_flags_day": table.height,
            "sli/burn_rate_breaches": table.filter(pl.col("kind") == "burn_rate").height,
            "anomalies_table": anomalies.anomalies_url(config.lake_url, day),
            "anomalies": anomalies.preview(table),
        },
        summary=summary,
    )
