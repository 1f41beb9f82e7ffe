"""An SLI's result as a Dagster check result: shared by the SLI checks (`checks.py`) and the freshness
sensor (`alert_sensors.py`), which reports the evaluation of a day that never arrived."""

from __future__ import annotations

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
)

from billing_pipeline.observability.check_metadata import ROUTE_KEY, SLO_NAME_KEY, SUMMARY_KEY
from billing_pipeline.observability.slis import SliResult


def to_check_result(
    result: SliResult, slo_name: str, asset_key: AssetKey | None = None, check_name: str | None = None
) -> AssetCheckResult:
    """Stable metadata: `sli/<name>` (float), `sli/<name>/<source>`, `slo/<name>`, route and summary.

    `asset_key` and `check_name` name the check when one step evaluates several (the spine's multi-asset)."""
    metadata: dict[str, object] = {
        result.metadata_key: float(result.value),
        f"slo/{result.name}": float(result.target.target),
        ROUTE_KEY: result.target.route,
        SLO_NAME_KEY: slo_name,
        SUMMARY_KEY: result.summary,
    }
    for source, value in sorted(result.per_source.items()):
        metadata[f"{result.metadata_key}/{source}"] = float(value)
    for key, value in result.extra.items():
        if key == "anomalies":
            metadata[key] = MetadataValue.md(str(value))
        elif isinstance(value, (int, float)) and key.startswith("sli/"):
            metadata[key] = float(value)
        else:
            metadata[key] = value if isinstance(value, (int, float)) else str(value)
    severity = AssetCheckSeverity(result.severity or result.target.severity)
    return AssetCheckResult(
        passed=bool(result.passed),
        severity=severity,
        metadata=metadata,
        description=result.summary,
        asset_key=asset_key,
        check_name=check_name,
    )


def without_step_output(
    context: AssetExecutionContext | AssetCheckExecutionContext, result: AssetCheckResult
) -> AssetCheckResult | AssetCheckEvaluation:
    """The evaluation Dagster would record for `result` (its partition, target materialization, severity),
    yielded without the `STEP_OUTPUT` event a check result also writes: one SQLite commit less per check.

    Only for a non-blocking check of a step that can be subset (its output is optional): a blocking check's
    output is an input of the steps below its asset, so its result is returned as it is."""
    evaluation = result.to_asset_check_evaluation(context.get_step_execution_context())
    return result if evaluation.blocking else evaluation
