"""The enriched layer: normalized rows plus the tag policy's allocation (`allocation.py`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.platform.config import SourceConfig, TagPolicy
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import ENRICHED, NORMALIZED
from billing_pipeline.platform.parallel import compute_clock
from billing_pipeline.platform.state import ABSENT, read_state
from billing_pipeline.platform.storage import PARQUET_OPTIONS, Store
from billing_pipeline.spine.allocation import allocate_by_distinct_tags
from billing_pipeline.spine.layer_state import ReusedSlice, is_stale, record_layer_build, restore_result, slice_identity
from billing_pipeline.spine.privacy import Pseudonymizer, privacy_digest, restore_policy_names


@dataclass
class EnrichedSlice:
    """What building one enriched slice found: rows, money allocated or not (per currency), rules used."""

    source: str
    day: dt.date
    rows: int = 0
    billed_cost: Decimal = Decimal(0)
    unallocated_cost: Decimal = Decimal(0)
    by_rule: dict[str, int] = field(default_factory=dict)
    # per BillingCurrency: {"billed": ..., "unallocated": ...}; shares are taken per currency, never across
    by_currency: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def build_enriched_slice(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    policy: TagPolicy,
    workdir: Path,
    privacy: Pseudonymizer | None = None,
) -> EnrichedSlice:
    """Normalized rows plus the tag policy's allocation, published atomically.

    With `privacy` the normalized tags are tokens: the policy matches them as it would the clear values,
    because a dimension value that is the token of a name the policy uses becomes that name again
    (`restore_policy_names`); any other personal value stays a token.
    """
    result = EnrichedSlice(source=source.name, day=day)
    normalized_url = slice_url(lake_url, NORMALIZED, day, source.name)
    target = slice_url(lake_url, ENRICHED, day, source.name)
    if not store.exists(normalized_url):
        store.remove(target)
        return result
    enriched = allocate_by_distinct_tags(pl.scan_parquet(store.stage(normalized_url, workdir)), policy)
    if privacy is not None:
        enriched = restore_policy_names(enriched, policy, privacy.key)
    local = workdir / f"enriched-{source.name}.parquet"
    enriched.sink_parquet(local, **PARQUET_OPTIONS)
    frame = pl.scan_parquet(local)
    totals = (
        frame.group_by(pl.col("BillingCurrency").fill_null(""))
        .agg(
            pl.len().alias("rows"),
            pl.col("BilledCost").sum().alias("billed"),
            pl.col("BilledCost").filter(pl.col("unallocated")).sum().alias("unallocated"),
        )
        .collect()
    )
    result.rows = int(totals["rows"].sum())
    result.by_currency = {
        currency: {"billed": Decimal(billed or 0), "unallocated": Decimal(unallocated or 0)}
        for currency, _, billed, unallocated in totals.sort("BillingCurrency").iter_rows()
    }
    result.billed_cost = sum((m["billed"] for m in result.by_currency.values()), Decimal(0))
    result.unallocated_cost = sum((m["unallocated"] for m in result.by_currency.values()), Decimal(0))
    rules = frame.group_by("allocation_rule").len().collect(engine="streaming")  # a handful of distinct rules
    result.by_rule = dict(
        rules.group_by(pl.col("allocation_rule").str.extract(r"^([a-z]+)", 1).fill_null("unallocated"))
        .agg(pl.col("len").sum())
        .sort("allocation_rule")
        .iter_rows()
    )
    store.publish_file(local, target)
    return result


@dataclass
class ReusedEnrichedSlice(EnrichedSlice, ReusedSlice):
    pass


def policy_digest(policy: TagPolicy) -> str:
    """What of the tag policy decides an enriched slice's content."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


def build_enriched_slice_if_stale(
    source: SourceConfig,
    day: dt.date,
    store: Store,
    lake_url: str,
    policy: TagPolicy,
    workdir: Path,
    privacy: Pseudonymizer | None = None,
) -> EnrichedSlice:
    """`build_enriched_slice`, unless its normalized slice, the tag policy and the pseudonymization are
    what it was built from."""
    started = compute_clock()
    normalized = slice_identity(store, slice_url(lake_url, NORMALIZED, day, source.name))
    built_from = normalized + "|" + policy_digest(policy) + privacy_digest(privacy)
    target = slice_url(lake_url, ENRICHED, day, source.name)
    section = read_state(store, lake_url, source.name, day).get("enriched") or {}
    if not is_stale(section, built_from, slice_identity(store, target) != ABSENT):
        return restore_result(ReusedEnrichedSlice, section["result"])
    result = build_enriched_slice(source, day, store, lake_url, policy, workdir, privacy)
    record_layer_build(store, lake_url, source.name, day, "enriched", built_from, result, started, target)
    return result
