"""M5: what running the pipeline costs, in money, month to date, from what its state records.

Each (day, source) state file (`fingerprints.py`) records, per layer (raw, normalized, enriched,
reconciliation), the bytes of the slice it stored, the seconds its last build took and how many times
it was written; the raw layer also records the bytes and files it read from the landing zone. With the
unit prices of `cost_model:` (ops_config.CostModelConfig), for a usage day D of month M:

    storage   = sum over the days d = 1..D of M of  lake_bytes(d) / 2**30 * storage_per_gb_month / days_in(M)
                where lake_bytes(d) = bytes stored by every slice of a usage day <= d (all months)
    requests  = (GET * get_per_1000 + PUT * put_per_1000 + LIST * list_per_1000) / 1000, over the days 1..D of M
                GET  = files read from the landing zone + one read of the upstream slice per downstream layer
                PUT  = writes of the day's slices (every rebuild counts)
                LIST = one listing of the landing zone per raw build
    compute   = compute seconds of the day's slices (last build of each layer) * vcpus * compute_per_vcpu_second
                (a build's share of the machine: sources built side by side split the time, `platform.parallel`)
    transfer  = bytes read / 2**30 * transfer_per_gb (0 by default: same-region S3 to compute is free)

Storage is the lake as it grows (the slices of every usage day up to d), so it is partition-aware: the
value of a day never depends on when it is evaluated, only on what the state of days <= D records.
Lower bounds, said plainly: compute counts only the last build of each layer (the state keeps one
duration), and state files, quarantine and the DuckDB catalogue are not counted.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from billing_pipeline.platform.config import BillingConfig
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.ops_config import CostModelConfig
from billing_pipeline.platform.state import STATE_DIR
from billing_pipeline.platform.storage import FileInfo, Store, is_remote, join

GIB = Decimal(2**30)
LAYERS = ("raw", "normalized", "enriched", "reconciliation")
_STATE_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2})\.json$")


@dataclass
class Usage:
    """Raw quantities of one (day, source), or a sum of them."""

    stored_bytes: int = 0
    read_bytes: int = 0
    compute_seconds: float = 0.0
    get_requests: int = 0
    put_requests: int = 0
    list_requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def usage_of(state: dict[str, Any]) -> Usage:
    """What one (day, source) state file records."""
    layers = {name: state.get(name) or {} for name in LAYERS}
    raw = layers["raw"]
    built = [name for name, layer in layers.items() if layer]
    return Usage(
        stored_bytes=sum(int(layer.get("bytes_stored") or 0) for layer in layers.values()),
        read_bytes=int(raw.get("bytes_read") or 0),
        compute_seconds=sum(float(layer.get("compute_seconds") or 0.0) for layer in layers.values()),
        get_requests=int(raw.get("files_read") or 0) + sum(1 for name in built if name != "raw"),
        put_requests=sum(max(int(layers[name].get("writes") or 0), 1) for name in built),
        list_requests=max(int(raw.get("writes") or 0), 1) if raw else 0,
    )


@dataclass
class Cost:
    storage: Decimal = Decimal(0)
    requests: Decimal = Decimal(0)
    compute: Decimal = Decimal(0)
    transfer: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.storage + self.requests + self.compute + self.transfer

    def __add__(self, other: Cost) -> Cost:
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def activity_cost(usage: Usage, prices: CostModelConfig) -> Cost:
    """Requests, compute and transfer of some usage (storage is accrued per day, see `storage_cost`)."""
    requests = (
        usage.get_requests * prices.get_per_1000_requests
        + usage.put_requests * prices.put_per_1000_requests
        + usage.list_requests * prices.list_per_1000_requests
    ) / 1000
    compute = Decimal(repr(usage.compute_seconds)) * prices.vcpus * prices.compute_per_vcpu_second
    return Cost(requests=requests, compute=compute, transfer=Decimal(usage.read_bytes) / GIB * prices.transfer_per_gb)


def storage_cost(lake_bytes: int, day: dt.date, prices: CostModelConfig) -> Cost:
    """One day of holding `lake_bytes`: a GB-month spread over the days of the day's month."""
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return Cost(storage=Decimal(lake_bytes) / GIB * prices.storage_per_gb_month / days_in_month)


def _state_files(store: Store, lake_url: str, source: str) -> dict[dt.date, FileInfo]:
    folder = join(lake_url, STATE_DIR, "fingerprints", f"source={source}")
    found = {}
    for info in store.find(folder):
        match = _STATE_DATE.search(info.url)
        if match:
            found[dt.date.fromisoformat(match.group(1))] = info
    return found


def _read(store: Store, url: str) -> dict[str, Any]:
    try:
        return json.loads(store.read_bytes(url))
    except (OSError, ValueError):
        return {}


# What each state file records, by the file's identity (path, size, ETag or mtime): month to date reads the
# state of every usage day of the lake (storage is the lake as it grows), so without it each day of a backfill
# read all the days before it again (a year's lake: 1,820 files, 0.5 s, twice a day). A changed file has
# another identity and is read again.
_USAGE_BY_FILE: KeptByIdentity[str, Usage] = KeptByIdentity(limit=200_000)


def source_usage(store: Store, lake_url: str, source: str, until: dt.date) -> dict[dt.date, Usage]:
    """Usage of every usage day <= `until` the source's state records (the files not read before in this
    process; read in parallel on object stores)."""
    wanted = {day: info for day, info in _state_files(store, lake_url, source).items() if day <= until}
    usage = {info.identity: _USAGE_BY_FILE.get(info.identity) for info in wanted.values()}
    unread = [info for info in wanted.values() if usage[info.identity] is None]
    if is_remote(lake_url) and len(unread) > 1:
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = list(pool.map(lambda info: _read(store, info.url), unread))
    else:
        states = [_read(store, info.url) for info in unread]
    for info, state in zip(unread, states, strict=True):
        usage[info.identity] = _USAGE_BY_FILE.keep(info.identity, usage_of(state))
    return {day: usage[info.identity] for day, info in wanted.items()}


@dataclass
class MonthToDate:
    """M5 of a usage day: money month to date, per source and per component, with the raw quantities."""

    day: dt.date
    currency: str
    per_source: dict[str, Cost] = field(default_factory=dict)
    day_cost: Cost = field(default_factory=Cost)  # the day's own activity and one day of storage
    usage_day: Usage = field(default_factory=Usage)
    usage_month: Usage = field(default_factory=Usage)
    lake_bytes: int = 0  # every slice of a usage day <= D
    gb_months: Decimal = Decimal(0)  # storage held, month to date

    @property
    def total(self) -> Cost:
        out = Cost()
        for cost in self.per_source.values():
            out = out + cost
        return out

    @property
    def month(self) -> str:
        return self.day.strftime("%Y-%m")


def month_to_date(config: BillingConfig, store: Store, day: dt.date) -> MonthToDate:
    prices = config.cost_model
    first = day.replace(day=1)
    month_days = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    result = MonthToDate(day=day, currency=prices.currency)
    for source in config.sources:
        usage = source_usage(store, config.lake_url, source.name, day)
        held_before = sum(u.stored_bytes for d, u in usage.items() if d < first)
        cost, held = Cost(), held_before
        for current in month_days:
            today = usage.get(current, Usage())
            held += today.stored_bytes
            daily = storage_cost(held, current, prices) + activity_cost(today, prices)
            cost = cost + daily
            result.gb_months += Decimal(held) / GIB / days_in_month
            result.usage_month = result.usage_month + today
            if current == day:
                result.day_cost = result.day_cost + daily
                result.usage_day = result.usage_day + today
        result.per_source[source.name] = cost
        result.lake_bytes += held
    return result


def money(amount: Decimal | float) -> str:
    """An amount for people: cents from 1 up, four significant digits below (a small lake costs fractions of a
    cent a day), never in exponent notation. Full precision stays in the metadata."""
    value = Decimal(str(amount))
    if value == 0:
        return "0.00"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value.quantize(Decimal(1).scaleb(value.adjusted() - 3)):f}"


def size(n_bytes: int) -> str:
    """Bytes for people, in the binary units storage is billed in."""
    value = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.2f} {unit}"
        value /= 1024
    return f"{value:,.2f} TiB"


__all__ = [
    "GIB",
    "Cost",
    "MonthToDate",
    "Usage",
    "activity_cost",
    "money",
    "month_to_date",
    "size",
    "source_usage",
    "storage_cost",
    "usage_of",
]
