"""The persistent outbox and its state file: every message is queued in `<lake>/_state/alerts/state.json`
before it is posted, and a delivery that fails stays queued, retried with exponential backoff, in order per
lane (one PagerDuty incident). The state also holds open incidents, what was notified and routed runs, so a
restart neither re-pages nor loses a queued message."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from billing_pipeline.observability.alerts.model import Poster, SendReport, alert_key
from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.escaping import clip
from billing_pipeline.platform.lake import exclusive_lock
from billing_pipeline.platform.ops_config import AlertsConfig, WebhookRoute
from billing_pipeline.platform.storage import Store, is_remote, join

log = logging.getLogger(__name__)

STATE_VERSION = 1


def post_json(url: str, payload: dict[str, Any], timeout: float) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from billing.yaml
        return int(response.status)


def state_url(lake_url: str) -> str:
    return join(lake_url, "_state", "alerts", "state.json")


def sent_state_url(lake_url: str) -> str:
    """Where earlier versions kept only what was sent (read once, for its cooldowns)."""
    return join(lake_url, "_state", "alerts", "sent.json")


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "incidents": {}, "delivered": {}, "runs": {}, "outbox": []}


def load_state(store: Store, lake_url: str) -> dict[str, Any]:
    url = state_url(lake_url)
    try:
        if store.exists(url):
            state = json.loads(store.read_bytes(url))
            return {**_empty_state(), **state}
    except (OSError, ValueError) as error:
        # Never silently: an unreadable state means open incidents and queued messages are unknown.
        log.error("alert state %s unreadable (%s): starting from an empty one", url, error)
        return _empty_state()
    state = _empty_state()
    legacy = sent_state_url(lake_url)
    try:
        if store.exists(legacy):
            for key, at in json.loads(store.read_bytes(legacy)).items():
                state["delivered"][key.split(":", 1)[-1]] = at
    except (OSError, ValueError):
        pass
    return state


def save_state(store: Store, lake_url: str, state: dict[str, Any]) -> None:
    store.write_bytes(state_url(lake_url), json.dumps(state, sort_keys=True, default=str, indent=1).encode())


_STATE_LOCK = threading.RLock()


@contextlib.contextmanager
def state_locked(lake_url: str) -> Iterator[None]:
    """One writer of the alert state at a time: sensors evaluated in threads of one process, and (for a lake on
    local disk) the daemon and a script routing its own runs. A lake in an object store has no lock: there,
    route in-process runs only where no daemon runs the alert sensors on the same lake."""
    with _STATE_LOCK:
        url = state_url(lake_url)
        if is_remote(url):
            yield
            return
        with exclusive_lock(Path(f"{url.removeprefix('file://')}.lock")):
            yield


def is_routed(store: Store, config: BillingConfig, run_id: str) -> bool:
    return run_id in load_state(store, config.lake_url)["runs"]


def _resolve_url(route: WebhookRoute, env: Mapping[str, str]) -> str | None:
    return route.url or (env.get(route.url_env) if route.url_env else None)


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def enqueue(
    state: dict[str, Any], route: str, kind: str, payload: dict[str, Any], what: str, lane: str, now: dt.datetime
) -> None:
    body = {k: v for k, v in payload.items() if k != "routing_key"}  # the secret is added when posted
    state["outbox"].append(
        {
            "id": alert_key("outbox", route, now.isoformat(), len(state["outbox"]), json.dumps(body, default=str)),
            "route": route,
            "kind": kind,
            "lane": lane,
            "what": what,
            "payload": body,
            "created_at": now.isoformat(),
            "attempts": 0,
            "next_attempt_at": now.isoformat(),
            "last_error": None,
        }
    )


class _DeliveryError(Exception):
    pass


def _permanent(error: Exception) -> bool:
    """A 4xx (other than timeout / rate limit) refuses this message only: other messages may still go."""
    return isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500 and error.code not in (408, 429)


def deliver_due(
    state: dict[str, Any],
    config: BillingConfig,
    env: Mapping[str, str],
    poster: Poster,
    now: dt.datetime,
    report: SendReport,
) -> None:
    """Post every due outbox entry in order; a failure keeps the entry with its next attempt backed off.

    Order is kept per lane (one PagerDuty incident); a route whose endpoint is down (connection refused,
    5xx, no URL or key) is not tried again in the same flush.
    """
    settings = config.alerts
    blocked_routes: set[str] = set()
    blocked_lanes: set[str] = set()
    kept: list[dict[str, Any]] = []
    for entry in state["outbox"]:
        lane, route_name = entry["lane"], entry["route"]
        if route_name in blocked_routes or lane in blocked_lanes or parse_time(entry["next_attempt_at"]) > now:
            blocked_lanes.add(lane)
            kept.append(entry)
            continue
        try:
            report.posts.append(_post(entry, settings, env, poster))
        except Exception as error:  # noqa: BLE001 - an unreachable webhook must not lose the message
            message = _back_off(entry, error, settings, now)
            report.failures.append(message)
            report.errors.append(message)
            kept.append(entry)
            blocked_lanes.add(lane)
            if not _permanent(error):
                blocked_routes.add(route_name)
    state["outbox"] = kept
    report.pending = [dict(e, payload=None) for e in kept]


def _post(entry: Mapping[str, Any], settings: AlertsConfig, env: Mapping[str, str], poster: Poster) -> tuple[str, int]:
    """Post one entry to its route (the routing key added from the environment); (route kind, HTTP status)."""
    route_name = entry["route"]
    route: WebhookRoute | None = getattr(settings, route_name, None)
    if route is None:
        raise _DeliveryError(f"alerts.{route_name} is no longer configured in billing.yaml")
    url = _resolve_url(route, env)
    if not url:
        raise _DeliveryError(f"no URL (set url, or the variable {route.url_env})")
    payload = dict(entry["payload"])
    if route.kind == "pagerduty":
        key = env.get(route.routing_key_env or "", "")
        if not key:
            raise _DeliveryError(f"routing key variable {route.routing_key_env!r} is not set")
        payload = {"routing_key": key, **payload}
    return route.kind, poster(url, payload, settings.timeout_seconds)


def _back_off(entry: dict[str, Any], error: Exception, settings: AlertsConfig, now: dt.datetime) -> str:
    """Record a failed attempt and schedule the next one (exponential backoff); the line that reports it."""
    entry["attempts"] = int(entry["attempts"]) + 1
    entry["last_error"] = clip(f"{type(error).__name__}: {error}", 500)
    entry["last_attempt_at"] = now.isoformat()
    delay = min(settings.retry_initial_seconds * 2 ** (entry["attempts"] - 1), settings.retry_max_seconds)
    entry["next_attempt_at"] = (now + dt.timedelta(seconds=delay)).isoformat()
    return (
        f"alerts.{entry['route']} ({entry['what']}): attempt {entry['attempts']} failed: "
        f"{entry['last_error']}; kept in the outbox, next attempt at {entry['next_attempt_at']}"
    )


def flush_outbox(
    config: BillingConfig,
    store: Store,
    now: dt.datetime | None = None,
    env: Mapping[str, str] | None = None,
    poster: Poster | None = None,
) -> SendReport:
    """Retry every queued message that is due (the `billing_alerts_outbox` sensor, and each send)."""
    now = now or dt.datetime.now(dt.UTC)
    report = SendReport()
    with state_locked(config.lake_url):
        state = load_state(store, config.lake_url)
        if not state["outbox"]:
            return report
        deliver_due(state, config, os.environ if env is None else env, poster or post_json, now, report)
        save_state(store, config.lake_url, state)
    return report
