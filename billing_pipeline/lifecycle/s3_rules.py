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
from billing_pipeline.platform.lake import table_root

MONTH_DAYS = 31
INCOMPLETE_UPLOAD_DAYS = 7


def s3_location(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not url.startswith(("s3://", "s3a://")):
        raise ValueError(f"{url} is not an s3:// location")
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    return bucket, prefix.strip("/")


def lake_buckets(config: BillingConfig) -> list[str]:
    """The buckets of the lake and the raw lake (one, or two when `raw_lake_url` is in another bucket)."""
    return sorted({s3_location(config.lake_url)[0], s3_location(config.raw_lake)[0]})


def s3_lifecycle_rules(config: BillingConfig, bucket: str | None = None) -> dict[str, Any]:
    """`{"Rules": [...]}` for one bucket (default: the lake's): one expiration rule per retention table that
    lives in it (raw and quarantine under `raw_lake_url`, the rest under `lake_url`), plus aborting stale uploads."""
    bucket = bucket or s3_location(config.lake_url)[0]
    open_days = max(source.lookback_months for source in config.sources) * MONTH_DAYS
    rules: list[dict[str, Any]] = []
    for table in LAKE_TABLES:
        table_bucket, table_prefix = s3_location(table_root(config.lake_url, table.relative))
        if table_bucket != bucket:
            continue
        rules.append(
            {
                "ID": f"billing-{table.family}-{table.relative.replace('/', '-').strip('_')}",
                "Filter": {"Prefix": table_prefix + "/"},
                "Status": "Enabled",
                "Expiration": {"Days": max(config.retention.age(table.family).in_days(), open_days)},
            }
        )
    prefixes = {s3_location(url)[1] for url in (config.lake_url, config.raw_lake) if s3_location(url)[0] == bucket}
    prefix = prefixes.pop() if len(prefixes) == 1 else ""
    rules.append(
        {
            "ID": "billing-abort-incomplete-uploads",
            "Filter": {"Prefix": f"{prefix}/" if prefix else ""},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": INCOMPLETE_UPLOAD_DAYS},
        }
    )
    return {"Rules": rules}
