"""The daily billing spine as Dagster assets. Thin: each layer says how it builds every source's slice
and what it reports; `spine_layer` runs the selected layers in build order in one step (build, report,
check each), then refreshes the DuckDB views once."""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from dagster import AssetsDefinition, MetadataValue, PartitionsDefinition

from billing_pipeline.defs.asset_metadata import (
    CURRENCY,
    amounts_of,
    enriched_money,
    enriched_schema,
    money_rows,
    normalized_money,
    normalized_schema,
    per_currency,
    percent_per_currency,
    raw_schema,
    reconciliation_money,
    reconciliation_schema,
)
from billing_pipeline.defs.checks import spine_day_checks
from billing_pipeline.defs.spine_layer import DayPart, LayerDay, SpineLayer, build_spine_asset, markdown_preview
from billing_pipeline.lifecycle.audit_log import OperatorRun
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.names import ENRICHED, NORMALIZED, RAW, RECONCILED, SPINE
from billing_pipeline.platform.parallel import build_each_source
from billing_pipeline.spine.enrich import EnrichedSlice, build_enriched_slice_if_stale
from billing_pipeline.spine.guard import DeliveryIncompleteError, PublishGuard
from billing_pipeline.spine.layer_state import is_reused
from billing_pipeline.spine.normalize import NormalizedSlice, build_normalized_slice_if_stale
from billing_pipeline.spine.privacy import Pseudonymizer
from billing_pipeline.spine.raw import build_raw_slice_if_changed
from billing_pipeline.spine.raw_publish import RawSlice
from billing_pipeline.spine.reconcile import (
    RECONCILIATION_SCHEMA,
    invoices_digest,
    publish_reconciliation_if_stale,
    read_invoices,
)

SPINE_ASSET_NAMES = SPINE  # kept for callers of the former name

ACCEPT_TAG = "billing/accept"  # `<source>:<YYYY-MM>[,...]`: an operator accepts a held-back smaller version
ACCEPTED_BY_TAG = "billing/accepted_by"  # who (recorded in the state); else the launching user, else the run


def accepted_from_tags(tags: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """(source, period) -> who accepted it, from a run's tags (empty when the run accepts nothing)."""
    who = tags.get(ACCEPTED_BY_TAG) or tags.get("dagster/user") or "operator (run tag)"
    out: dict[tuple[str, str], str] = {}
    for item in (tags.get(ACCEPT_TAG) or "").split(","):
        source, _, period = item.strip().partition(":")
        if source and period:
            out[(source, period)] = who
    return out


# ---- raw_line_items -----------------------------------------------------------------------------------------------


@dataclass
class RawBuild:
    """The day's raw slices, and the sources held back with the reason (they keep their published slices)."""

    slices: list[RawSlice] = field(default_factory=list)
    held_back: dict[str, str] = field(default_factory=dict)


def _build_raw_source(
    run: LayerDay, source: SourceConfig, accepted: Mapping[tuple[str, str], str], workdir: Path
) -> RawSlice:
    """One source's raw slice behind its publish guard: a smaller version waits for an acceptance, from the
    run's tags or else from billing.yaml, and the slice records which one let it through."""
    period = run.day.strftime("%Y-%m")
    by_tag = accepted.get((source.name, period))
    guard_config = run.config.publish_guard
    guard = PublishGuard(guard_config.max_shrink_fraction, by_tag or guard_config.accepted_by(source.name, period))
    via = f"run tag {ACCEPT_TAG} of run {run.context.run.run_id}" if by_tag else "billing.yaml publish_guard.accept"
    operator = OperatorRun.from_tags(run.context.run.run_id, run.context.run.tags)
    return build_raw_slice_if_changed(
        source, run.day, run.store, run.config.lake_url, workdir, guard=guard, accepted_via=via, operator=operator
    )


def build_raw(run: LayerDay, workdir: Path) -> RawBuild:
    """Every source's current complete delivery; an incomplete one holds back that source only (invariant 6).
    Any other error fails the layer once every source was tried."""
    accepted = accepted_from_tags(run.context.run.tags)
    built = RawBuild()
    outcomes = build_each_source(
        run.config.sources,
        lambda source, folder: _build_raw_source(run, source, accepted, folder),
        workdir,
        run.config.sources_in_parallel,
    )
    for outcome in outcomes:
        if isinstance(outcome.error, DeliveryIncompleteError):  # this source only: the others go on (invariant 6)
            run.context.log.error(str(outcome.error))
            built.held_back[outcome.source.name] = str(outcome.error)
        elif outcome.error is not None:
            raise outcome.error
        else:
            built.slices.append(outcome.value)
    for result in built.slices:
        for problem in result.problems:
            run.warn(problem.describe(result.source))
    return built


def _export_latency_hours(slices: list[RawSlice]) -> float:
    """Hours since the oldest delivery of the day's slices was delivered (0 when none is dated)."""
    now = dt.datetime.now(dt.UTC)
    return max(((now - s.delivered_at).total_seconds() / 3600 for s in slices if s.delivered_at), default=0.0)


def report_raw(run: LayerDay, built: RawBuild) -> dict[str, object]:
    """What was read and held back, how late the exports are, and which slices were rewritten or reused."""
    slices = built.slices
    preview = [
        {
            "source": s.source,
            "version": s.version,
            "rows": s.rows,
            "files": s.files_read,
            "quarantined files": s.quarantined_files,
            "passed over": ", ".join(s.passed_over_versions),
        }
        for s in slices
    ]
    return {
        "dagster/row_count": sum(s.rows for s in slices),
        "held_back_sources": len(built.held_back),
        "held_back": MetadataValue.json(built.held_back),
        "files_read": sum(s.files_read for s in slices),
        "quarantined_files": sum(s.quarantined_files for s in slices),
        "bad_date_rows": sum(s.bad_date_rows for s in slices),
        "problems": len([p for s in slices for p in s.problems]),
        "export_latency_hours": _export_latency_hours(slices),
        "preview": MetadataValue.md(markdown_preview(preview)),
        "delivery_fingerprints": MetadataValue.json({s.source: s.fingerprint for s in slices}),
        "slices_rewritten": sum(1 for s in slices if not is_reused(s)),
        "slices_reused": sum(1 for s in slices if is_reused(s)),
        "dagster/column_schema": raw_schema(
            run.published_schemas(RAW, [s.source for s in slices]), {s.name: s.provider for s in run.config.sources}
        ),
    }


# ---- normalized_line_items ----------------------------------------------------------------------------------------


def build_normalized(run: LayerDay, workdir: Path) -> list[NormalizedSlice]:
    """Every source's FOCUS slice, rebuilt only when its raw slice changed."""
    return run.each_source(
        "normalized",
        lambda s, folder: build_normalized_slice_if_stale(
            s, run.day, run.store, run.config.lake_url, folder, Pseudonymizer.of(run.config)
        ),
        workdir,
    )


def report_normalized(run: LayerDay, slices: list[NormalizedSlice]) -> dict[str, object]:
    """Rows kept, dropped and quarantined, and billed, effective and duplicate cost per currency."""
    for result in slices:
        for reason, count in result.reasons.items():
            run.warn(f"source {result.source!r}, {run.day}: {count} rows quarantined: {reason}")
    sources = [s.source for s in slices]
    money = normalized_money(run.store, run.config.lake_url, run.day, sources, run.warn)  # per currency
    preview = [
        {
            "source": s.source,
            "rows": s.rows,
            "billed": amounts_of(money, s.source, "billed"),
            "effective": amounts_of(money, s.source, "effective"),
            "duplicates": s.duplicate_rows,
            "duplicate cost": amounts_of(money, s.source, "duplicate"),
            "quarantined": s.quarantined_rows,
        }
        for s in slices
    ]
    return {
        "dagster/row_count": sum(s.rows for s in slices),
        "raw_rows": sum(s.raw_rows for s in slices),
        **per_currency(money, {"billed": "billed_cost", "effective": "effective_cost", "duplicate": "duplicate_cost"}),
        "duplicate_rows": sum(s.duplicate_rows for s in slices),
        "quarantined_rows": sum(s.quarantined_rows for s in slices),
        "preview": MetadataValue.md(markdown_preview(preview)),
        "dagster/column_schema": normalized_schema(run.published_schemas(NORMALIZED, sources)),
    }


# ---- tag_enriched_costs -------------------------------------------------------------------------------------------


def build_enriched(run: LayerDay, workdir: Path) -> list[EnrichedSlice]:
    """Every source's allocated slice, rebuilt only when its normalized slice or the tag policy changed."""
    return run.each_source(
        "enriched",
        lambda s, folder: build_enriched_slice_if_stale(
            s, run.day, run.store, run.config.lake_url, run.config.tag_policy, folder, Pseudonymizer.of(run.config)
        ),
        workdir,
    )


def report_enriched(run: LayerDay, slices: list[EnrichedSlice]) -> dict[str, object]:
    """Billed and unallocated cost per currency, and which rules allocated the rows."""
    sources = [s.source for s in slices]
    money = enriched_money(run.store, run.config.lake_url, run.day, sources, run.warn)  # per currency
    preview = [
        {
            "source": s.source,
            "rows": s.rows,
            "billed": amounts_of(money, s.source, "billed"),
            "unallocated": amounts_of(money, s.source, "unallocated"),
            "rules": ", ".join(f"{k}: {v}" for k, v in s.by_rule.items()),
        }
        for s in slices
    ]
    return {
        "dagster/row_count": sum(s.rows for s in slices),
        **per_currency(money, {"billed": "billed_cost", "unallocated": "unallocated_cost"}),
        **percent_per_currency(money, "unallocated", "billed", "unallocated_percent"),
        "preview": MetadataValue.md(markdown_preview(preview)),
        "dagster/column_schema": enriched_schema(run.published_schemas(ENRICHED, sources), run.config.tag_policy),
    }


# ---- reconciliation_deltas ----------------------------------------------------------------------------------------

RECONCILIATION_PREVIEW = (
    "source",
    "BillingAccountId",
    CURRENCY,
    "normalized_total",
    "month_to_date_total",
    "invoice_amount",
    "invoice_delta",
    "status",
)
RECONCILIATION_PREVIEW_MONEY = ("normalized_total", "month_to_date_total", "invoice_amount", "invoice_delta")


def build_reconciliation(run: LayerDay, workdir: Path) -> list[pl.DataFrame]:
    """Every source's reconciliation rows against the invoices as they are now (read once for all sources)."""
    invoices = read_invoices(run.store, run.config.invoices_url, workdir)
    invoices_id = invoices_digest(run.store, run.config.invoices_url)
    return run.each_source(
        "reconciliation",
        lambda s, folder: publish_reconciliation_if_stale(
            s, run.day, run.store, run.config, invoices, invoices_id, folder
        ),
        workdir,
    )


def report_reconciliation(run: LayerDay, frames: list[pl.DataFrame]) -> dict[str, object]:
    """Verdicts by status, the worst invoice delta, and the totals and deltas per currency."""
    table = pl.concat(frames) if frames else pl.DataFrame(schema=RECONCILIATION_SCHEMA)
    statuses = dict(table.group_by("status").len().iter_rows()) if table.height else {}
    worst = table.select(pl.col("invoice_delta_relative").abs().max()).item() if table.height else None
    preview = money_rows(table.select(RECONCILIATION_PREVIEW).to_dicts(), RECONCILIATION_PREVIEW_MONEY)
    return {
        "dagster/row_count": table.height,
        "conservation_breaks": int(statuses.get("conservation_break", 0)),
        "mismatches": int(statuses.get("mismatch", 0)),
        "matched": int(statuses.get("matched", 0)),
        "max_abs_relative_invoice_delta": float(worst or 0.0),
        **reconciliation_money(table),  # per currency
        "preview": MetadataValue.md(markdown_preview(preview)),
        "dagster/column_schema": reconciliation_schema(),
    }


# ---- the four layers ----------------------------------------------------------------------------------------------

RAW_LAYER = SpineLayer(
    name=RAW,
    kinds=frozenset({"polars", "parquet"}),
    deps=(),
    build=build_raw,
    report=report_raw,
    description=(
        "The day's rows of the current (latest complete) delivery of every export source, values untouched, "
        "plus lineage columns (x_Source, x_FileUri, x_ExportVersion, x_DeliveredAt, x_IngestedAt). "
        "Unreadable files are copied to the lake's quarantine and make their delivery incomplete: the previous "
        "complete delivery is used, else the source's day is held back. A new version that is empty or much "
        "smaller than the published one waits for an operator (run tag billing/accept=<source>:<YYYY-MM>); "
        "held-back sources keep their slices and fail the publish_guard check, the others go on."
    ),
)
NORMALIZED_LAYER = SpineLayer(
    name=NORMALIZED,
    kinds=frozenset({"polars", "parquet", "pandera"}),
    deps=(RAW,),
    build=build_normalized,
    report=report_normalized,
    description=(
        "FOCUS 1.2 line items: every Mandatory column and the Conditional ones the provider fills, money as "
        "Decimal(38,18), EffectiveCost amortized by the provider's rules, provider extras as x_ columns. "
        "Deduplicated (dropped copies kept in quarantine/duplicates), rows with unparseable values in "
        "quarantine/rows, validated by the pandera FOCUS schema before publishing."
    ),
)
ENRICHED_LAYER = SpineLayer(
    name=ENRICHED,
    kinds=frozenset({"polars", "parquet"}),
    deps=(NORMALIZED,),
    build=build_enriched,
    report=report_enriched,
    description=(
        "Normalized rows allocated by the tag policy of billing.yaml: one column per dimension (owner/team, "
        "cost center, product, environment), the rule that decided each (tag:<key> or account:<id>), "
        "allocation_rule and an unallocated flag."
    ),
)
RECONCILED_LAYER = SpineLayer(
    name=RECONCILED,
    kinds=frozenset({"polars", "parquet"}),
    deps=(ENRICHED,),
    build=build_reconciliation,
    report=report_reconciliation,
    description=(
        "Per source, billing account and currency: raw, quarantined, duplicate, normalized, enriched and "
        "allocated totals for the day, the conservation delta (must be 0), and month-to-date against the "
        "provider's invoice once it exists, with absolute and relative deltas and a status."
    ),
)
SPINE_LAYERS = (RAW_LAYER, NORMALIZED_LAYER, ENRICHED_LAYER, RECONCILED_LAYER)  # in build order


def build_spine_assets(
    partitions_def: PartitionsDefinition, config: BillingConfig, parts: Sequence[DayPart] = ()
) -> list[AssetsDefinition]:
    """The four spine assets over the given daily partitions, with their checks, and the `parts` after them:
    one multi-asset that can be subset (one step per day, or per backfill; a single layer can still be
    materialized on its own)."""
    return [build_spine_asset(SPINE_LAYERS, spine_day_checks(config), partitions_def, parts)]
