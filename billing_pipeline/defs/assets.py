"""The daily billing spine as Dagster assets. Thin: each asset loops over sources, calls the slice
builder for its layer, refreshes the DuckDB views, and reports what it did as metadata."""

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

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
    slice_schemas,
)
from billing_pipeline.platform.config import BillingConfig, SourceConfig
from billing_pipeline.platform.lake import refresh_views, slice_url
from billing_pipeline.platform.storage import scratch_dir
from billing_pipeline.spine.enrich import build_enriched_slice_if_stale
from billing_pipeline.spine.guard import DeliveryIncompleteError, PublishGuard
from billing_pipeline.spine.layer_state import is_reused, record_layer_outcome
from billing_pipeline.spine.normalize import build_normalized_slice_if_stale
from billing_pipeline.spine.raw import build_raw_slice_if_changed
from billing_pipeline.spine.reconcile import (
    RECONCILIATION_SCHEMA,
    invoices_digest,
    publish_reconciliation_if_stale,
    read_invoices,
)
from resources import BillingResource

T = TypeVar("T")
GROUP = "billing_spine"
OWNERS = ["team:finops-platform"]


def _markdown(rows: Sequence[dict[str, object]]) -> str:
    """A preview table; its cells (versions, account ids) are delivered text, escaped for Markdown."""
    from billing_pipeline.platform.escaping import markdown_table

    return markdown_table(rows, empty="_no export delivered for this day_")


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


def _day(context: AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _each_source(
    context: AssetExecutionContext, billing: BillingResource, layer: str, build: Callable[[SourceConfig], T]
) -> list[T]:
    """`build` for every source; one source's failure is logged and recorded (the `source_failures`
    check fails naming it) and never stops the other sources (invariant 6)."""
    config, store, day = billing.config, billing.store(), _day(context)
    built = []
    for source in config.sources:
        try:
            built.append(build(source))
        except Exception as error:  # noqa: BLE001 - this source only; its previous slices stay
            context.log.error(f"source {source.name!r}, {day}, {layer}: {type(error).__name__}: {error}")
            record_layer_outcome(store, config.lake_url, source.name, day, layer, error)
            continue
        record_layer_outcome(store, config.lake_url, source.name, day, layer, None)
    return built


def _refresh(config: BillingConfig, billing: BillingResource, context: AssetExecutionContext | None = None) -> None:
    """Refresh the DuckDB views; a convenience for analysts, so a failure is a warning, not a failed day."""
    try:
        refresh_views(config.lake_url, config.duckdb_file, billing.store())
    except Exception as error:  # noqa: BLE001 - e.g. one damaged slice in the lake: the layers are still built
        message = f"DuckDB views not refreshed: {type(error).__name__}: {error}"
        if context is not None:
            context.log.warning(message)


def build_spine_assets(partitions_def: PartitionsDefinition) -> list[AssetsDefinition]:
    """The four spine assets over the given daily partitions."""

    @asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        description=(
            "The day's rows of the current (latest complete) delivery of every export source, values untouched, "
            "plus lineage columns (x_Source, x_FileUri, x_ExportVersion, x_DeliveredAt, x_IngestedAt). "
            "Unreadable files are copied to the lake's quarantine and make their delivery incomplete: the previous "
            "complete delivery is used, else the source's day is held back. A new version that is empty or much "
            "smaller than the published one waits for an operator (run tag billing/accept=<source>:<YYYY-MM>); "
            "held-back sources keep their slices and fail the publish_guard check, the others go on."
        ),
    )
    def raw_line_items(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config = billing.config
        store = billing.store()
        day = _day(context)
        slices, held_back = [], {}
        accepted = accepted_from_tags(context.run.tags)
        with scratch_dir() as workdir:
            for source in config.sources:
                period = day.strftime("%Y-%m")
                by_tag = accepted.get((source.name, period))
                guard = PublishGuard(
                    config.publish_guard.max_shrink_fraction,
                    by_tag or config.publish_guard.accepted_by(source.name, period),
                )
                via = f"run tag {ACCEPT_TAG} of run {context.run_id}" if by_tag else "billing.yaml publish_guard.accept"
                try:
                    slices.append(
                        build_raw_slice_if_changed(
                            source, day, store, config.lake_url, workdir, guard=guard, accepted_via=via
                        )
                    )
                except DeliveryIncompleteError as error:  # this source only: the others go on (invariant 6)
                    context.log.error(str(error))
                    held_back[source.name] = str(error)
        for result in slices:
            for problem in result.problems:
                context.log.warning(problem.describe(result.source))
        _refresh(config, billing, context)
        rows = sum(s.rows for s in slices)
        return MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "held_back_sources": len(held_back),
                "held_back": MetadataValue.json(held_back),
                "files_read": sum(s.files_read for s in slices),
                "quarantined_files": sum(s.quarantined_files for s in slices),
                "bad_date_rows": sum(s.bad_date_rows for s in slices),
                "problems": len([p for s in slices for p in s.problems]),
                "export_latency_hours": max(
                    (
                        (dt.datetime.now(dt.UTC) - s.delivered_at).total_seconds() / 3600
                        for s in slices
                        if s.delivered_at
                    ),
                    default=0.0,
                ),
                "preview": MetadataValue.md(
                    _markdown(
                        [
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
                    )
                ),
                "delivery_fingerprints": MetadataValue.json({s.source: s.fingerprint for s in slices}),
                "slices_rewritten": sum(1 for s in slices if not is_reused(s)),
                "slices_reused": sum(1 for s in slices if is_reused(s)),
                "dagster/column_schema": raw_schema(
                    slice_schemas(
                        store,
                        {s.source: slice_url(config.lake_url, "raw_line_items", day, s.source) for s in slices},
                        context.log.warning,
                    ),
                    {s.name: s.provider for s in config.sources},
                ),
            }
        )

    @asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"polars", "parquet", "pandera"},
        owners=OWNERS,
        deps=[raw_line_items],
        description=(
            "FOCUS 1.2 line items: every Mandatory column and the Conditional ones the provider fills, money as "
            "Decimal(38,18), EffectiveCost amortized by the provider's rules, provider extras as x_ columns. "
            "Deduplicated (dropped copies kept in quarantine/duplicates), rows with unparseable values in "
            "quarantine/rows, validated by the pandera FOCUS schema before publishing."
        ),
    )
    def normalized_line_items(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config = billing.config
        store = billing.store()
        day = _day(context)
        with scratch_dir() as workdir:
            slices = _each_source(
                context,
                billing,
                "normalized",
                lambda s: build_normalized_slice_if_stale(s, day, store, config.lake_url, workdir),
            )
        _refresh(config, billing, context)
        for result in slices:
            for reason, count in result.reasons.items():
                context.log.warning(f"source {result.source!r}, {day}: {count} rows quarantined: {reason}")
        money = normalized_money(
            store,
            config.lake_url,
            day,
            [s.source for s in slices],  # per currency
            context.log.warning,
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": sum(s.rows for s in slices),
                "raw_rows": sum(s.raw_rows for s in slices),
                **per_currency(
                    money, {"billed": "billed_cost", "effective": "effective_cost", "duplicate": "duplicate_cost"}
                ),
                "duplicate_rows": sum(s.duplicate_rows for s in slices),
                "quarantined_rows": sum(s.quarantined_rows for s in slices),
                "preview": MetadataValue.md(
                    _markdown(
                        [
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
                    )
                ),
                "dagster/column_schema": normalized_schema(
                    slice_schemas(
                        store,
                        {s.source: slice_url(config.lake_url, "normalized_line_items", day, s.source) for s in slices},
                        context.log.warning,
                    )
                ),
            }
        )

    @asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[normalized_line_items],
        description=(
            "Normalized rows allocated by the tag policy of billing.yaml: one column per dimension (owner/team, "
            "cost center, product, environment), the rule that decided each (tag:<key> or account:<id>), "
            "allocation_rule and an unallocated flag."
        ),
    )
    def tag_enriched_costs(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config = billing.config
        store = billing.store()
        day = _day(context)
        with scratch_dir() as workdir:
            slices = _each_source(
                context,
                billing,
                "enriched",
                lambda s: build_enriched_slice_if_stale(s, day, store, config.lake_url, config.tag_policy, workdir),
            )
        _refresh(config, billing, context)
        money = enriched_money(
            store,
            config.lake_url,
            day,
            [s.source for s in slices],  # per currency
            context.log.warning,
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": sum(s.rows for s in slices),
                **per_currency(money, {"billed": "billed_cost", "unallocated": "unallocated_cost"}),
                **percent_per_currency(money, "unallocated", "billed", "unallocated_percent"),
                "preview": MetadataValue.md(
                    _markdown(
                        [
                            {
                                "source": s.source,
                                "rows": s.rows,
                                "billed": amounts_of(money, s.source, "billed"),
                                "unallocated": amounts_of(money, s.source, "unallocated"),
                                "rules": ", ".join(f"{k}: {v}" for k, v in s.by_rule.items()),
                            }
                            for s in slices
                        ]
                    )
                ),
                "dagster/column_schema": enriched_schema(
                    slice_schemas(
                        store,
                        {s.source: slice_url(config.lake_url, "tag_enriched_costs", day, s.source) for s in slices},
                        context.log.warning,
                    ),
                    config.tag_policy,
                ),
            }
        )

    @asset(
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"polars", "parquet"},
        owners=OWNERS,
        deps=[tag_enriched_costs],
        description=(
            "Per source, billing account and currency: raw, quarantined, duplicate, normalized, enriched and "
            "allocated totals for the day, the conservation delta (must be 0), and month-to-date against the "
            "provider's invoice once it exists, with absolute and relative deltas and a status."
        ),
    )
    def reconciliation_deltas(context: AssetExecutionContext, billing: BillingResource) -> MaterializeResult:
        config = billing.config
        store = billing.store()
        day = _day(context)
        with scratch_dir() as workdir:
            invoices = read_invoices(store, config.invoices_url, workdir)
            invoices_id = invoices_digest(store, config.invoices_url)
            frames = _each_source(
                context,
                billing,
                "reconciliation",
                lambda s: publish_reconciliation_if_stale(s, day, store, config, invoices, invoices_id, workdir),
            )
        _refresh(config, billing, context)
        table = pl.concat(frames) if frames else pl.DataFrame(schema=RECONCILIATION_SCHEMA)
        statuses = dict(table.group_by("status").len().iter_rows()) if table.height else {}
        worst = table.select(pl.col("invoice_delta_relative").abs().max()).item() if table.height else None
        return MaterializeResult(
            metadata={
                "dagster/row_count": table.height,
                "conservation_breaks": int(statuses.get("conservation_break", 0)),
                "mismatches": int(statuses.get("mismatch", 0)),
                "matched": int(statuses.get("matched", 0)),
                "max_abs_relative_invoice_delta": float(worst or 0.0),
                **reconciliation_money(table),  # per currency
                "preview": MetadataValue.md(
                    _markdown(
                        money_rows(
                            table.select(
                                "source",
                                "BillingAccountId",
                                CURRENCY,
                                "normalized_total",
                                "month_to_date_total",
                                "invoice_amount",
                                "invoice_delta",
                                "status",
                            ).to_dicts(),
                            ("normalized_total", "month_to_date_total", "invoice_amount", "invoice_delta"),
                        )
                    )
                ),
                "dagster/column_schema": reconciliation_schema(),
            }
        )

    return [raw_line_items, normalized_line_items, tag_enriched_costs, reconciliation_deltas]


SPINE_ASSET_NAMES = ("raw_line_items", "normalized_line_items", "tag_enriched_costs", "reconciliation_deltas")
