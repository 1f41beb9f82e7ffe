"""Security: M10 access violations, from the store's audit trail or the denied reads the pipeline met."""

from __future__ import annotations

import datetime as dt

from billing_pipeline.observability.slis.base import SliResult, at_most, problems_of, states_of
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store, is_access_denied


def access_violations(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """M10: access-denied events of the day (UTC) on each source's landing prefix and on the lake, read from
    the store's audit trail (`audit_logs:`: S3 server access logs, CloudTrail data events; `audit_logs.py`).

    Where no trail is configured, or for a source not on S3, the fallback is the denied reads the pipeline
    itself met (file problems and denied listings in its state); the summary says which applied. A trail
    that cannot be read fails at WARN (M10 is then not measured), unless violations already fail it.
    """
    from billing_pipeline.observability import audit_logs

    pipeline_denied = {}
    for source, state in states_of(config, store, day).items():
        denied = [p for p in problems_of(state) if is_access_denied(p["reason"])]
        pipeline_denied[source] = float(len(denied) + int((state.get("access") or {}).get("denied_listings") or 0))
    found = audit_logs.violations(config, store, day, pipeline_denied)
    result = at_most(
        "access_violations", found.value, config, per_source=found.per_source, extra=found.extra, summary=found.summary
    )
    if result.passed and found.trail_unreadable:
        result.passed, result.severity = False, "WARN"
    return result
