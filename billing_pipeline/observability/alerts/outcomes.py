"""What becomes an alert: a check evaluation (failed: an `Alert`; passed: a `Clear` under the same key) and
each row of the day's cost anomaly table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from billing_pipeline.observability.alerts.model import Alert, Clear, Evidence, alert_key
from billing_pipeline.observability.check_metadata import (
    ROUTE_KEY,
    SCOPE_KEY,
    SLO_NAME_KEY,
    SUMMARY_KEY,
    THREATENED_BUDGETS_KEY,
    freshness_check_name,
)
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.names import COST_ANOMALIES


def _freshness_source(config: BillingConfig, check_name: str) -> str | None:
    """The source whose freshness check this is (None for any other check)."""
    return next((s.name for s in config.sources if freshness_check_name(s) == check_name), None)


def _failing_sources(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Per-source values of the SLI that miss its target (`sli/<name>/<source>` against `slo/<name>`)."""
    out: dict[str, str] = {}
    for key, target in metadata.items():
        if not (key.startswith("slo/") and isinstance(target, (int, float))):
            continue
        name = key[len("slo/") :]
        floor = "success" in name
        for metric, value in metadata.items():
            if not (metric.startswith(f"sli/{name}/") and isinstance(value, (int, float))):
                continue
            source = metric[len(f"sli/{name}/") :]
            own = metadata.get(f"slo/{name}/{source}")  # a per-source target (M2's daily-window providers)
            goal = own if isinstance(own, (int, float)) else target
            if (value < goal) if floor else (value > goal):
                out[source] = f"{name} = {value:g} ({'below' if floor else 'above'} the target {goal:g})"
    return out


def _route_of(metadata: Mapping[str, Any], config: BillingConfig, slo_name: str) -> str:
    """The route the check wrote (`alert/route`), else its SLO's in billing.yaml, else a ticket."""
    route = str(metadata.get(ROUTE_KEY) or "")
    if route:
        return route
    try:
        return config.slo.resolve(slo_name).route
    except KeyError:
        return "ticket"


def check_outcome(
    asset: str,
    check_name: str,
    partition: str | None,
    passed: bool,
    severity: str,
    metadata: Mapping[str, Any],
    config: BillingConfig,
    description: str | None = None,
    run_id: str | None = None,
) -> Alert | Clear:
    """A check evaluation as an alert (failed) or a clear (passed) under the same key.

    A freshness failure whose day has arrived since (`available_at` is a time) is over: it clears the
    open page, and is a one-off ticket ("arrived late") if nothing was open.
    """
    metadata = {k: getattr(v, "value", v) for k, v in metadata.items()}
    latest = metadata.get(SCOPE_KEY) == "latest"  # an SLO's burn: one alert per check, not per partition
    key = alert_key("check", asset, check_name, None if latest else partition)
    slo_name = str(metadata.get(SLO_NAME_KEY) or "")
    if passed:
        return Clear(key=key, partition=partition, note=str(metadata.get(SUMMARY_KEY) or description or ""))
    route = _route_of(metadata, config, slo_name)
    numbers = {k: v for k, v in metadata.items() if isinstance(v, (int, float)) and k.startswith(("sli/", "slo/"))}
    summary = str(metadata.get(SUMMARY_KEY) or description or f"check {check_name} failed")
    details: dict[str, Any] = dict(numbers)
    failing = _failing_sources(metadata)
    if failing:
        details["failing_sources"] = failing
    if metadata.get(THREATENED_BUDGETS_KEY):  # an SLO burning on sources whose spend a warn / over budget holds
        details["threatened_budgets"] = json.loads(str(metadata[THREATENED_BUDGETS_KEY]))
    stateful = True
    if slo_name == "freshness":
        source = _freshness_source(config, check_name)
        if source:
            details["source"] = source
        available = str(metadata.get("available_at") or "not yet")
        if available not in ("not yet", "", "None"):  # the day is in the lake now: late, not missing
            stateful, route = False, "ticket" if route != "none" else route
    headline = f"{check_name} failed on {asset}"
    return Alert(
        key=key,
        route=route,
        severity=severity,
        title=f"{headline} for {partition or 'the latest run'}",
        summary=summary,
        partition=partition,
        origin=f"{asset}:{check_name}",
        details=details,
        cause=f"check {asset}:{check_name}",
        headline=headline,
        stateful=stateful,
        runbook=str(metadata.get("runbook") or slo_name),
        run_id=run_id,
        slo=slo_name,
        check=check_name,
    )


def check_alert(
    asset: str,
    check_name: str,
    partition: str | None,
    passed: bool,
    severity: str,
    metadata: Mapping[str, Any],
    config: BillingConfig,
    description: str | None = None,
    run_id: str | None = None,
) -> Alert | None:
    """A failed check evaluation as an alert, routed by its SLO (`alert/route` metadata, else config)."""
    outcome = check_outcome(asset, check_name, partition, passed, severity, metadata, config, description, run_id)
    return outcome if isinstance(outcome, Alert) else None


def anomaly_alerts(table: pl.DataFrame, config: BillingConfig) -> list[Alert]:
    """One alert per anomaly row: what moved, by how much, and the query that lists its rows."""
    route, severity = config.anomalies.route, config.slo.resolve("cost_anomalies").severity
    out = []
    for row in table.iter_rows(named=True):
        day = str(row["usage_date"])
        headline = f"cost {row['kind'].replace('_', ' ')}: {row['dimension']} {row['key']}"
        out.append(
            Alert(
                key=alert_key("anomaly", day, row["kind"], row["dimension"], row["key"]),
                route=route,
                severity=severity,
                title=f"{headline} on {day}",
                summary=row["message"],
                partition=day,
                origin=COST_ANOMALIES,
                details={
                    "spend": row["spend"],
                    "baseline": row["baseline"],
                    "delta": row["delta"],
                    "rows": row["rows"],
                    "top_rows": row["top_rows"],
                    "query": row["query"],
                },
                cause=f"anomaly {row['kind']} {row['dimension']} {row['key']}",
                headline=headline,
                runbook="cost_anomalies",
                slo="cost_anomalies",
                evidence=(Evidence(day=day, reason=f"{row['dimension']} {row['key']}"),),
            )
        )
    return out
