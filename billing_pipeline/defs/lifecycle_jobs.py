"""The Dagster shell of the data lifecycle: the `lake_retention` job (dry run unless told otherwise).

Launch it from the Launchpad, or from the shell to really delete:
`dagster job launch -w workspace.yaml -j lake_retention --config-json
'{"ops": {"lake_retention_pass": {"config": {"dry_run": false, "requested_by": "jane"}}}}'`.
"""

import getpass

import polars as pl
from dagster import Config, JobDefinition, MetadataValue, OpExecutionContext, Output, in_process_executor, job, op

from billing_pipeline.lifecycle.retention import EXPIRED, RetentionRun, apply_retention
from billing_pipeline.platform.lake import refresh_views
from billing_pipeline.platform.storage import scratch_dir
from resources import BillingResource

RETENTION_JOB = "lake_retention"


class RetentionRunConfig(Config):
    """Run config of `lake_retention`: nothing is deleted unless `dry_run` is false."""

    dry_run: bool = True
    requested_by: str = ""  # who asks (default: the run's `dagster/user` tag, else the process user)


def _summary(plan: pl.DataFrame) -> str:
    """Per table and decision: partitions and bytes, as a Markdown table for the run's metadata."""
    rows = (
        plan.group_by("table", "decision")
        .agg(partitions=pl.len(), bytes=pl.col("bytes").sum())
        .sort("table", "decision")
        .select(pl.format("| {} | {} | {} | {} |", "table", "decision", "partitions", "bytes"))
        .to_series()
        .to_list()
    )
    return "\n".join(["| table | decision | partitions | bytes |", "|---|---|---|---|", *rows])


@op(description="Deletes (or, in a dry run, lists) lake partitions past retention; appends each to audit_log.")
def lake_retention_pass(context: OpExecutionContext, config: RetentionRunConfig, billing: BillingResource) -> Output:
    who = config.requested_by or context.run.tags.get("dagster/user") or getpass.getuser()
    settings = billing.config
    store = billing.store()
    with scratch_dir() as workdir:
        result = apply_retention(
            settings, store, RetentionRun(who=who, run_id=context.run_id, dry_run=config.dry_run), workdir
        )
    if not config.dry_run:
        refresh_views(settings.lake_url, settings.duckdb_file, store)
    expired = result.plan.filter(pl.col("decision") == EXPIRED)
    return Output(
        result.deleted_partitions,
        metadata={
            "dry_run": config.dry_run,
            "requested_by": who,
            "partitions_deleted" if not config.dry_run else "partitions_to_delete": result.deleted_partitions,
            "bytes": int(expired["bytes"].sum()),
            "audit_log_file": result.audit_url or "",
            "decisions": MetadataValue.md(_summary(result.plan)),
        },
    )


def build_retention_job() -> JobDefinition:
    """`lake_retention`: one op, in process (deletions are a handful of listing and delete calls)."""

    @job(
        name=RETENTION_JOB,
        executor_def=in_process_executor,
        description="Applies billing.yaml `retention:` to the lake; a dry run unless `dry_run: false`.",
        tags={"billing/kind": "lifecycle"},
    )
    def lake_retention() -> None:
        lake_retention_pass()

    return lake_retention
