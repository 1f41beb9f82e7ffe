"""Guards of the data path: invariant 5 (never publish less than the lake had) and invariant 6 (one source's
failed build never stops the others, but is reported)."""

from __future__ import annotations

import datetime as dt

from billing_pipeline.observability.slis.base import SliResult, at_most, problems_of, states_of
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.storage import Store


def publish_guard(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose day was held back (incomplete delivery, empty or shrunk version, vanished folder).

    ERROR: the source's published slice is kept and needs a repaired delivery or an operator's
    acceptance. A newer delivery passed over for an unreadable file, with an older complete one
    standing in, is a WARN failure naming the file.
    """
    per_source: dict[str, float] = {}
    held, stood_in = [], []
    for name, state in states_of(config, store, day).items():
        held_back = state.get("held_back")
        per_source[name] = 1.0 if held_back else 0.0
        if held_back:
            held.append(held_back["reason"])
        elif any(p["kind"] in ("unreadable", "empty") for p in problems_of(state)):
            files = [p["file_uri"] for p in problems_of(state) if p["kind"] in ("unreadable", "empty")]
            stood_in.append(
                f"source {name!r}: an older complete delivery stands in for one with unreadable "
                f"file(s) {', '.join(files)}"
            )
    value = sum(per_source.values())
    result = at_most(
        "publish_guard",
        value,
        config,
        per_source=per_source,
        summary="; ".join(held + stood_in) or "every source published from a complete delivery",
    )
    if not held and stood_in:
        result.passed, result.severity = False, "WARN"
    return result


def source_failures(config: BillingConfig, store: Store, day: dt.date, now: dt.datetime) -> SliResult:
    """Sources whose normalized, enriched or reconciliation build failed this day (the others went on)."""
    per_source: dict[str, float] = {}
    failed = []
    for name, state in states_of(config, store, day).items():
        failures = state.get("failures") or {}
        per_source[name] = float(len(failures))
        failed += [f"source {name!r}, {layer}: {item['reason']}" for layer, item in sorted(failures.items())]
    value = sum(per_source.values())
    return at_most(
        "source_failures",
        value,
        config,
        per_source=per_source,
        summary="; ".join(failed) or "every source built every layer",
    )
