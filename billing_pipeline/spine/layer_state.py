"""What each layer records in the (day, source) state document, and how it decides to rebuild.

A layer's section says what its slice was built from (`built_from`: the identities of its input
slices, plus whatever else decides its content) and what the build found (`result`). A later run
whose inputs have the same identity, and whose slice is still there (or still rightly absent),
reuses the section's result instead of reading and rewriting the slice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any, TypeVar

from billing_pipeline.platform.parallel import compute_clock
from billing_pipeline.platform.state import ABSENT, read_state, write_state
from billing_pipeline.platform.storage import Store

T = TypeVar("T")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReusedSlice:
    """Marker mixin: the slice was left as it was because its input did not change."""

    reused = True


def is_reused(slice_result: object) -> bool:
    return bool(getattr(slice_result, "reused", False))


def slice_identity(store: Store, url: str) -> str:
    """What a published slice is (size + etag/mtime), or `absent`: ties a downstream slice to its input."""
    try:
        info = store.info(url)
    except (FileNotFoundError, OSError):
        return ABSENT
    return f"{info.size}:{info.etag or info.modified}"


def stored_bytes(store: Store, url: str) -> int:
    """Size of a published slice, 0 when there is none."""
    return 0 if slice_identity(store, url) == ABSENT else store.info(url).size


def to_jsonable(obj: Any) -> Any:
    """A slice result (dataclass, Decimals, dates) as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (Decimal, dt.date, dt.datetime)):
        return str(obj)
    return obj


def restore_result(cls: type[T], values: dict[str, Any]) -> T:
    """A slice result dataclass back from its JSON form (Decimals and dates re-typed)."""
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name not in values:
            continue
        value = values[item.name]
        if item.name == "day":
            value = dt.date.fromisoformat(value)
        elif "cost" in item.name:
            value = Decimal(value)
        kwargs[item.name] = value
    return cls(**kwargs)


def is_stale(section: dict[str, Any], built_from: str, target_present: bool) -> bool:
    """Rebuild when the inputs changed, or when the slice is missing where the result says it has rows
    (or present where it has none): a slice removed by hand is rebuilt."""
    result = section.get("result") or {}
    return section.get("built_from") != built_from or target_present != (int(result.get("rows") or 0) > 0)


def record_layer_build(
    store: Store,
    lake_url: str,
    source: str,
    day: dt.date,
    layer: str,
    built_from: str,
    result: object,
    started: float,
    target: str,
) -> None:
    """Record a layer's build in the day's state: its inputs, result, cost, and one more write."""
    state = read_state(store, lake_url, source, day)
    previous = state.get(layer) or {}
    state[layer] = {
        "built_from": built_from,
        "result": to_jsonable(result),
        "compute_seconds": compute_clock() - started,
        "bytes_stored": stored_bytes(store, target),
        "built_at": now().isoformat(),
        "writes": int(previous.get("writes") or 0) + 1,
    }
    write_state(store, lake_url, source, day, state)


def record_layer_outcome(
    store: Store, lake_url: str, source: str, day: dt.date, layer: str, error: BaseException | None
) -> None:
    """Invariant 6: a layer that failed for one source is recorded in the state (`failures`), where
    the `source_failures` check reads it, instead of failing the day for every source."""
    state = read_state(store, lake_url, source, day)
    failures = dict(state.get("failures") or {})
    if error is None and layer not in failures:
        return
    if error is None:
        failures.pop(layer)
    else:
        failures[layer] = {"reason": f"{type(error).__name__}: {error}"[:2000], "at": now().isoformat()}
    state["failures"] = failures
    write_state(store, lake_url, source, day, state)
