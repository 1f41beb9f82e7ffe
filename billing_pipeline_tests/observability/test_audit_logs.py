"""M10 from the object store's audit trail: S3 server access logs and CloudTrail data events, in their real formats.

The fixture files under `fixtures/audit/` were written by hand after AWS's documented formats (the S3 server
access log record and its file naming, plain and date-partitioned; CloudTrail `Records[]` files under
`AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`, gzipped or not, plus a digest file). LEDGER below lists
every record in them with what it is; the expected counts are computed from the ledger, not by the parser.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from billing_pipeline.defs.check_results import to_check_result
from billing_pipeline.observability import audit_logs, slis
from billing_pipeline.platform.config import load_config, parse_config
from billing_pipeline.platform.ops_config import ErrorBudgetConfig
from billing_pipeline.platform.state import write_state
from billing_pipeline.platform.storage import Store

from ..conftest import DEFAULT_POLICY, write_config

AUDIT = Path(__file__).parents[1] / "fixtures" / "audit"
EXPORTS, LAKE_BUCKET = "s3://acme-billing-exports", "s3://acme-billing-lake"
SOURCES = [
    {"name": "alpha", "provider": "aws_cur2", "url": f"{EXPORTS}/cur2/alpha"},
    {"name": "beta", "provider": "aws_cur2", "url": f"{EXPORTS}/cur2/beta/"},
]
NOW = dt.datetime(2023, 11, 20, tzinfo=dt.UTC)

# request id, trail, event day (UTC), scope it falls in (None: another bucket / prefix), outcome.
# The same request logged by both trails appears twice (0A000000000A0001) and counts once.
S3, CT = "s3_access_log", "cloudtrail"
LEDGER = [
    ("0A000000000A0013", S3, "2023-11-02", "alpha", "denied"),
    ("0A000000000B0012", S3, "2023-11-02", "beta", "denied"),  # 23:59:59 on the 2nd, in a file of the 3rd
    ("0A000000000A0001", S3, "2023-11-03", "alpha", "denied"),  # GetObject, also in CloudTrail
    ("0A000000000A0002", S3, "2023-11-03", "alpha", "denied"),  # ListObjectsV2 of cur2/alpha/metadata/
    ("0A000000000A0007", S3, "2023-11-03", "alpha", "ok"),  # 200
    ("0A000000000A0008", S3, "2023-11-03", "alpha", "forbidden"),  # 403 SignatureDoesNotMatch
    ("0A00000000000005", S3, "2023-11-03", None, "denied"),  # cur2/alphabet/: not alpha's prefix
    ("0A000000000B0003", S3, "2023-11-03", "beta", "denied"),
    ("0A0000000000000F", S3, "2023-11-03", None, "denied"),  # listing of the bucket's root
    ("0A000000000A0010", S3, "2023-11-03", "alpha", "denied"),  # 23:59:12, delivered in a (gzipped) file of the 4th
    ("0A000000000A0011", S3, "2023-11-04", "alpha", "denied"),
    ("0A000000000B0014", S3, "2023-11-06", "beta", "denied"),
    ("0A00000000010004", S3, "2023-11-03", "lake", "denied"),  # PutObject of a lake slice
    ("0A00000000000009", S3, "2023-11-03", None, "denied"),  # the lake bucket's scratch/ prefix
    ("0A00000000000006", S3, "2023-11-03", None, "denied"),  # another bucket
    ("0A000000000A0001", CT, "2023-11-03", "alpha", "denied"),
    ("0C00000000010C01", CT, "2023-11-03", "lake", "denied"),  # ListObjects of lake/raw_line_items/
    ("0C00000000A0C007", CT, "2023-11-02", "alpha", "denied"),  # in a file of the 3rd
    ("0C00000000B0C002", CT, "2023-11-03", "beta", "denied"),
    ("0C0000000000C0F3", CT, "2023-11-03", None, "denied"),  # another bucket
    ("0C00000000A0C0A4", CT, "2023-11-03", "alpha", "ok"),
    ("0C00000000A0C006", CT, "2023-11-04", "alpha", "denied"),
    ("0C00000000010C09", CT, "2023-11-03", "lake", "denied"),  # DeleteObject at 23:58:40, in a file of the 4th
]


def _expected(day: str) -> tuple[dict[str, int], int, int]:
    """Denied per scope (each request once), other 403s, and denied events outside every scope, for a day."""
    denied = {(rid, scope) for rid, _, d, scope, outcome in LEDGER if d == day and outcome == "denied" and scope}
    forbidden = {rid for rid, _, d, scope, outcome in LEDGER if d == day and outcome == "forbidden" and scope}
    outside = [rid for rid, _, d, scope, outcome in LEDGER if d == day and outcome == "denied" and not scope]
    return dict(Counter(scope for _, scope in denied)), len(forbidden), len(outside)


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


def test_the_ledger_lists_every_record_of_the_fixture_files() -> None:
    """Independent of the parser: request ids by whitespace position (S3) and by JSON key (CloudTrail)."""
    s3_ids = []
    for path in sorted((AUDIT / "s3_access_logs").rglob("*")):
        if path.is_file():
            # owner bucket [dd/Mon/yyyy:hh:mm:ss +0000] ip requester request-id ...: the id is the 7th token
            s3_ids += [line.split()[6] for line in _text(path).splitlines() if line.startswith("79a59df9")]
    trail_ids = []
    for path in sorted((AUDIT / "cloudtrail").rglob("*.json*")):
        document = json.loads(_text(path))
        trail_ids += [r["requestID"] for r in document.get("Records", []) if r["eventSource"] == "s3.amazonaws.com"]
    assert sorted(s3_ids) == sorted(rid for rid, trail, *_ in LEDGER if trail == S3)
    assert sorted(trail_ids) == sorted(rid for rid, trail, *_ in LEDGER if trail == CT)


def _config(tmp_path: Path, lake_url: str | None = None, sources: list[dict] | None = None, **audit) -> object:
    raw = {
        "lake_url": lake_url or str(tmp_path / "lake"),
        "start_date": "2023-10-01",
        "invoices_url": str(tmp_path / "invoices"),
        "sources": sources or SOURCES,
        "tag_policy": DEFAULT_POLICY,
    }
    if audit:
        raw["audit_logs"] = audit
    return parse_config(raw, tmp_path, origin=str(tmp_path / "billing.yaml"))


@pytest.mark.parametrize("day", ["2023-11-02", "2023-11-03", "2023-11-04", "2023-11-05", "2023-11-06"])
def test_denied_events_are_counted_per_day_and_prefix(tmp_path: Path, day: str) -> None:
    config = _config(
        tmp_path,
        lake_url=f"{LAKE_BUCKET}/lake",
        s3_access_logs_url=str(AUDIT / "s3_access_logs"),
        cloudtrail_url=str(AUDIT / "cloudtrail"),
    )
    per_scope, forbidden, outside = _expected(day)
    trail = audit_logs.read_trail_day(config, Store(), dt.date.fromisoformat(day))
    assert trail.per_scope == per_scope
    assert (trail.forbidden_other, trail.denied_out_of_scope) == (forbidden, outside)
    assert not trail.errors
    if day == "2023-11-03":
        assert per_scope == {"alpha": 3, "beta": 2, "lake": 3}  # the ledger, read by eye
        assert trail.duplicates == 1 and trail.unparsed == 1  # one request in both trails; one garbage line
        assert trail.files_read == {S3: 5, CT: 3}  # files named for the 3rd and the 4th (delivery lag), no digest


def test_a_date_template_lists_only_the_days_folders_and_the_lag_is_what_it_says(tmp_path: Path) -> None:
    template = str(
        AUDIT / "cloudtrail" / "AWSLogs" / "111122223333" / "CloudTrail" / "us-east-1" / "{yyyy}" / "{mm}" / "{dd}"
    )
    day = dt.date(2023, 11, 3)
    only_trail = [(rid, s, d, scope, o) for rid, s, d, scope, o in LEDGER if s == CT]
    expected = Counter(scope for rid, _, d, scope, o in only_trail if d == day.isoformat() and o == "denied" and scope)
    trail = audit_logs.read_trail_day(
        _config(tmp_path, lake_url=f"{LAKE_BUCKET}/lake", cloudtrail_url=template), Store(), day
    )
    assert trail.per_scope == dict(expected) and trail.files_read == {CT: 3}
    # delivery_lag_days 0: the file of the 4th is not read, so the DeleteObject of 23:58:40 is missed
    strict = audit_logs.read_trail_day(
        _config(tmp_path, lake_url=f"{LAKE_BUCKET}/lake", cloudtrail_url=template, delivery_lag_days=0), Store(), day
    )
    assert strict.per_scope == {**dict(expected), "lake": expected["lake"] - 1} and strict.files_read == {CT: 2}


def test_parses_aws_documented_records_old_and_new_field_counts() -> None:
    # AWS's documented example record (all fields up to the source region), and the same with only the 18
    # fields older logs have: both parse; a line that is not a record is counted, not fatal.
    owner = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
    base = (
        f"{owner} amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 {owner} 3E57427F3EXAMPLE "
        'REST.GET.VERSIONING - "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" '
        '"S3Console/0.4" -'
    )
    full = (
        base + " s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 "
        "ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 "
        "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes us-east-1"
    )
    denied = (
        f"{owner} amzn-s3-demo-bucket1 [06/Feb/2019:23:10:01 -0200] 192.0.2.3 - 891CE47D2EXAMPLE "
        'REST.GET.OBJECT photos/2019/a%20b.jpg "GET /amzn-s3-demo-bucket1/photos/2019/a%20b.jpg HTTP/1.1" '
        '403 AccessDenied 243 - 3 - "-" "curl/8.0" -'
    )
    events, unparsed = audit_logs.parse_s3_access_log("\n".join([full, base, denied, "not a record", ""]))
    assert unparsed == 1 and len(events) == 3
    first = events[0]
    assert (
        first.bucket,
        first.time,
        first.operation,
        first.request_id,
        first.status,
        first.error_code,
        first.path,
    ) == (
        "amzn-s3-demo-bucket1",
        dt.datetime(2019, 2, 6, 0, 0, 38, tzinfo=dt.UTC),
        "REST.GET.VERSIONING",
        "3E57427F3EXAMPLE",
        200,
        "",
        "",
    )
    assert events[1].request_id == "3E57427F3EXAMPLE"
    last = events[2]
    assert last.denied and last.requester == "" and last.path == "photos/2019/a b.jpg"
    assert last.time == dt.datetime(2019, 2, 7, 1, 10, 1, tzinfo=dt.UTC)  # -0200 is two hours behind UTC


def test_scopes_respect_prefix_boundaries_and_pick_the_longest() -> None:
    scopes = [
        audit_logs.scope_of("lake", "s3://b/lake"),
        audit_logs.scope_of("inner", "s3://b/lake/landing/x/"),
        audit_logs.scope_of("bucket", "s3://other"),
    ]
    event = audit_logs.parse_cloudtrail(
        json.dumps(
            {
                "Records": [
                    {
                        "eventSource": "s3.amazonaws.com",
                        "eventTime": "2023-11-03T00:00:00Z",
                        "eventName": "GetObject",
                        "errorCode": "AccessDenied",
                        "requestParameters": {"bucketName": "b", "key": "lake/landing/x/f.csv"},
                    }
                ]
            }
        )
    )[0][0]

    def where(bucket: str, path: str) -> str | None:
        return audit_logs.attribute(
            audit_logs.AccessEvent(**{**event.__dict__, "bucket": bucket, "path": path}), scopes
        )

    assert where("b", "lake/landing/x/f.csv") == "inner"
    assert where("b", "lake/a.parquet") == "lake" and where("b", "lake") == "lake"
    assert where("b", "lakeside/a.parquet") is None and where("b", "") is None
    assert where("other", "anything/at/all") == "bucket"
    assert audit_logs.scope_of("local", "/data/landing") is None and audit_logs.scope_of("g", "gs://b/x") is None


def test_the_check_counts_the_trail_per_source_and_pages(tmp_path: Path) -> None:
    # billing.yaml names the trail with paths relative to itself; alpha is on S3 (in the trail), gamma is a
    # local folder (not in any S3 trail: its own denied reads count), the lake is local too.
    shutil.copytree(AUDIT, tmp_path / "audit")
    gamma = {"name": "gamma", "provider": "aws_cur2", "url": str(tmp_path / "landing" / "gamma")}
    config = load_config(
        write_config(
            tmp_path,
            [SOURCES[0], gamma],
            start_date="2023-10-01",
            audit_logs={"s3_access_logs_url": "audit/s3_access_logs", "cloudtrail_url": ["audit/cloudtrail"]},
        )
    )
    day = dt.date(2023, 11, 3)
    write_state(
        Store(),
        config.lake_url,
        "gamma",
        day,
        {
            "access": {"denied_listings": 1},
            "raw": {
                "problems": [
                    {
                        "file_uri": "x.csv",
                        "reason": "PermissionError: [Errno 13] Permission denied",
                        "kind": "unreadable",
                    }
                ]
            },
        },
    )
    write_state(Store(), config.lake_url, "alpha", day, {"access": {"denied_listings": 4}})  # in the trail already
    result = slis.access_violations(config, Store(), day, NOW)
    alpha = _expected("2023-11-03")[0]["alpha"]
    assert result.per_source == {"alpha": float(alpha), "gamma": 2.0}
    assert result.value == alpha + 2.0 and not result.passed and result.target.severity == "ERROR"
    assert ErrorBudgetConfig().objective_of("access_violations") == 1.0  # no budget: its budget check pages
    assert "gamma, lake" in result.summary and "audit trail" in result.summary
    evaluation = to_check_result(result, "access_violations")
    assert evaluation.metadata["sli/access_violations/alpha"].value == float(alpha)
    assert evaluation.metadata["sli/access_violations_lake"].value == 0.0  # a local lake is in no S3 trail
    assert evaluation.metadata["sli/access_violations_pipeline_seen"].value == 6.0  # alpha 4, gamma 2


def test_the_lake_on_s3_is_counted_from_the_trail(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        lake_url=f"{LAKE_BUCKET}/lake",
        s3_access_logs_url=str(AUDIT / "s3_access_logs"),
        cloudtrail_url=str(AUDIT / "cloudtrail"),
    )
    found = audit_logs.violations(config, Store(), dt.date(2023, 11, 3), {"alpha": 9.0, "beta": 9.0})
    expected = _expected("2023-11-03")[0]
    assert found.per_source == {"alpha": expected["alpha"], "beta": expected["beta"]}
    assert found.extra["sli/access_violations_lake"] == expected["lake"]
    assert found.value == sum(expected.values()) and found.extra["audit_not_covered"] == "none"
    assert "0A000000000A0001" in found.extra["audit_examples"]


def test_a_quiet_day_passes(tmp_path: Path) -> None:
    config = _config(tmp_path, s3_access_logs_url=str(AUDIT / "s3_access_logs"))
    result = slis.access_violations(config, Store(), dt.date(2023, 11, 5), NOW)
    assert result.passed and result.value == 0.0


def test_without_a_trail_the_pipeline_s_own_denied_reads_count_and_the_summary_says_so(tmp_path: Path) -> None:
    config = _config(tmp_path)
    day = dt.date(2023, 11, 3)
    write_state(Store(), config.lake_url, "beta", day, {"access": {"denied_listings": 1}})
    result = slis.access_violations(config, Store(), day, NOW)
    assert result.per_source == {"alpha": 0.0, "beta": 1.0} and not result.passed
    assert "No audit trail is configured" in result.summary and "audit_logs:" in result.summary


def test_an_unreadable_trail_fails_at_warn_naming_it(tmp_path: Path, monkeypatch) -> None:
    elsewhere = [{"name": "alpha", "provider": "aws_cur2", "url": "s3://another-bucket/cur2/alpha"}]
    config = _config(tmp_path, sources=elsewhere, s3_access_logs_url=str(AUDIT / "s3_access_logs"))
    original = Store.read_bytes

    def deny(self, url):
        if "2023-11-03-13-40-22" in url:
            raise PermissionError(f"AccessDenied: GetObject {url}")
        return original(self, url)

    monkeypatch.setattr(Store, "read_bytes", deny)
    result = slis.access_violations(config, Store(), dt.date(2023, 11, 3), NOW)
    assert result.value == 0.0 and not result.passed and result.severity == "WARN"
    assert "audit trail unreadable" in result.summary and "2023-11-03-13-40-22" in result.summary
