"""Pull the GCP billing export straight from its BigQuery table, incrementally, into export files.

Why files: the rest of the pipeline reads a GCP source as append-only export files
(`billing_pipeline.adapters.gcp`). A pull writes each new batch of rows as one Parquet file shaped
exactly like the table (nested columns kept) under the source's URL, so a pulled source and an
`EXPORT DATA` source are the same thing downstream, and the landing files stay an audit trail of
what was read when.

Incremental by the `export_time` watermark: every append to the export table carries a strictly
later `export_time`, so a pull asks only for `export_time > @watermark` (the highest `export_time`
already pulled, read back from the file names: no state to lose) and `<= @until` (now minus a
settling delay, so an append still being written is left for the next pull). Nothing is pulled
twice; corrections are new rows with a later `export_time` and are pulled like any other. The query is
partition-pruned by usage date (`DATE(_PARTITIONTIME) >= @since`, the first day of the oldest
billing period still open) and fully parameterized; the table name, which BigQuery cannot take as a
parameter, is checked against `project.dataset.table` before it is interpolated.

    python -m billing_pipeline.adapters.gcp_bigquery --table proj.billing.gcp_billing_export_v1_X \\
        --out gs://bucket/gcp-export --since 2026-10-01
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from billing_pipeline.platform.storage import Store, join, scratch_dir

TABLE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_$]+$")
QUERY = """SELECT *
FROM `{table}`
WHERE DATE(_PARTITIONTIME) >= @since
  AND export_time > @watermark
  AND export_time <= @until
ORDER BY export_time"""
CHUNK = re.compile(r"bq-(\d{8}T\d{12}Z)-(\d{8}T\d{12}Z)\.parquet$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULT_SETTLE = dt.timedelta(hours=1)


class BigQueryClient(Protocol):
    """What is used of `google.cloud.bigquery.Client` (so tests can pass a fake)."""

    def query(self, query: str, job_config: Any = None) -> Any: ...


@dataclass(frozen=True)
class PullResult:
    rows: int
    watermark: dt.datetime
    new_watermark: dt.datetime
    file: str | None


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _unstamp(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)


def watermark(store: Store, out_url: str) -> dt.datetime:
    """The highest `export_time` already pulled into `out_url` (the epoch when nothing was)."""
    store.invalidate(out_url)
    marks = [_unstamp(m.group(2)) for f in store.find(out_url) if (m := CHUNK.search(f.url))]
    return max(marks, default=EPOCH)


def query_and_parameters(table: str, since: dt.date, after: dt.datetime, until: dt.datetime) -> tuple[str, list]:
    """The pull's SQL text and its BigQuery query parameters."""
    from google.cloud.bigquery import ScalarQueryParameter

    if not TABLE_NAME.match(table):
        raise ValueError(f"not a BigQuery table name project.dataset.table: {table!r}")
    parameters = [
        ScalarQueryParameter("since", "DATE", since),
        ScalarQueryParameter("watermark", "TIMESTAMP", after),
        ScalarQueryParameter("until", "TIMESTAMP", until),
    ]
    return QUERY.format(table=table), parameters


def pull_export(
    client: BigQueryClient,
    table: str,
    store: Store,
    out_url: str,
    since: dt.date,
    now: dt.datetime | None = None,
    settle: dt.timedelta = DEFAULT_SETTLE,
) -> PullResult:
    """Append the table's rows newer than the watermark to `out_url` as one Parquet file."""
    from google.cloud.bigquery import QueryJobConfig

    after = watermark(store, out_url)
    until = (now or dt.datetime.now(dt.UTC)) - settle
    if until <= after:
        return PullResult(0, after, after, None)
    sql, parameters = query_and_parameters(table, since, after, until)
    job = client.query(sql, job_config=QueryJobConfig(query_parameters=parameters))
    arrow = job.result().to_arrow()
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        return PullResult(0, after, after, None)
    times = frame.get_column("export_time")
    if times.dtype.time_zone is None:  # type: ignore[union-attr]
        frame = frame.with_columns(pl.col("export_time").dt.replace_time_zone("UTC"))
    high = frame.get_column("export_time").max()
    assert isinstance(high, dt.datetime)
    name = f"bq-{_stamp(after)}-{_stamp(high)}.parquet"
    target = join(out_url, f"export_date={high:%Y-%m-%d}", name)
    with scratch_dir("gcp-pull-") as workdir:
        store.write_parquet(frame, target, workdir)
    return PullResult(frame.height, after, high, target)


def pull_with_resource(
    resource: Any,
    table: str,
    store: Store,
    out_url: str,
    since: dt.date,
    now: dt.datetime | None = None,
    settle: dt.timedelta = DEFAULT_SETTLE,
) -> PullResult:
    """`pull_export` with a dagster-gcp `BigQueryResource` (its client, its credentials)."""
    with resource.get_client() as client:
        return pull_export(client, table, store, out_url, since, now=now, settle=settle)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing_pipeline.adapters.gcp_bigquery",
        description="Pull new rows of the GCP billing export table into export files.",
    )
    parser.add_argument("--table", required=True, help="project.dataset.gcp_billing_export_v1_XXXXXX")
    parser.add_argument("--out", required=True, help="the GCP source's url (local path, gs:// or s3://)")
    parser.add_argument("--since", type=dt.date.fromisoformat, required=True, help="first usage date to read")
    parser.add_argument("--project", default=None, help="project to run the query in (default: ambient)")
    args = parser.parse_args(argv)
    from dagster_gcp import BigQueryResource

    out = args.out if "://" in args.out else str(Path(args.out).resolve())
    result = pull_with_resource(BigQueryResource(project=args.project), args.table, Store(), out, args.since)
    print(
        f"pulled {result.rows} rows, export_time {result.watermark:%Y-%m-%dT%H:%M:%SZ} .. "
        f"{result.new_watermark:%Y-%m-%dT%H:%M:%SZ}" + (f" into {result.file}" if result.file else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
