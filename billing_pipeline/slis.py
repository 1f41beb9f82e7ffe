"""The pipeline's own SLIs (M1-M10) for one usage day, computed from what the lake records.

Plain functions, no Dagster: `checks.py` wraps each in an asset check. Every SLI reads the state the
builders record per (day, source) in `<lake>/_state/fingerprints/...` (see `fingerprints.py`) or the
day's slices, so it is partition-aware by construction: a backfill of an old day never changes
yesterday's numbers. Each result has one numeric value under a stable metadata key `sli/<name>`,
per-source values under `sli/<name>/<source>`, and the SLO it was judged against.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from billing_pipeline import anomalies
from billing_pipeline.adapters import adapter_for, choose_current
from billing_pipeline.config import BillingConfig, SourceConfig
from billing_pipeline.escaping import markdown_table
from billing_pipeline.fingerprints import changed_days, is_access_denied, open_periods, read_state
from billing_pipeline.lake import slice_url
from billing_pipeline.ops_config import DEFAULT_LATENCY_HOURS, FALLBACK_LATENCY_HOURS, SloTarget
from billing_pipeline.storage import Store

SCHEMA_MARKERS = re.compile(r"ColumnNotFound|SchemaError|SchemaFieldNotFound|schema|column", re.IGNORECASE)


@dataclass
class SliResult:
    """One SLI of one day: the value, per-source values, the verdict against its SLO, and details."""

    name: str
    value: float
    target: SloTarget
    passed: bool
    per_source: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float | int | str] = field(default_factory=dict)
    summary: str = ""
    severity: str | None = None  # overrides target.severity (e.g. a conservation break is always ERROR)

    @property
    def metadata_key(self) -> str:
        return f"sli/{self.name}"


def expected_latency_hours(source: SourceConfig) -> float:
    """The source's configured latency, else its provider's documented one."""
    if source.expected_latency_hours is not None:
        return source.expected_latency_hours
    return DEFAULT_LATENCY_HOURS.get(source.provider, FALLBACK_LATENCY_HOURS)


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def _states(config: BillingConfig, store: Store, day: dt.date) -> dict[str, dict]:
    return {s.name: read_state(store, config.lake_url, s.name, day) for s in config.sources}


def _at_most(name: str, value: float, config: BillingConfig, **kwargs) -> SliResult:
    target = config.slo.resolve(name)
    return SliResult(name=name, value=value, target=target, passed=value <= target.target, **kwargs)


# ---- invariant 5: never publish less than the lake had ---------------------------------------------------

def publish_guard(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose day was held back (incomplete delivery, empty or shrunk version, vanished folder).

    ERROR: the source's published slice is kept and needs a repaired delivery or an operator's
    acceptance. A newer delivery passed over for an unreadable file, with an older complete one
    standing in, is a WARN failure naming the file.
    """
    per_source: dict[str, float] = {}
    held, stood_in = [], []
    for name, state in _states(config, store, day).items():
        held_back = state.get("held_back")
        per_source[name] = 1.0 if held_back else 0.0
        if held_back:
            held.append(held_back["reason"])
        elif any(p["kind"] in ("unreadable", "empty") for p in _problems(state)):
            files = [p["file_uri"] for p in _problems(state) if p["kind"] in ("unreadable", "empty")]
            stood_in.append(f"source {name!r}: an older complete delivery stands in for one with unreadable "
                            f"file(s) {', '.join(files)}")
    value = sum(per_source.values())
    result = _at_most("publish_guard", value, config, per_source=per_source,
                      summary="; ".join(held + stood_in) or "every source published from a complete delivery")
    if not held and stood_in:
        result.passed, result.severity = False, "WARN"
    return result


def source_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose normalized, enriched or reconciliation build failed this day (the others went on)."""
    per_source: dict[str, float] = {}
    failed = []
    for name, state in _states(config, store, day).items():
        failures = state.get("failures") or {}
        per_source[name] = float(len(failures))
        failed += [f"source {name!r}, {layer}: {item['reason']}" for layer, item in sorted(failures.items())]
    value = sum(per_source.values())
    return _at_most("source_failures", value, config, per_source=per_source,
                    summary="; ".join(failed) or "every source built every layer")


# ---- M1 export success rate ---------------------------------------------------------------------------

def export_success_rate(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Files of the current delivery that could be read, over the files it lists (1.0 = all)."""
    per_source = {}
    for name, state in _states(config, store, day).items():
        raw = state.get("raw") or {}
        refused = sum(1 for p in raw.get("problems") or [] if p["kind"] == "outside_prefix")
        expected = int(raw.get("files_listed") or 0) + refused
        per_source[name] = float(raw.get("files_read") or 0) / expected if expected else 1.0
    value = min(per_source.values(), default=1.0)
    target = config.slo.resolve("export_success_rate")
    return SliResult("export_success_rate", value, target, value >= target.target, per_source,
                     summary=f"worst source reads {value:.1%} of its delivered files")


# ---- M2 export latency ----------------------------------------------------------------------------------

def export_latency(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Hours from the provider's delivery to our ingest of it (worst source)."""
    per_source = {}
    for name, state in _states(config, store, day).items():
        raw = state.get("raw") or {}
        delivered, ingested = _parse(raw.get("delivered_at")), _parse(raw.get("ingested_at"))
        if delivered and ingested:
            per_source[name] = max((ingested - delivered).total_seconds() / 3600, 0.0)
    value = max(per_source.values(), default=0.0)
    return _at_most("export_latency_hours", value, config, per_source=per_source,
                    summary=f"delivery to ingest: {value:.2f} h (worst source)")


def freshness(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime, source: SourceConfig
              ) -> SliResult:
    """End of usage day to first available in the lake, against the source's expected latency.

    Not available yet: passes while the deadline is ahead, fails once it has passed. Judged on this
    partition's own record only, so materializing another day never makes this one look fresh.
    """
    latency = expected_latency_hours(source)
    base = config.slo.resolve("freshness")
    target = base.model_copy(update={"target": latency})
    raw = read_state(store, config.lake_url, source.name, day).get("raw") or {}
    available = _parse(raw.get("first_available_at"))
    deadline = _day_end(day) + dt.timedelta(hours=latency)
    if available is not None:
        hours = (available - _day_end(day)).total_seconds() / 3600
        historical = available > _day_end(day) + dt.timedelta(days=config.automation.freshness_window_days)
        if historical:  # a first load of an old day (initial backfill): recorded, not judged
            return SliResult("availability_latency_hours", hours, target, True, {source.name: hours},
                             {"deadline": deadline.isoformat(), "available_at": available.isoformat()},
                             summary=f"{source.name} {day}: first loaded {hours:.1f} h after the day ended, "
                                     "a historical load outside the freshness window (not judged)")
        return SliResult("availability_latency_hours", hours, target, available <= deadline, {source.name: hours},
                         {"deadline": deadline.isoformat(), "available_at": available.isoformat()},
                         summary=f"{source.name} {day}: available {hours:.1f} h after the day ended "
                                 f"(expected within {latency:g} h)")
    hours = (now - _day_end(day)).total_seconds() / 3600
    passed = now <= deadline
    return SliResult("availability_latency_hours", hours, target, passed, {source.name: hours},
                     {"deadline": deadline.isoformat(), "available_at": "not yet"},
                     summary=f"{source.name} {day}: not available {hours:.1f} h after the day ended "
                             f"({'within' if passed else 'past'} the {latency:g} h deadline)")


# ---- M3 unallocated spend ----------------------------------------------------------------------------------

def _unallocated_percent(states: dict[str, dict]) -> tuple[float | None, dict[str, float]]:
    billed_total, unallocated_total, per_source = Decimal(0), Decimal(0), {}
    for name, state in states.items():
        result = (state.get("enriched") or {}).get("result") or {}
        billed = Decimal(result.get("billed_cost") or 0)
        unallocated = Decimal(result.get("unallocated_cost") or 0)
        billed_total += billed
        unallocated_total += unallocated
        if billed:
            per_source[name] = float(unallocated / billed * 100)
    if not billed_total:
        return None, per_source
    return float(unallocated_total / billed_total * 100), per_source


def unallocated_percent(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    value, per_source = _unallocated_percent(_states(config, store, day))
    value = value or 0.0
    return _at_most("unallocated_percent", value, config, per_source=per_source,
                    summary=f"{value:.2f}% of the day's billed cost has no owner")


def unallocated_jump(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Percentage points the unallocated share rose since the previous day (a tagging outage)."""
    today, _ = _unallocated_percent(_states(config, store, day))
    before, _ = _unallocated_percent(_states(config, store, day - dt.timedelta(days=1)))
    jump = (today - before) if today is not None and before is not None else 0.0
    return _at_most("unallocated_jump_points", jump, config,
                    extra={"unallocated_percent_previous_day": before if before is not None else -1.0},
                    summary=f"unallocated share moved {jump:+.2f} points since the previous day")


# ---- M4 duplicates ----------------------------------------------------------------------------------------

def duplicate_rate(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime,
                   name: str = "duplicate_rate") -> SliResult:
    """Duplicate rows dropped over raw rows, worst source (not double counted, but a delivery defect)."""
    per_source, raw_total, duplicates = {}, 0, 0
    for source, state in _states(config, store, day).items():
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
    result = _at_most(name, value, config, per_source=per_source,
                      extra={"duplicate_rows": duplicates, "sli/duplicate_rate_all_sources": overall},
                      summary=f"worst source {worst!r}: {value:.2%} duplicate rows; {duplicates} of {raw_total} "
                              f"rows over all sources ({overall:.2%})" if worst else "no rows")
    result.name = "duplicate_rate"  # one metric key for both the SLI and the contract check
    return result


# ---- M5 ingestion cost ------------------------------------------------------------------------------------

def ingestion_cost(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M5: the pipeline's own storage, requests and compute in money, month to date at this usage day.

    Unit prices from `cost_model:`; quantities from the state of every (day, source) (`pipeline_cost.py`).
    Informational: it fails only when a monthly budget is set (`slo.ingestion_cost.target`, in
    `cost_model.currency`) and the month to date exceeds it. The raw quantities stay in the metadata.
    """
    from billing_pipeline import pipeline_cost

    mtd = pipeline_cost.month_to_date(config, store, day)
    total, ccy = mtd.total, mtd.currency.lower()
    used, today = mtd.usage_day, mtd.day_cost
    extra: dict[str, float | int | str] = {
        "currency": mtd.currency, "month": mtd.month,
        **{f"sli/ingestion_cost_{part}_{ccy}": float(getattr(total, part))
           for part in ("storage", "requests", "compute", "transfer")},
        f"sli/ingestion_cost_day_{ccy}": float(today.total),
        "sli/ingestion_compute_seconds": used.compute_seconds, "sli/ingestion_bytes_read": used.read_bytes,
        "sli/ingestion_bytes_stored": used.stored_bytes, "sli/ingestion_requests_get": used.get_requests,
        "sli/ingestion_requests_put": used.put_requests, "sli/ingestion_requests_list": used.list_requests,
        "sli/ingestion_compute_seconds_month": mtd.usage_month.compute_seconds,
        "sli/ingestion_gb_months": float(mtd.gb_months), "sli/ingestion_lake_bytes": mtd.lake_bytes,
    }
    money, size = pipeline_cost.money, pipeline_cost.size
    budget = config.slo.resolve("ingestion_cost").target
    if budget == float("inf"):
        verdict = "no monthly budget set (slo.ingestion_cost.target): informational"
    else:
        verdict = (f"{'OVER' if total.total > Decimal(str(budget)) else 'within'} the monthly budget of "
                   f"{mtd.currency} {money(budget)}")
    summary = (f"month to date ({mtd.month}-01..{day.isoformat()}): {mtd.currency} {money(total.total)} (storage "
               f"{money(total.storage)}, requests {money(total.requests)}, compute {money(total.compute)}, transfer "
               f"{money(total.transfer)}); this day {mtd.currency} {money(today.total)}: {used.compute_seconds:.1f} s "
               f"compute, {size(used.read_bytes)} read, {size(used.stored_bytes)} stored, lake {size(mtd.lake_bytes)};"
               f" {verdict}")
    return _at_most("ingestion_cost", float(total.total), config,
                    per_source={name: float(cost.total) for name, cost in mtd.per_source.items()},
                    extra=extra, summary=summary)


# ---- M6 backfill backlog -------------------------------------------------------------------------------------

def backfill_backlog(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Days of the open billing periods whose current delivery differs from what the lake was built from."""
    per_source: dict[str, float] = {}
    days: set[dt.date] = set()
    for source in config.sources:
        adapter = adapter_for(source.provider)
        count = 0
        for period in open_periods(now.date(), source.lookback_months, config.start_date):
            delivery = choose_current(adapter.discover(store, source.name, source.url, period, source.format)).current
            if delivery is None:
                continue
            stale = [d for d in changed_days(store, source, config.lake_url, delivery) if d < now.date()]
            count += len(stale)
            days.update(stale)
        per_source[source.name] = float(count)
    value = float(len(days))
    return _at_most("backfill_backlog", value, config, per_source=per_source,
                    extra={"backlog_days": ", ".join(sorted(d.isoformat() for d in days))[:2000]},
                    summary=f"{len(days)} day(s) of the open periods wait for re-processing")


# ---- M7 reconciliation ------------------------------------------------------------------------------------

def reconciliation_delta(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Worst |relative| month-to-date delta against an invoice; a conservation break is always an ERROR."""
    frames = []
    for source in config.sources:
        url = slice_url(config.lake_url, "reconciliation_deltas", day, source.name)
        if store.exists(url):
            frames.append(pl.read_parquet(store.read_bytes(url)))
    table = pl.concat(frames, how="diagonal_relaxed") if frames else None
    per_source: dict[str, float] = {}
    breaks = 0
    if table is not None and table.height:
        breaks = table.filter(pl.col("status") == "conservation_break").height
        for source, worst in table.group_by("source").agg(
                pl.col("invoice_delta_relative").abs().max()).iter_rows():
            per_source[source] = float(worst or 0.0)
    value = max(per_source.values(), default=0.0)
    result = _at_most("reconciliation_delta", value, config, per_source=per_source,
                      extra={"sli/conservation_breaks": breaks},
                      summary=f"worst invoice delta {value:.4%}; {breaks} conservation break(s)")
    if breaks:
        result.passed, result.severity = False, "ERROR"
    return result


# ---- M8 cost anomalies ------------------------------------------------------------------------------------

def cost_anomalies(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Detect (and store in the lake) the day's spend anomalies and burn-rate breaches."""
    table = anomalies.publish(config, store, day)
    value = float(table.height)
    burn = table.filter(pl.col("kind") == "burn_rate").height
    markdown = markdown_table([
        {"kind": r["kind"], "dimension": r["dimension"], "key": r["key"], "spend": f"{r['spend']:.2f}",
         "baseline": f"{r['baseline']:.2f}", "delta": f"{r['delta']:+.2f}", "rows": r["rows"]}
        for r in table.head(20).iter_rows(named=True)
    ], empty="_no anomaly_")  # keys are delivered tag values: escaped for Markdown
    return _at_most("cost_anomalies", value, config,
                    extra={"sli/burn_rate_breaches": burn, "anomalies_table": anomalies.anomalies_url(
                        config.lake_url, day), "anomalies": markdown},
                    summary="; ".join(table["message"].head(3).to_list()) or "no anomaly")


# ---- M9 schema failures, M10 access violations ----------------------------------------------------------

def _problems(state: dict) -> list[dict]:
    """File problems of the day's last raw build, and of a build held back since (not yet published)."""
    return list((state.get("raw") or {}).get("problems") or []) + list(
        (state.get("held_back") or {}).get("problems") or [])


def schema_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Files that could not be read because their columns are not what the adapter expects.

    Columns added or removed since the previous delivery are reported, not failed: tag columns come
    and go legitimately.
    """
    per_source, added, removed = {}, 0, 0
    for source, state in _states(config, store, day).items():
        failures = [p for p in _problems(state) if p["kind"] == "unreadable" and SCHEMA_MARKERS.search(p["reason"])
                    and not is_access_denied(p["reason"])]
        drift = 1 if (state.get("held_back") or {}).get("kind") == "drift" else 0  # a breaking change held it back
        per_source[source] = float(max(len(failures), drift))
        raw = state.get("raw") or {}
        before, after = set(raw.get("previous_columns") or []), set(raw.get("columns") or [])
        if before:
            added += len(after - before)
            removed += len(before - after)
    value = sum(per_source.values())
    return _at_most("schema_failures", value, config, per_source=per_source,
                    extra={"sli/columns_added": added, "sli/columns_removed": removed},
                    summary=f"{int(value)} file(s) unreadable for a schema reason; columns +{added} -{removed}")


def access_violations(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M10: access-denied events of the day (UTC) on each source's landing prefix and on the lake, read from
    the store's audit trail (`audit_logs:`: S3 server access logs, CloudTrail data events; `audit_logs.py`).

    Where no trail is configured, or for a source not on S3, the fallback is the denied reads the pipeline
    itself met (file problems and denied listings in its state); the summary says which applied. A trail
    that cannot be read fails at WARN (M10 is then not measured), unless violations already fail it.
    """
    from billing_pipeline import audit_logs

    pipeline_denied = {}
    for source, state in _states(config, store, day).items():
        denied = [p for p in _problems(state) if is_access_denied(p["reason"])]
        pipeline_denied[source] = float(len(denied) + int((state.get("access") or {}).get("denied_listings") or 0))
    found = audit_logs.violations(config, store, day, pipeline_denied)
    result = _at_most("access_violations", found.value, config, per_source=found.per_source, extra=found.extra,
                      summary=found.summary)
    if result.passed and found.trail_unreadable:
        result.passed, result.severity = False, "WARN"
    return result


SliFunction = Callable[[BillingConfig, Store, dt.date, dt.datetime], SliResult]

__all__ = [
    "SliResult",
    "access_violations",
    "backfill_backlog",
    "cost_anomalies",
    "duplicate_rate",
    "expected_latency_hours",
    "export_latency",
    "export_success_rate",
    "freshness",
    "ingestion_cost",
    "reconciliation_delta",
    "schema_failures",
    "unallocated_jump",
    "unallocated_percent",
]
