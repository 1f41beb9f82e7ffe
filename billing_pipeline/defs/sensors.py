"""Late-arrival / restatement sensors: one per export source, generic over `adapter.discover`.

Each tick lists only the billing periods still open for restatement (the source's `lookback_months`,
the current month included), asks the adapter for the current (latest complete) delivery of each,
and compares it with the JSON cursor (per period: version + file fingerprint). A new delivery is
fingerprinted per usage day (`billing_pipeline.spine.fingerprint`) and only the days whose content
differs from what the lake was built from are requested, as `billing_daily` runs. A provider added
to `billing_pipeline.adapters.ADAPTERS` (GCP, Azure) gets its sensor without touching this file.

The freshness and alert sensors are in `alert_sensors.py`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    JobDefinition,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from billing_pipeline.adapters import adapter_for, choose_current
from billing_pipeline.observability.check_metadata import dagster_name
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.names import RECONCILED
from billing_pipeline.platform.storage import Store, is_access_denied
from billing_pipeline.spine.calendar import open_periods
from billing_pipeline.spine.fingerprint import DeliveryDays, changed_days, delivery_day_fingerprints
from billing_pipeline.spine.reconcile import latest_reconciled_day
from resources import BillingResource

log = logging.getLogger(__name__)

TRIGGER_TAG = "billing/trigger"
SOURCE_TAG = "billing/source"
VERSION_TAG = "billing/version"
PERIOD_TAG = "billing/period"


def sensor_name(source: SourceConfig) -> str:
    return f"{dagster_name(source.name)}_late_arrivals"


@dataclass
class Request:
    day: dt.date
    run_key: str
    tags: dict[str, str]
    assets: tuple[str, ...] = ()  # the assets to materialize; empty: the whole job


@dataclass
class SourceScan:
    """What one tick found for one source: runs to request, the next cursor, and what it said."""

    requests: list[Request] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    filtered: list[str] = field(default_factory=list)
    denied: int = 0


def run_key(source: str, day: dt.date, version: str, day_fingerprint: str) -> str:
    """Stable across processes (hashlib, never `hash()`): the same content is requested once."""
    return hashlib.sha256(f"{source}|{day.isoformat()}|{version}|{day_fingerprint}".encode()).hexdigest()[:40]


def scan_source(
    store: Store,
    config: BillingConfig,
    source: SourceConfig,
    cursor: dict[str, Any],
    now: dt.datetime,
    has_partition_key: Callable[[str], bool],
) -> SourceScan:
    """One tick for one source, without Dagster: which days to request and the cursor after it."""
    adapter = adapter_for(source.provider)
    scan = SourceScan()
    store.invalidate(source.url)  # sensors live long; fsspec would serve a stale listing
    previous = dict(cursor.get("periods") or {})
    periods = open_periods(now.date(), source.lookback_months, config.start_date)
    scan.cursor = {"periods": {p: previous[p] for p in periods if p in previous}}
    for period in periods:
        try:
            choice = choose_current(adapter.discover(store, source.name, source.url, period, source.format))
        except Exception as error:  # noqa: BLE001 - one unreadable period never breaks the tick
            message = f"{type(error).__name__}: {error}"
            scan.denied += int(is_access_denied(message))
            scan.notes.append(f"{source.name} {period}: listing failed: {message[:300]}")
            continue
        delivery = choice.current
        if delivery is None:
            if choice.held_back:
                scan.notes.append(f"{source.name} {period}: newest delivery incomplete, waiting for its files")
            continue
        position = {
            "version": delivery.version,
            "fingerprint": hashlib.sha256(delivery.fingerprint.encode()).hexdigest()[:32],
        }
        if previous.get(period) == position:
            continue
        try:
            days = changed_days(store, source, config.lake_url, delivery)
            fingerprints = delivery_day_fingerprints(store, source, delivery, config.lake_url)
        except Exception as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {error}"
            scan.denied += int(is_access_denied(message))
            scan.notes.append(f"{source.name} {period}: fingerprinting failed: {message[:300]}")
            continue
        for day in days:
            if not has_partition_key(day.isoformat()):
                scan.filtered.append(day.isoformat())
                continue
            scan.requests.append(
                Request(
                    day=day,
                    run_key=run_key(source.name, day, delivery.version, fingerprints.fingerprint(day)),
                    tags={
                        TRIGGER_TAG: "late_arrival",
                        SOURCE_TAG: source.name,
                        PERIOD_TAG: period,
                        VERSION_TAG: delivery.version[:200],
                    },
                )
            )
        refresh = _month_to_date_refresh(store, config, source, period, days, delivery.version, fingerprints)
        if refresh is not None and has_partition_key(refresh.day.isoformat()):
            scan.requests.append(refresh)
        scan.notes.append(f"{source.name} {period}: delivery {delivery.version}: {len(days)} changed day(s)")
        scan.cursor["periods"][period] = position
    return scan


def _month_to_date_refresh(
    store: Store,
    config: BillingConfig,
    source: SourceConfig,
    period: str,
    days: list[dt.date],
    version: str,
    fingerprints: DeliveryDays,
) -> Request | None:
    """The period's latest reconciled day after the changed ones, when it did not change itself: its month to
    date (judged against the invoice once the period is closed) sums the changed days, so it is downstream of
    them (invariant 4) and re-runs too, `reconciliation_deltas` alone (and its checks): its other slices and
    the day's other checks did not change."""
    if not days:
        return None
    latest = latest_reconciled_day(store, config.lake_url, source.name, period, max(days))
    if latest is None:
        return None
    changed = ",".join(f"{d.isoformat()}={fingerprints.fingerprint(d)}" for d in sorted(days))
    return Request(
        day=latest,
        run_key=run_key(source.name, latest, version, f"month_to_date|{changed}"),
        tags={
            TRIGGER_TAG: "month_to_date",
            SOURCE_TAG: source.name,
            PERIOD_TAG: period,
            VERSION_TAG: version[:200],
        },
        assets=(RECONCILED,),
    )


def build_late_arrival_sensor(
    source: SourceConfig,
    job: JobDefinition | Any,
    partitions_def: PartitionsDefinition,
    minimum_interval_seconds: int,
) -> SensorDefinition:
    """The Dagster shell around `scan_source` for one source."""
    source_name = source.name

    @sensor(
        name=sensor_name(source),
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Watches {source.provider} source {source_name!r} for new or restated deliveries of the open "
            "billing periods and requests billing_daily for the days whose content changed."
        ),
    )
    def _late_arrivals(context: SensorEvaluationContext, billing: BillingResource) -> SensorResult:
        config = billing.config
        cursor = json.loads(context.cursor) if context.cursor else {}
        scan = scan_source(
            billing.store(),
            config,
            config.source(source_name),
            cursor,
            dt.datetime.now(dt.UTC),
            partitions_def.has_partition_key,
        )
        for note in scan.notes:
            context.log.info(note)
        if scan.filtered:
            context.log.info(f"days outside the partition set, not requested: {scan.filtered}")
        return SensorResult(
            run_requests=[
                RunRequest(
                    partition_key=r.day.isoformat(),
                    run_key=r.run_key,
                    tags=r.tags,
                    asset_selection=[AssetKey(a) for a in r.assets] or None,
                )
                for r in scan.requests
            ],
            cursor=json.dumps(scan.cursor, sort_keys=True),
        )

    return _late_arrivals


def build_late_arrival_sensors(
    config: BillingConfig, job: JobDefinition | Any, partitions_def: PartitionsDefinition
) -> list[SensorDefinition]:
    return [
        build_late_arrival_sensor(s, job, partitions_def, config.automation.sensor_interval_seconds)
        for s in config.sources
    ]
