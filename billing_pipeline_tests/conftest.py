"""Shared fixtures: configs written to disk, landing zones built from the public samples, and a
one-call way to run the whole spine for a day through the same functions the assets call."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.enrich import EnrichedSlice, build_enriched_slice
from billing_pipeline.spine.normalize import NormalizedSlice, build_normalized_slice
from billing_pipeline.spine.raw import build_raw_slice
from billing_pipeline.spine.raw_publish import RawSlice
from billing_pipeline.spine.reconcile import publish_reconciliation, read_invoices

from .http_capture import Receiver

# Property tests judge behaviour, not speed: a per-example deadline fails them at random on a busy 2-core
# machine (DuckDB's first query, a GC pause). Their size stays bounded by each test's `max_examples`.
settings.register_profile("billing", deadline=None)
settings.load_profile("billing")

SAMPLES = Path(__file__).parent / "fixtures" / "samples"
AWS_SAMPLE = SAMPLES / "focus_converters_sample-anonymous-aws-export-dataset.csv"
ATHENA_SAMPLE = SAMPLES / "koku_aws_2022-07-01-alt-columns.csv"
FOCUS_SAMPLE = SAMPLES / "focus-sample-data_FOCUS-1.0_focus_sample.csv"

DEFAULT_POLICY: dict[str, Any] = {
    "owner_dimension": "team",
    "dimensions": {
        "team": {"keys": ["team", "owner", "squad", "team_name"]},
        "cost_center": {"keys": ["cost_center", "costcenter"]},
        "product": {"keys": ["product", "app", "application"]},
        "environment": {"keys": ["environment", "env", "stage"], "values": {"production": "prod", "prd": "prod"}},
    },
    "account_owners": {"222222222201": {"team": "platform", "cost_center": "CC-100"}},
}


def write_config(
    folder: Path,
    sources: list[dict[str, str]],
    lake_url: str | None = None,
    invoices_url: str | None = None,
    start_date: str = "2020-01-01",
    **extra: Any,
) -> Path:
    document = {
        "lake_url": lake_url or str(folder / "lake"),
        "start_date": start_date,
        "invoices_url": invoices_url or str(folder / "invoices"),
        "sources": sources,
        "tag_policy": extra.pop("tag_policy", DEFAULT_POLICY),
        **extra,
    }
    path = folder / "billing.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@dataclass
class DayRun:
    raw: list[RawSlice]
    normalized: list[NormalizedSlice]
    enriched: list[EnrichedSlice]
    reconciliation: Any


def run_spine(config: BillingConfig, day: dt.date, store: Store | None = None) -> DayRun:
    """raw -> normalized -> enriched -> reconciliation for every source, like `billing_daily` does."""
    store = store or config.store()
    import polars as pl

    with scratch_dir() as workdir:
        raw = [build_raw_slice(s, day, store, config.lake_url, workdir) for s in config.sources]
        normalized = [build_normalized_slice(s, day, store, config.lake_url, workdir) for s in config.sources]
        enriched = [
            build_enriched_slice(s, day, store, config.lake_url, config.tag_policy, workdir) for s in config.sources
        ]
        invoices = read_invoices(store, config.invoices_url, workdir)
        reconciliation = pl.concat(
            [
                publish_reconciliation(s, day, store, config.lake_url, invoices, config.reconciliation, workdir)
                for s in config.sources
            ]
        )
    return DayRun(raw, normalized, enriched, reconciliation)


def legacy_cur_landing(root: Path, sample: Path = AWS_SAMPLE, assembly: str = "a1") -> Path:
    """A legacy CUR report root holding one delivery of the public sample (the conformance run's builder)."""
    from billing_pipeline.tools.conformance import legacy_cur_landing as build

    return build(root, sample, assembly)


@pytest.fixture
def sample_cur_config(tmp_path: Path) -> BillingConfig:
    report = legacy_cur_landing(tmp_path / "landing")
    return load_config(
        write_config(
            tmp_path, [{"name": "sample_cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01"
        )
    )


@pytest.fixture
def sample_focus_config(tmp_path: Path) -> BillingConfig:
    landing = tmp_path / "landing" / "focus"
    landing.mkdir(parents=True)
    shutil.copy(FOCUS_SAMPLE, landing / FOCUS_SAMPLE.name)
    return load_config(
        write_config(
            tmp_path, [{"name": "sample_focus", "provider": "focus", "url": str(landing)}], start_date="2024-09-01"
        )
    )


def sample_as_cur2_frame(sample: Path = AWS_SAMPLE):
    """The public legacy CUR sample in CUR 2.0 shape (snake_case columns), for Data Exports tests."""
    import polars as pl

    from billing_pipeline.adapters.aws import snake_case_legacy

    frame = pl.read_csv(sample, infer_schema=False)
    return frame.rename({c: snake_case_legacy(c) for c in frame.columns if not c.startswith("resourceTags/")})


def write_data_export(
    root: Path,
    execution_id: str,
    files: dict[str, Any],
    period: str = "2023-11",
    export_time: str = "2023-11-20T00:00:00Z",
    extra_uris: list[str] | None = None,
    file_format: str = "parquet",
) -> Path:
    """One delivery of an AWS Data Exports layout (create-new mode): data files plus their manifest.

    `files` maps a file name to a polars DataFrame, or to raw bytes written as they are (to build
    corrupt files). Manifest URIs name another bucket on purpose, like a replicated export.
    """
    data = root / "data" / f"BILLING_PERIOD={period}" / execution_id
    data.mkdir(parents=True, exist_ok=True)
    uris = []
    for name, content in files.items():
        target = data / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif file_format == "parquet":
            content.write_parquet(target)
        else:
            with gzip.open(target, "wb") as handle:
                content.write_csv(handle)
        uris.append(f"s3://aws-origin-bucket/exports/{root.name}/data/BILLING_PERIOD={period}/{execution_id}/{name}")
    manifest = {
        "executionId": execution_id,
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111111111111:export/{root.name}",
        "exportTime": export_time,
        "billingPeriod": {"start": f"{period}-01T00:00:00.000Z"},
        "dataFiles": uris + list(extra_uris or []),
        "columns": [],
    }
    meta = root / "metadata" / f"BILLING_PERIOD={period}" / execution_id
    meta.mkdir(parents=True, exist_ok=True)
    (meta / f"{root.name}-Manifest.json").write_text(json.dumps(manifest))
    return data


# ---- independent totals: plain Python Decimal over delivered cells and lake cells ---------------------
# (imports here, not at the top, so that these appended helpers leave the rest of the file untouched)
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from decimal import Decimal  # noqa: E402


def _decimal(value: Any) -> Decimal:
    """A delivered number as Decimal, from its text (JSON read with parse_float=Decimal) or from
    the shortest text of a float cell (what `str` gives), never through float arithmetic."""
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _gcp_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of one GCP export file: NDJSON (optionally gzip) with the json module, numbers kept as
    their delivered text; Parquet through polars, for reading cells only."""
    if path.name.endswith(".parquet"):
        import polars as pl

        yield from pl.read_parquet(path).to_dicts()
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line, parse_float=Decimal)


def _usage_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date()
    return dt.date.fromisoformat(str(value)[:10])  # BigQuery's JSON text: `2022-08-01 03:00:00 UTC`


def gcp_delivered_totals(
    *files: Path,
    skip: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[tuple[dt.date, str, str], tuple[Decimal, int, int]]:
    """(usage day, billing account, currency) -> (cost + sum(credits.amount), charge rows, credit rows)
    over every row of the given GCP export files (rows for which `skip` is true left out)."""
    out: dict[tuple[dt.date, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, 0])
    for path in files:
        for row in _gcp_rows(Path(path)):
            if skip is not None and skip(row):
                continue
            slot = out[(_usage_day(row["usage_start_time"]), row["billing_account_id"], row["currency"])]
            credits = row.get("credits") or []
            slot[0] += _decimal(row["cost"]) + sum((_decimal(c["amount"]) for c in credits), Decimal(0))
            slot[1] += 1
            slot[2] += len(credits)
    return {key: (v[0], v[1], v[2]) for key, v in out.items()}


def parquet_cost_totals(source: Path | bytes | Any) -> dict[tuple[str, str], tuple[Decimal, Decimal, int]]:
    """(BillingAccountId, BillingCurrency) -> (sum BilledCost, sum EffectiveCost, rows) of a lake slice,
    summed in Python Decimal over each cell's text (polars only reads the cells)."""
    import io

    import polars as pl

    frame = pl.read_parquet(
        io.BytesIO(source) if isinstance(source, bytes) else source,
        columns=["BillingAccountId", "BillingCurrency", "BilledCost", "EffectiveCost"],
    )
    out: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for account, currency, billed, effective in frame.iter_rows():
        slot = out[(account, currency)]
        slot[0] += _decimal(billed)
        slot[1] += _decimal(effective)
        slot[2] += 1
    return {key: (v[0], v[1], v[2]) for key, v in out.items()}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 over HTTP, with test credentials in the environment, per module."""
    from .s3 import moto_server  # noqa: PLC0415

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        with moto_server() as endpoint:
            yield endpoint


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local Slack / PagerDuty stand-in (`http_capture.Receiver`), started and stopped per test."""
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
