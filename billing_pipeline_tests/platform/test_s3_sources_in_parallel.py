"""A day's sources built side by side (`sources_in_parallel`) over S3 give what they give one after the other.

Why: `defs/test_sources_in_parallel.py` proves it on a local lake and landing zone only, where each thread's
reads and writes go through its own file handles. Over S3 the threads of a layer share one s3fs client per set
of storage options (its event loop, its listing cache, its connection pool) while they stage deliveries,
publish slices, quarantine a cut-short file and write state; nothing else builds two sources at once there.
Here the generator's five sources (and the same FOCUS export cut short) land in a bucket of the moto server,
and the job builds the same day into two lakes of another bucket, one source at a time and two at a time:
the same keys, the same slices (but for clocks) and the same check verdicts.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from billing_pipeline.platform.config import load_config
from billing_pipeline.tools.conformance import GENERATOR_SOURCES

from ..conftest import write_config
from ..defs.test_sources_in_parallel import (
    BROKEN,
    DAYS,
    assert_same_metadata,
    assert_same_slice,
    landing_zone,
    run_days,
)
from ..s3 import s3_client, upload_tree

DAY = DAYS[0]  # one day: every request of the job goes to the moto server, and two builds of six sources
LANDING = "s3://sbs-landing/landing"
LAKE_BUCKET = "sbs-lake"


def _build(root: Path, endpoint: str, lake: str, workers: int) -> tuple[dict[str, bytes], dict, dict]:
    """DAY through the job into `s3://sbs-lake/<lake>`; every key of that lake (relative) with its bytes, the
    materializations' metadata and the checks' verdicts."""
    sources = [{"name": n, "provider": p, "url": f"{LANDING}/{path}"} for n, (p, path) in GENERATOR_SOURCES.items()]
    sources.append({"name": BROKEN, "provider": "focus", "url": f"{LANDING}/{BROKEN}/focus-export"})
    root.mkdir()
    config_path = write_config(
        root,
        sources,
        lake_url=f"s3://{LAKE_BUCKET}/{lake}",
        invoices_url=f"{LANDING}/invoices",
        start_date=DAY.isoformat(),
        duckdb_path=str(root / "catalogue.duckdb"),  # an S3 lake has no folder of its own for the catalogue
        storage_options={"endpoint_url": endpoint},
        sources_in_parallel=workers,
    )
    metadata, verdicts = run_days(config_path, [DAY])
    config = load_config(config_path)
    store = config.store()
    store.invalidate(config.lake_url)
    keys = {f.url.removeprefix(config.lake_url + "/"): store.read_bytes(f.url) for f in store.find(config.lake_url)}
    return keys, metadata, verdicts


def _without_delivery_lag(frame: pl.DataFrame) -> pl.DataFrame:
    """Export latency is a clock here: the moto server dates the aws_cur and gcp deliveries by their objects'
    LastModified (the upload, seconds before the run), so the lag judged is how long ago the run started."""
    if "sli" not in frame.columns:
        return frame
    lag = pl.col("sli").str.starts_with("export_latency")
    return frame.with_columns(pl.when(lag).then(None).otherwise(pl.col("value")).alias("value"))


def test_sources_built_side_by_side_over_s3_give_what_one_after_the_other_gives(
    tmp_path: Path, s3_endpoint: str
) -> None:
    client = s3_client(s3_endpoint)
    for bucket in ("sbs-landing", LAKE_BUCKET):
        client.create_bucket(Bucket=bucket)
    bucket, prefix = LANDING.removeprefix("s3://").split("/", 1)
    assert upload_tree(client, landing_zone(tmp_path), bucket, prefix) > 2 * len(GENERATOR_SOURCES)

    one_keys, one_metadata, one_verdicts = _build(tmp_path / "serial", s3_endpoint, "serial", 1)
    two_keys, two_metadata, two_verdicts = _build(tmp_path / "side-by-side", s3_endpoint, "side-by-side", 2)

    assert two_verdicts == one_verdicts and len(one_verdicts) > 30
    failed = {check for (_, check, _), passed in one_verdicts.items() if not passed}
    assert "publish_guard" in failed  # the truncated delivery was held back, in both
    assert len(one_metadata) == 6
    assert_same_metadata(one_metadata, two_metadata, ("/serial/", "/side-by-side/"))

    assert sorted(two_keys) == sorted(one_keys)
    assert not [key for key in one_keys if ".tmp-" in key or ".partial" in key]  # nothing half-written left
    slices = sorted(key for key in one_keys if key.endswith(".parquet"))
    published = {key.split("/")[2] for key in slices if key.startswith("normalized_line_items/")}
    assert published == {f"source={name}" for name in GENERATOR_SOURCES}  # every source, none of the broken one
    assert any(key.startswith("quarantine/") for key in slices), "the cut-short delivery was quarantined in S3"
    for key in slices:
        one, two = (_without_delivery_lag(pl.read_parquet(io.BytesIO(keys[key]))) for keys in (one_keys, two_keys))
        assert_same_slice(one, two, ("/serial/", "/side-by-side/"), key)
