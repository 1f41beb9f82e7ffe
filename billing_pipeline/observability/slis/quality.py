"""Data quality: M4 duplicates, the quarantine rate (DESIGN "Bad input") and M9 schema failures."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.adapters import adapter_for
from billing_pipeline.observability.slis.base import SliResult, at_most, listed, problems_of, states_of
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.names import RAW
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, is_access_denied, scratch_dir

SCHEMA_MARKERS = re.compile(r"ColumnNotFound|SchemaError|SchemaFieldNotFound|schema|column", re.IGNORECASE)


def duplicate_rate(
    config: BillingConfig, store: Store, day: dt.date, now: dt.datetime, name: str = "duplicate_rate"
) -> SliResult:
    """Duplicate rows dropped over raw rows, worst source (not double counted, but a delivery defect)."""
    per_source, raw_total, duplicates = {}, 0, 0
    for source, state in states_of(config, store, day).items():
        result = (state.get("normalized") or {}).get("result") or {}
        raw_rows, dup = int(result.get("raw_rows") or 0), int(result.get("duplicate_rows") or 0)
        raw_total += raw_rows
        duplicates += dup
        if raw_rows:
            per_source[source] = dup / raw_rows
    # Judged per source (DESIGN: "per source"): one source read twice is 50 % of its rows however small
    # a share of the day's rows it is.
    worst = max(per_source, key=per_source.__getitem__, default=None)
    value = per_source[worst] if worst else 0.0
    overall = duplicates / raw_total if raw_total else 0.0
    result = at_most(
        name,
        value,
        config,
        per_source=per_source,
        extra={"duplicate_rows": duplicates, "sli/duplicate_rate_all_sources": overall},
        summary=f"worst source {worst!r}: {value:.2%} duplicate rows; {duplicates} of {raw_total} "
        f"rows over all sources ({overall:.2%})"
        if worst
        else "no rows",
    )
    failing = {
        source: f"{share:.2%} of its rows are duplicates (target {result.target.target:.2%})"
        for source, share in per_source.items()
        if share > result.target.target
    }
    if failing:
        result.summary += f"; failing: {listed(failing)}"
    result.name = "duplicate_rate"  # one metric key for both the SLI and the contract check
    return result


def _abs_cost_by_currency(source: SourceConfig, store: Store, url: str, workdir: Path) -> dict[str, Decimal]:
    """Sum of |billed cost| per billing currency of a slice of delivered rows (the adapter's `raw_totals`)."""
    if not store.exists(url):
        return {}
    totals = adapter_for(source.provider).raw_totals(pl.scan_parquet(store.stage(url, workdir)))
    grouped = totals.group_by("BillingCurrency").agg(pl.col("cost").abs().sum()).collect()
    return {str(currency): Decimal(str(cost or 0)) for currency, cost in grouped.iter_rows()}


def _quarantined_cost_share(source: SourceConfig, store: Store, lake_url: str, day: dt.date) -> float:
    """Worst currency's share of |billed cost| that went to quarantine: bad rows (set aside from the raw
    slice by the normalized build) and rows whose usage date could not be parsed (set aside before the raw
    slice), over the delivered |billed cost| (the raw slice plus the latter). Currencies are never added."""
    with scratch_dir("billing-sli-") as workdir:
        kept = _abs_cost_by_currency(source, store, slice_url(lake_url, RAW, day, source.name), workdir)
        rows = _abs_cost_by_currency(source, store, quarantine_url(lake_url, "rows", day, source.name), workdir)
        dates = _abs_cost_by_currency(source, store, quarantine_url(lake_url, "bad_dates", day, source.name), workdir)
    shares = []
    for currency in set(kept) | set(rows) | set(dates):
        delivered = kept.get(currency, Decimal(0)) + dates.get(currency, Decimal(0))
        if delivered:
            shares.append(float((rows.get(currency, Decimal(0)) + dates.get(currency, Decimal(0))) / delivered))
    return max(shares, default=0.0)


def quarantine_rate(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Share of each source's delivered rows, and of their billed cost, that went to quarantine this day.

    Rows: (rows quarantined by the normalized build + rows with an unparseable usage date, set aside by the
    raw build) / (the raw slice's rows + those). Cost: the same share of |billed cost|, per billing
    currency (worst), for rows whose cost could be read. Above `slo.quarantine_rate` (1 %) a ticket; a
    delivery whose rows are mostly quarantined (above `slo.quarantine_rate_majority`, 50 %) fails at ERROR
    naming the source and the dominant reason.
    """
    target = config.slo.resolve("quarantine_rate")
    majority = config.slo.resolve("quarantine_rate_majority")
    per_source: dict[str, float] = {}
    cost_share: dict[str, float] = {}
    failing: dict[str, str] = {}
    mostly: dict[str, str] = {}
    total_bad = 0
    for source in config.sources:
        state = read_state(store, config.lake_url, source.name, day)
        result = (state.get("normalized") or {}).get("result") or {}
        bad_dates = int((state.get("raw") or {}).get("bad_date_rows") or 0)
        rows = int(result.get("raw_rows") or 0) + bad_dates
        bad = int(result.get("quarantined_rows") or 0) + bad_dates
        if not rows:
            continue
        total_bad += bad
        share = bad / rows
        per_source[source.name] = share
        cost_share[source.name] = _quarantined_cost_share(source, store, config.lake_url, day) if bad else 0.0
        reasons = dict(result.get("reasons") or {})
        if bad_dates:
            reasons["unparseable usage start date"] = bad_dates
        dominant = max(sorted(reasons.items()), key=lambda item: item[1], default=None)
        because = f"; dominant reason: {dominant[0]!r} ({dominant[1]} rows)" if dominant else ""
        text = (
            f"{bad} of {rows} rows ({share:.1%}) and {cost_share[source.name]:.1%} of billed cost quarantined{because}"
        )
        if share > majority.target:
            mostly[source.name] = text
        elif share > target.target or cost_share[source.name] > target.target:
            failing[source.name] = text
    value = max(per_source.values(), default=0.0)
    extra: dict[str, float | int | str] = {
        "sli/quarantine_cost_rate": max(cost_share.values(), default=0.0),
        "sli/quarantined_rows": total_bad,
    }
    extra.update({f"sli/quarantine_cost_rate/{name}": share for name, share in sorted(cost_share.items())})
    result = SliResult(
        "quarantine_rate",
        value,
        target,
        not failing and not mostly,
        per_source,
        extra,
        failing=[*failing, *mostly],
    )
    if mostly:
        result.target = majority
        result.summary = f"mostly quarantined (above {majority.target:.0%} of rows): {listed(mostly)}" + (
            f"; also failing: {listed(failing)}" if failing else ""
        )
    elif failing:
        result.summary = f"above {target.target:.1%} quarantined: {listed(failing)}"
    else:
        result.summary = f"worst source {value:.2%} of rows quarantined; {total_bad} row(s) in quarantine"
    return result


def schema_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M9: files that could not be read because their columns are not what the adapter expects, and sources
    whose day a breaking schema change held back (state `held_back.kind == "drift"`).

    Columns added or removed since the previous delivery are reported, not failed: tag columns come
    and go legitimately.
    """
    per_source, added, removed = {}, 0, 0
    failing: dict[str, str] = {}
    for source, state in states_of(config, store, day).items():
        failures = [
            p
            for p in problems_of(state)
            if p["kind"] == "unreadable" and SCHEMA_MARKERS.search(p["reason"]) and not is_access_denied(p["reason"])
        ]
        held = state.get("held_back") or {}
        drift = 1 if held.get("kind") == "drift" else 0  # a breaking change held it back
        per_source[source] = float(max(len(failures), drift))
        if drift:
            failing[source] = f"held back by a breaking schema change: {str(held.get('reason') or '')[:300]}"
        elif failures:
            failing[source] = "; ".join(f"{p['file_uri']}: {p['reason'][:200]}" for p in failures)
        raw = state.get("raw") or {}
        before, after = set(raw.get("previous_columns") or []), set(raw.get("columns") or [])
        if before:
            added += len(after - before)
            removed += len(before - after)
    value = sum(per_source.values())
    return at_most(
        "schema_failures",
        value,
        config,
        per_source=per_source,
        extra={"sli/columns_added": added, "sli/columns_removed": removed},
        summary=f"{int(value)} schema failure(s); columns +{added} -{removed}"
        + (f"; failing: {listed(failing)}" if failing else ""),
    )
