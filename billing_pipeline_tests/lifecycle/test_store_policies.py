"""The lifecycle on the store: retention and its audit log on the moto S3 server, the same policy as S3
lifecycle rules, and the three IAM policies (rendered from billing.yaml, linted by parliament)."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import parliament
import polars as pl
import pytest

from billing_pipeline.lifecycle.__main__ import main as lifecycle_cli
from billing_pipeline.lifecycle.__main__ import render
from billing_pipeline.lifecycle.iam import iam_policies
from billing_pipeline.lifecycle.retention import RetentionRun, apply_retention
from billing_pipeline.lifecycle.s3_rules import s3_lifecycle_rules
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.storage import scratch_dir

from ..conftest import run_spine, sample_as_cur2_frame, write_config, write_data_export
from ..s3 import s3_client, upload_tree

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DAY = dt.date(2023, 11, 1)


def _s3_config(tmp_path: Path, endpoint: str, **extra) -> BillingConfig:
    client = s3_client(endpoint)
    for bucket in ("ret-landing", "ret-lake"):
        client.create_bucket(Bucket=bucket)
    local = tmp_path / "staging" / "cur2-export"
    write_data_export(local, "exec-1", {"part-1.snappy.parquet": sample_as_cur2_frame()})
    upload_tree(client, local, "ret-landing", "cur2-export")
    return load_config(
        write_config(
            tmp_path,
            [{"name": "cur2", "provider": "aws_cur2", "url": "s3://ret-landing/cur2-export"}],
            lake_url="s3://ret-lake/curated",
            invoices_url="s3://ret-landing/invoices",
            start_date="2023-11-01",
            storage_options={"endpoint_url": endpoint},
            **extra,
        )
    )


def test_retention_on_s3_deletes_partitions_and_appends_an_encrypted_audit_file(
    tmp_path: Path, s3_endpoint: str
) -> None:
    config = _s3_config(tmp_path, s3_endpoint, lake_encryption={"kms_key_id": KEY_ARN}, retention={"curated": "1 day"})
    run_spine(config, DAY)
    client = s3_client(s3_endpoint)

    def sizes() -> dict[str, int]:
        listed = client.list_objects_v2(Bucket="ret-lake", Prefix="curated/").get("Contents", [])
        return {o["Key"]: o["Size"] for o in listed}

    before = sizes()
    run = RetentionRun(who="jane", run_id="run-1", dry_run=False, at=dt.datetime(2027, 1, 10, tzinfo=dt.UTC))
    with scratch_dir() as workdir:
        result = apply_retention(config, config.store(), run, workdir)
    after = sizes()
    # curated (1 day) and raw (36 months) of 2023-11 are gone, whole partitions; nothing else was touched
    gone = set(before) - set(after)
    assert gone and all(
        "/raw_line_items/" in k
        or "/normalized_line_items/" in k
        or "/tag_enriched_costs/" in k
        or "/reconciliation_deltas/" in k
        for k in gone
    )
    assert result.audit["bytes"].sum() == sum(before[k] for k in gone)
    audit_keys = [k for k in after if k.startswith("curated/audit_log/date=2027-01-10/action=retention_delete/run-1-")]
    assert len(audit_keys) == 1
    head = client.head_object(Bucket="ret-lake", Key=audit_keys[0])
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KEY_ARN)
    audit = pl.read_parquet(io.BytesIO(client.get_object(Bucket="ret-lake", Key=audit_keys[0])["Body"].read()))
    assert audit["files"].sum() == len(gone)
    assert set(audit["who"]) == {"jane"} and not audit["dry_run"].any()


def test_s3_lifecycle_rules_are_accepted_by_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    config = _s3_config(tmp_path, s3_endpoint, retention={"quarantine": "90 days"})
    rules = s3_lifecycle_rules(config)
    client = s3_client(s3_endpoint)
    client.put_bucket_lifecycle_configuration(Bucket="ret-lake", LifecycleConfiguration=rules)
    stored = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket="ret-lake")["Rules"]}
    assert stored["billing-curated-normalized_line_items"]["Expiration"]["Days"] == 84 * 31
    assert stored["billing-curated-normalized_line_items"]["Filter"]["Prefix"] == "curated/normalized_line_items/"
    assert stored["billing-quarantine-quarantine-files"]["Expiration"]["Days"] == 90  # longer than the 2 open months
    assert stored["billing-state-state-fingerprints"]["Filter"]["Prefix"] == "curated/_state/fingerprints/"
    assert not [r for r in stored.values() if "audit_log" in r["Filter"].get("Prefix", "")]
    assert "billing-abort-incomplete-uploads" in stored


def test_a_short_age_never_expires_an_open_billing_period(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "a", "provider": "aws_cur2", "url": "x", "lookback_months": 3}],
            lake_url="s3://b/lake",
            retention={"raw": "1 days"},
        )
    )
    raw = next(r for r in s3_lifecycle_rules(config)["Rules"] if r["ID"] == "billing-raw-raw_line_items")
    assert raw["Expiration"]["Days"] == 3 * 31


def _findings(policy: dict) -> list[str]:
    analyzed = parliament.analyze_policy_string(json.dumps(policy))
    return [f"{f.issue}: {f.detail}" for f in analyzed.findings]


def test_deploy_iam_policies_are_rendered_from_the_example_and_lint_clean(tmp_path: Path) -> None:
    config = load_config(DEPLOY / "billing.s3.yaml")
    for name, policy in iam_policies(config).items():
        assert (DEPLOY / "iam" / name).read_text() == render(policy), f"re-render deploy/iam/{name}"
        assert _findings(policy) == [], name
    assert (DEPLOY / "iam" / "s3-lifecycle.json").read_text() == render(s3_lifecycle_rules(config))


def test_iam_policies_with_a_kms_key_lint_clean_and_stay_least_privilege(tmp_path: Path) -> None:
    document = (DEPLOY / "billing.s3.yaml").read_text() + f"lake_encryption:\n  kms_key_id: {KEY_ARN}\n"
    (tmp_path / "billing.yaml").write_text(document)
    policies = iam_policies(load_config(tmp_path / "billing.yaml"))
    for name, policy in policies.items():
        assert _findings(policy) == [], name
    text = {name: json.dumps(policy) for name, policy in policies.items()}
    assert "acme-billing-lake" not in text["export-reader.json"] and "kms:" not in text["export-reader.json"]
    assert (
        "acme-billing-landing" not in text["pipeline-writer.json"]
        and "kms:GenerateDataKey" in text["pipeline-writer.json"]
    )
    analyst = text["analyst.json"]
    assert "s3:PutObject" not in analyst and "s3:DeleteObject" not in analyst
    for hidden in ("raw_line_items", "quarantine", "_state", "audit_log"):
        assert hidden not in analyst
    assert "kms:Decrypt" in analyst and "kms:GenerateDataKey" not in analyst


def test_iam_needs_a_key_arn(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "a", "provider": "aws_cur2", "url": "s3://l/x"}],
            lake_url="s3://b/lake",
            lake_encryption={"kms_key_id": "alias/billing"},
        )
    )
    with pytest.raises(ValueError, match="key ARN"):
        iam_policies(config)


def test_the_cli_writes_the_policies_and_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lifecycle_cli(["iam", str(DEPLOY / "billing.s3.yaml"), "--out", str(tmp_path / "iam")]) == 0
    assert sorted(p.name for p in (tmp_path / "iam").iterdir()) == [
        "analyst.json",
        "export-reader.json",
        "pipeline-writer.json",
    ]
    assert lifecycle_cli(["s3-lifecycle", str(DEPLOY / "billing.s3.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["Rules"]


def test_with_a_raw_lake_the_writer_writes_both_and_the_analyst_reads_neither_raw_nor_quarantine() -> None:
    config = load_config(DEPLOY / "billing.s3.yaml")
    assert (config.lake_url, config.raw_lake) == ("s3://acme-billing-lake/curated", "s3://acme-billing-raw/raw")
    policies = {name: json.dumps(policy) for name, policy in iam_policies(config).items()}
    writer, analyst = policies["pipeline-writer.json"], policies["analyst.json"]
    assert "arn:aws:s3:::acme-billing-raw/raw/*" in writer and "arn:aws:s3:::acme-billing-lake/curated/*" in writer
    assert "acme-billing-raw" not in analyst and "acme-billing-raw" not in policies["export-reader.json"]
    raw_rules = s3_lifecycle_rules(config, "acme-billing-raw")
    assert (DEPLOY / "iam" / "s3-lifecycle.raw.json").read_text() == render(raw_rules)
    prefixes = {r["ID"]: r["Filter"]["Prefix"] for r in raw_rules["Rules"]}
    assert prefixes["billing-raw-raw_line_items"] == "raw/raw_line_items/"
    assert prefixes["billing-quarantine-quarantine-files"] == "raw/quarantine/files/"
    assert not [p for p in prefixes.values() if "normalized" in p or "_state" in p]
    lake_prefixes = [r["Filter"]["Prefix"] for r in s3_lifecycle_rules(config)["Rules"]]
    assert "curated/normalized_line_items/" in lake_prefixes
    assert not [p for p in lake_prefixes if "raw_line_items" in p or "quarantine" in p]


def test_retention_on_s3_with_a_raw_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    s3_client(s3_endpoint).create_bucket(Bucket="ret-raw")
    config = _s3_config(tmp_path, s3_endpoint, raw_lake_url="s3://ret-raw/delivered", retention={"raw": "1 day"})
    run_spine(config, DAY)
    client = s3_client(s3_endpoint)
    raw_keys = [o["Key"] for o in client.list_objects_v2(Bucket="ret-raw").get("Contents", [])]
    assert any(k.startswith("delivered/raw_line_items/date=2023-11-01/") for k in raw_keys)
    run = RetentionRun(who="jane", run_id="run-raw", dry_run=False, at=dt.datetime(2027, 1, 10, tzinfo=dt.UTC))
    with scratch_dir() as workdir:
        result = apply_retention(config, config.store(), run, workdir)
    after = [o["Key"] for o in client.list_objects_v2(Bucket="ret-raw").get("Contents", [])]
    assert not [k for k in after if "/raw_line_items/" in k]
    assert set(result.audit["table"]) >= {"raw_line_items"} and result.audit_url.startswith(
        "s3://ret-lake/curated/audit_log/"
    )
