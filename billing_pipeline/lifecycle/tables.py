"""Which lake folders hold which table family, for retention, lifecycle rules and IAM.

Every table is a folder of hive partitions (`date=D/source=S`, `source=S/period=P`, `source=S/version=V`,
or `date=D` alone); a partition is the run of `key=value` folders before the file name.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing_pipeline.platform.lifecycle_config import TableFamily
from billing_pipeline.platform.names import COST_ANOMALIES, ENRICHED, NORMALIZED, RAW, RECONCILED, SLO_BUDGETS

AUDIT_LOG = "audit_log"  # append-only; never expired by retention


@dataclass(frozen=True)
class LakeTable:
    family: TableFamily
    relative: str  # folder under the lake URL


LAKE_TABLES: tuple[LakeTable, ...] = (
    LakeTable("raw", RAW),
    LakeTable("curated", NORMALIZED),
    LakeTable("curated", ENRICHED),
    LakeTable("curated", RECONCILED),
    LakeTable("reports", COST_ANOMALIES),
    LakeTable("reports", SLO_BUDGETS),
    LakeTable("quarantine", "quarantine/records"),
    LakeTable("quarantine", "quarantine/rows"),
    LakeTable("quarantine", "quarantine/duplicates"),
    LakeTable("quarantine", "quarantine/bad_dates"),
    LakeTable("quarantine", "quarantine/files"),
    LakeTable("state", "_state/fingerprints"),
    LakeTable("state", "_state/deliveries"),
)

QUARANTINE_RECORDS = "quarantine/records"


def tables_of(family: TableFamily) -> list[str]:
    """The folders of one family, in the order above."""
    return [table.relative for table in LAKE_TABLES if table.family == family]
