"""Deterministic sample billing exports: a month of AWS CUR 2.0, legacy CUR and native FOCUS deliveries.

``generate_landing_zone`` writes the files exactly as the providers lay them out (manifests,
create-new executions / assemblies, restatements, duplicates, invoices) and returns the ground
truth the pipeline must reproduce. ``python -m billing_pipeline.tools.generator --help`` is the CLI.
"""

from billing_pipeline.tools.generator.columns import (
    CUR2_COLUMNS,
    CUR2_MAP_COLUMNS,
    FOCUS_COLUMNS,
    LEGACY_CUR_COLUMNS,
    RESOURCE_TAG_KEYS,
)
from billing_pipeline.tools.generator.landing import (
    DEFAULT_PROVIDERS,
    SOURCES,
    Delivery,
    GroundTruth,
    generate_landing_zone,
    plan_deliveries,
)
from billing_pipeline.tools.generator.writers import ATHENA_COLUMNS, CUR2_SCHEMA

__all__ = [
    "ATHENA_COLUMNS",
    "CUR2_COLUMNS",
    "CUR2_MAP_COLUMNS",
    "CUR2_SCHEMA",
    "DEFAULT_PROVIDERS",
    "FOCUS_COLUMNS",
    "LEGACY_CUR_COLUMNS",
    "RESOURCE_TAG_KEYS",
    "SOURCES",
    "Delivery",
    "GroundTruth",
    "generate_landing_zone",
    "plan_deliveries",
]
