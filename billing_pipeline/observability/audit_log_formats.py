"""The two AWS audit trail formats M10 reads, as AWS writes them (plain Python, gzip or not):

- **S3 server access logs**: one request per line, space-separated fields, some quoted (`"GET /b?x HTTP/1.1"`,
  the user agent) and the time in brackets (`[06/Feb/2019:00:00:38 +0000]`). Fields used, in order: bucket
  owner, bucket, time, remote IP, requester, request ID, operation, key (URL-encoded, `-` for a bucket
  operation), request URI, HTTP status, error code. Later fields (bytes, times, user agent, ..., source
  region) are read when present; AWS appends new fields at the end, so extra fields are ignored.
- **CloudTrail data events**: JSON files `{"Records": [...]}`; an S3 record has `eventSource`
  `s3.amazonaws.com`, `eventTime`, `eventName`, `errorCode`, `requestParameters.bucketName` and `key` (or
  `prefix` for a listing), `requestID` (the same ID as in the server access log) and `userIdentity.arn`.

Both parse to `AccessEvent`s; `audit_logs` decides which of them count.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled"})
S3_ACCESS_LOG, CLOUDTRAIL = "s3_access_log", "cloudtrail"

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\[([^\]]*)\]|(\S+)')
_MONTHS = {
    m: i
    for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)
}
_LOG_TIME = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")


@dataclass(frozen=True)
class AccessEvent:
    """One request from an audit trail, reduced to what M10 needs."""

    trail: str  # s3_access_log | cloudtrail
    time: dt.datetime  # UTC
    bucket: str
    path: str  # object key, or the prefix a listing asked for ("" for the whole bucket)
    operation: str
    request_id: str
    status: int | None
    error_code: str
    requester: str
    file_url: str = ""

    @property
    def denied(self) -> bool:
        return self.error_code in DENIED_CODES

    @property
    def forbidden_other(self) -> bool:
        return self.status == 403 and not self.denied

    @property
    def identity(self) -> tuple[str, ...]:
        """Same request in both trails -> same identity (S3 request IDs are unique)."""
        if self.request_id and self.request_id != "-":
            return ("request", self.request_id)
        return (self.trail, self.bucket, self.path, self.operation, self.time.isoformat())

    def describe(self) -> str:
        return (
            f"{self.time.strftime('%Y-%m-%dT%H:%M:%SZ')} {self.operation} s3://{self.bucket}/{self.path} "
            f"{self.error_code} by {self.requester or '-'} (request {self.request_id or '-'}, {self.trail})"
        )


# ---- parsing -----------------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _log_time(text: str) -> dt.datetime | None:
    match = _LOG_TIME.fullmatch(text.strip())
    if not match or match.group(2).title() not in _MONTHS:
        return None
    day, month, year, hh, mm, ss, sign, oh, om = match.groups()
    offset = dt.timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    local = dt.datetime(
        int(year), _MONTHS[month.title()], int(day), int(hh), int(mm), int(ss), tzinfo=dt.timezone(offset)
    )
    return local.astimezone(dt.UTC)


def _fields(line: str) -> list[str]:
    """Space-separated fields; a quoted or bracketed field is one field, without its quotes or brackets."""
    return [next(g for g in m.groups() if g is not None) for m in _TOKEN.finditer(line)]


def _listing_prefix(request_uri: str) -> str:
    """The `prefix=` a bucket listing asked for (`GET /bucket?list-type=2&prefix=a%2Fb%2F HTTP/1.1`)."""
    parts = request_uri.split(" ")
    target = parts[1] if len(parts) >= 2 else parts[0]
    values = parse_qs(urlsplit(target).query, keep_blank_values=True).get("prefix")
    return values[0] if values else ""


def parse_s3_access_log(text: str, file_url: str = "") -> tuple[list[AccessEvent], int]:
    """Every record of one S3 server access log file, and the number of lines that could not be parsed."""
    events, unparsed = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = _fields(line)
        time = _log_time(fields[2]) if len(fields) >= 11 else None
        if time is None:
            unparsed += 1
            continue
        bucket, requester, request_id, operation, key, request_uri = (
            fields[1],
            fields[4],
            fields[5],
            fields[6],
            fields[7],
            fields[8],
        )
        status = int(fields[9]) if fields[9].isdigit() else None
        error_code = "" if fields[10] == "-" else fields[10]
        if key != "-":
            path = unquote(key)
        elif ".BUCKET" in operation or "list-type" in request_uri or "prefix=" in request_uri:
            path = _listing_prefix(request_uri)
        else:
            path = ""
        events.append(
            AccessEvent(
                S3_ACCESS_LOG,
                time,
                bucket,
                path,
                operation,
                request_id,
                status,
                error_code,
                "" if requester == "-" else requester,
                file_url,
            )
        )
    return events, unparsed


def _bucket_and_key_from_resources(record: dict) -> tuple[str, str]:
    for resource in record.get("resources") or []:
        arn = str(resource.get("ARN") or "")
        if arn.startswith("arn:") and ":s3:::" in arn:
            bucket, _, key = arn.split(":s3:::", 1)[1].partition("/")
            if key or resource.get("type") == "AWS::S3::Bucket":
                return bucket, key
    return "", ""


def parse_cloudtrail(text: str, file_url: str = "") -> tuple[list[AccessEvent], int]:
    """The S3 records of one CloudTrail log file; other services' records are skipped, malformed ones counted."""
    try:
        document = json.loads(text)
    except ValueError:
        return [], 1
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):  # a digest file or something else: not a log file
        return [], 0
    events, unparsed = [], 0
    for record in records:
        if not isinstance(record, dict) or record.get("eventSource") != "s3.amazonaws.com":
            continue
        try:
            time = dt.datetime.fromisoformat(str(record["eventTime"]).replace("Z", "+00:00")).astimezone(dt.UTC)
        except (KeyError, ValueError):
            unparsed += 1
            continue
        params = record.get("requestParameters") or {}
        bucket = str(params.get("bucketName") or "")
        if "key" in params:
            path = str(params["key"])
        elif "prefix" in params:
            path = str(params["prefix"])
        else:
            path = ""
        if not bucket:
            bucket, path = _bucket_and_key_from_resources(record)
        error_code = str(record.get("errorCode") or "")
        identity = record.get("userIdentity") or {}
        events.append(
            AccessEvent(
                CLOUDTRAIL,
                time,
                bucket,
                path,
                str(record.get("eventName") or ""),
                str(record.get("requestID") or ""),
                403 if error_code in DENIED_CODES else None,
                error_code,
                str(identity.get("arn") or identity.get("principalId") or identity.get("type") or ""),
                file_url,
            )
        )
    return events, unparsed
