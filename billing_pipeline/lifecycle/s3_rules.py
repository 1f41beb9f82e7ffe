"""The retention policy as S3 lifecycle rules, for users who prefer the store to expire objects.

`python -m billing_pipeline.lifecycle s3-lifecycle billing.yaml > rules.json`, then
`aws s3api put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration file://rules.json`.

S3 counts an object's age from its last write, not from the day its partition holds, and cannot see
quarantine records: each rule keeps objects at least the family's age and at least the longest
`lookback_months` (so no object of an open billing period expires), but a partition an unresolved
quarantine record refers to is only protected by the `lake_retention` job. The audit log never expires.
"""

from __future__ import annotations

from typing import Any

from billing_pipeline.lifecycle.tables import LAKE_TABLES
from billing_pipeline.platform.config import BillingConfig

MONTH_DAYS = 31
INCOMPLETE_UPLOAD_DAYS = 7


def s3_location(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not url.startswith(("s3://", "s3a://")):
        raise ValueError(f"{url} is not an s3:// location")
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    return bucket, prefix.strip("/")


def _object_prefix(lake_prefix: str, table: str) -> str:
    return f"{lake_prefix}/{table}/" if lake_prefix else f"{table}/"


def s3_lifecycle_rules(config: BillingConfig) -> dict[str, Any]:
    """`{"Rules": [...]}`: one expiration rule per retention table of an s3:// lake, plus aborting stale uploads."""
    _, prefix = s3_location(config.lake_url)
    open_days = max(source.lookback_months for source in config.sources) * MONTH_DAYS
    rules: list[dict[str, Any]] = [
        {
            "ID": f"billing-{table.family}-{table.relative.replace('/', '-').strip('_')}",
            "Filter": {"Prefix": _object_prefix(prefix, table.relative)},
            "Status": "Enabled",
            "Expiration": {"Days": max(config.retention.age(table.family).in_days(), open_days)},
        }
        for table in LAKE_TABLES
    ]
    rules.append(
        {
            "ID": "billing-abort-incomplete-uploads",
            "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": INCOMPLETE_UPLOAD_DAYS},
        }
    )
    return {"Rules": rules}
