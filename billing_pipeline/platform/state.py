"""The lake's state documents: small JSON files under `<lake>/_state/`, each read and written whole.

    <lake>/_state/deliveries/source=S/period=YYYY-MM/<delivery key>.json    per-day fingerprints of a delivery
    <lake>/_state/fingerprints/source=S/period=YYYY-MM/date=YYYY-MM-DD.json what each layer of a day was built from

The spine writes them; the sensors, checks and SLIs read them. A document that cannot be read counts
as absent, so a damaged state file costs a rebuild of its day, never a failed run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

from billing_pipeline.platform.storage import Store, join

log = logging.getLogger(__name__)

STATE_DIR = "_state"
# What a state document records for "nothing there": a day without rows, a slice not published.
ABSENT = "absent"


def _period(day: dt.date) -> str:
    """The billing period (calendar month) a usage day belongs to, as the state folders name it."""
    return day.strftime("%Y-%m")


def period_states_url(lake_url: str, source: str, period: str) -> str:
    """The folder of the per-day state documents of one source's billing period."""
    return join(lake_url, STATE_DIR, "fingerprints", f"source={source}", f"period={period}")


def state_url(lake_url: str, source: str, day: dt.date) -> str:
    """The state document of one (day, source): what each layer was built from, failures, hold-backs."""
    return join(period_states_url(lake_url, source, _period(day)), f"date={day.isoformat()}.json")


def delivery_record_url(lake_url: str, source: str, period: str, key: str) -> str:
    """The record of one delivery of a billing period (its per-day fingerprints), named by its key."""
    return join(lake_url, STATE_DIR, "deliveries", f"source={source}", f"period={period}", f"{key}.json")


def read_document(store: Store, url: str) -> dict[str, Any] | None:
    """A state document, or None when it is absent or unreadable (logged: the next build rewrites it)."""
    try:
        if not store.exists(url):
            return None
        return json.loads(store.read_bytes(url))
    except (OSError, ValueError) as error:
        log.warning("state file %s unreadable (%s): treated as absent", url, error)
        return None


def write_document(store: Store, url: str, document: dict[str, Any]) -> None:
    """Replace a state document atomically; keys sorted so that two writes of one state are equal bytes."""
    store.write_bytes(url, json.dumps(document, sort_keys=True, default=str, indent=1).encode())


def read_state(store: Store, lake_url: str, source: str, day: dt.date) -> dict[str, Any]:
    """The (day, source) state document; a day never built starts from its source and date alone."""
    return read_document(store, state_url(lake_url, source, day)) or {"source": source, "date": day.isoformat()}


def write_state(store: Store, lake_url: str, source: str, day: dt.date, state: dict[str, Any]) -> None:
    write_document(store, state_url(lake_url, source, day), state)


def period_states(store: Store, lake_url: str, source: str, period: str) -> Iterator[dict[str, Any]]:
    """Every per-day state document of a source's billing period (an unreadable one as empty)."""
    for info in store.find(period_states_url(lake_url, source, period)):
        if info.url.endswith(".json"):
            yield read_document(store, info.url) or {}
