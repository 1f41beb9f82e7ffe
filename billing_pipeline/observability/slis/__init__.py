"""The pipeline's own SLIs (M1-M10) for one usage day, computed from what the lake records.

Plain functions, no Dagster: `defs/checks.py` wraps each in an asset check. Every SLI reads the state the
builders record per (day, source) in `<lake>/_state/fingerprints/...` (see `fingerprints.py`) or the
day's slices, so it is partition-aware by construction: a backfill of an old day never changes
yesterday's numbers. Each result has one numeric value under a stable metadata key `sli/<name>`,
per-source values under `sli/<name>/<source>`, and the SLO it was judged against.

Modules by family: `deliveries` (M1, M2, freshness, M6), `money` (M3, M5, M7, M8), `quality` (M4, quarantine,
M9), `security` (M10), `guards` (publish_guard, source_failures); `base` holds `SliResult`.
"""

from billing_pipeline.observability.slis.base import ALL_SOURCES, SliFunction, SliResult, expected_latency_hours
from billing_pipeline.observability.slis.deliveries import (
    backfill_backlog,
    delivery_first_seen,
    delivery_outcome,
    export_latency,
    export_success_rate,
    freshness,
    last_delivered_day,
    latency_target,
    overdue_days,
)
from billing_pipeline.observability.slis.guards import publish_guard, source_failures
from billing_pipeline.observability.slis.money import (
    anomalous_spends,
    cost_anomalies,
    ingestion_cost,
    reconciliation_delta,
    unallocated_jump,
    unallocated_percent,
)
from billing_pipeline.observability.slis.quality import duplicate_rate, quarantine_rate, schema_failures
from billing_pipeline.observability.slis.security import access_violations

__all__ = [
    "ALL_SOURCES",
    "SliFunction",
    "SliResult",
    "access_violations",
    "anomalous_spends",
    "backfill_backlog",
    "cost_anomalies",
    "delivery_first_seen",
    "delivery_outcome",
    "duplicate_rate",
    "expected_latency_hours",
    "export_latency",
    "export_success_rate",
    "freshness",
    "ingestion_cost",
    "last_delivered_day",
    "latency_target",
    "overdue_days",
    "publish_guard",
    "quarantine_rate",
    "reconciliation_delta",
    "schema_failures",
    "source_failures",
    "unallocated_jump",
    "unallocated_percent",
]
