"""Least-privilege IAM policies for the three roles, with resource ARNs taken from `billing.yaml`.

- export reader: lists and reads the landing prefixes (`sources[].url`, `invoices_url`), nothing else;
- pipeline writer: lists, reads, writes and deletes under `lake_url` and `raw_lake_url` only;
- analyst: lists and reads the curated tables (normalized, tag-enriched, reconciliation) under `lake_url`,
  not raw or quarantine (under `raw_lake_url`, clear identifiers), state or the audit log.

With `lake_encryption.kms_key_id` (a key ARN) the writer may generate data keys and decrypt with that
key, the analyst may decrypt with it. `python -m billing_pipeline.lifecycle iam billing.yaml --out deploy/iam`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from billing_pipeline.lifecycle.s3_rules import s3_location
from billing_pipeline.lifecycle.tables import tables_of
from billing_pipeline.platform.config import BillingConfig

VERSION = "2012-10-17"
WRITE_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
ROLE_FILES = {
    "export_reader": "export-reader.json",
    "pipeline_writer": "pipeline-writer.json",
    "analyst": "analyst.json",
}


def _by_bucket(urls: list[str]) -> dict[str, list[str]]:
    """s3:// URLs grouped by bucket, as sorted unique prefixes (other stores are not IAM's business)."""
    grouped: dict[str, set[str]] = defaultdict(set)
    for url in urls:
        if url.startswith(("s3://", "s3a://")):
            bucket, prefix = s3_location(url)
            grouped[bucket].add(prefix)
    return {bucket: sorted(prefixes) for bucket, prefixes in sorted(grouped.items())}


def _objects(bucket: str, prefix: str) -> str:
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def _statements(sid: str, locations: dict[str, list[str]], object_actions: list[str]) -> list[dict[str, Any]]:
    """Per bucket: ListBucket limited to the prefixes, and the object actions on the objects under them."""
    statements: list[dict[str, Any]] = []
    for index, (bucket, prefixes) in enumerate(locations.items()):
        listed = sorted({p for prefix in prefixes if prefix for p in (prefix, f"{prefix}/*")})
        listing: dict[str, Any] = {
            "Sid": f"{sid}List{index}",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
        }
        if listed and "" not in prefixes:
            listing["Condition"] = {"StringLike": {"s3:prefix": listed}}
        statements.append(listing)
        statements.append(
            {
                "Sid": f"{sid}Objects{index}",
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": [_objects(bucket, prefix) for prefix in prefixes],
            }
        )
    return statements


def _kms(config: BillingConfig, actions: list[str], sid: str) -> list[dict[str, Any]]:
    key = config.lake_encryption.kms_key_id
    if key is None or not config.lake_url.startswith(("s3://", "s3a://")):
        return []
    if not key.startswith("arn:aws:kms:"):
        raise ValueError(f"IAM policies need lake_encryption.kms_key_id as a key ARN (arn:aws:kms:...), got {key!r}")
    return [{"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": [key]}]


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": statements}


def export_reader_policy(config: BillingConfig) -> dict[str, Any]:
    landing = _by_bucket([source.url for source in config.sources] + [config.invoices_url])
    return _document(_statements("ReadLanding", landing, ["s3:GetObject"]))


def pipeline_writer_policy(config: BillingConfig) -> dict[str, Any]:
    lake = _by_bucket([config.lake_url, config.raw_lake])
    kms = _kms(config, ["kms:GenerateDataKey", "kms:Decrypt"], "EncryptLake")
    return _document(_statements("WriteLake", lake, WRITE_ACTIONS) + kms)


def analyst_policy(config: BillingConfig) -> dict[str, Any]:
    bucket, prefix = s3_location(config.lake_url)
    curated = {bucket: [f"{prefix}/{table}" if prefix else table for table in tables_of("curated")]}
    return _document(_statements("ReadCurated", curated, ["s3:GetObject"]) + _kms(config, ["kms:Decrypt"], "Decrypt"))


def iam_policies(config: BillingConfig) -> dict[str, dict[str, Any]]:
    """File name -> policy document, for the three roles."""
    return {
        ROLE_FILES["export_reader"]: export_reader_policy(config),
        ROLE_FILES["pipeline_writer"]: pipeline_writer_policy(config),
        ROLE_FILES["analyst"]: analyst_policy(config),
    }
