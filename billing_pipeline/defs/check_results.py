"""An SLI's result as a Dagster check result: shared by the SLI checks (`checks.py`) and the freshness
sensor (`alert_sensors.py`), which reports the evaluation of a day that never arrived."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    MaterializeResult,
    MetadataValue,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
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


class DayRecorder:
    """How a step of daily assets records what it built and checked for one day.

    A run of one day records them as Dagster does by default: a materialization as the step's output, a
    blocking check's result as its output; a non-blocking check's as the evaluation Dagster would record
    for it (partition, target materialization, severity) without the `STEP_OUTPUT` event a check result
    also writes (one SQLite commit less per check; its output is optional in a step that can be subset).
    A ranged run (a backfill of many days in one run: `BackfillPolicy.single_run`) records every day's
    materializations and evaluations as events of that day's partition and none as an output, so that each
    day keeps its own metadata and a day that fails is left without a materialization (failed in the
    backfill) while the days before and after it keep theirs.

    An evaluation names the materialization it judged (its asset's latest of the day), looked up once per
    asset and day rather than once per check: a day of the demo has 32 evaluations over six assets."""

    def __init__(self, context: AssetExecutionContext) -> None:
        self.context = context
        self.ranged = not context.has_partition_key
        self._step = context.get_step_execution_context()
        self._targets: dict[tuple[AssetKey, str], AssetCheckEvaluationTargetMaterializationData | None] = {}

    def materialized(
        self, key: AssetKey, day: dt.date, metadata: Mapping[str, Any]
    ) -> MaterializeResult | AssetMaterialization:
        self._targets.pop((key, day.isoformat()), None)  # a check after this judges the new materialization
        if self.ranged:
            return AssetMaterialization(asset_key=key, partition=day.isoformat(), metadata=dict(metadata))
        return MaterializeResult(asset_key=key, metadata=dict(metadata))

    def checked(self, result: AssetCheckResult, day: dt.date) -> AssetCheckResult | AssetCheckEvaluation:
        if result.asset_key is None or result.check_name is None:  # every check of these steps names both
            raise ValueError(f"a check result of a daily step must name its asset and check: {result}")
        check_key = AssetCheckKey(result.asset_key, result.check_name)
        assets_def = self._step.job_def.asset_layer.get_assets_def_for_node(node_handle=self._step.node_handle)
        if assets_def is None:
            raise ValueError(f"no assets definition for step {self._step.step.key}")
        blocking = assets_def.get_spec_for_check_key(check_key).blocking
        if blocking and not self.ranged:
            return result  # its output is how Dagster stops what is below it in a one-day run
        partition = day.isoformat()
        target_key = (check_key.asset_key, partition)
        if target_key not in self._targets:
            self._targets[target_key] = result._get_partitioned_target_materialization_data(  # noqa: SLF001
                self._step, check_key.asset_key, partition
            )
        return AssetCheckEvaluation(
            check_name=check_key.name,
            asset_key=check_key.asset_key,
            passed=result.passed,
            metadata=result.metadata,
            target_materialization_data=self._targets[target_key],
            severity=result.severity,
            description=result.description,
            blocking=blocking,
            partition=partition,
        )
