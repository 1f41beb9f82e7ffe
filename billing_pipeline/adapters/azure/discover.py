"""Azure export deliveries: partitioned runs with a `manifest.json`, or plain export files.

A run is one delivery (`<dataset>:<runId>`); it is incomplete when a blob is missing, has another
size than its `byteCount`, or holds another number of rows than its `dataRowCount` (or the blobs'
rows do not add up to the manifest's total). Only the newest runs are counted, until one is
complete; counts are cached per file identity. Files without any manifest are each a delivery of
their own (the package doc, "Deliveries").
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline.adapters.azure.headers import DATASETS
from billing_pipeline.adapters.base import read_export_file
from billing_pipeline.adapters.cells import modified_at, parse_timestamp
from billing_pipeline.adapters.deliveries import Delivery, FileProblem
from billing_pipeline.adapters.manifests import check_listed_file, listing_fingerprint, load_manifest
from billing_pipeline.platform.storage import FileInfo, Store

DATA_SUFFIXES = (".csv", ".csv.gz", ".gz", ".parquet")

_ROW_COUNTS: dict[tuple[str, int, str], int] = {}
# (manifest url, fingerprint) -> (rows per blob, total rows) the manifest states, for `check_row_counts`
_EXPECTED: dict[tuple[str, str], tuple[dict[str, int], int | None]] = {}


def count_rows(store: Store, info: FileInfo) -> int:
    """Data rows of one delivered blob (cached per url, size and etag/mtime)."""
    key = (info.url, info.size, info.etag or info.modified)
    if key not in _ROW_COUNTS:
        with tempfile.TemporaryDirectory(prefix="azure-count-") as tmp:
            local = store.stage(info.url, Path(tmp))
            frame = read_export_file(local, "auto")
            _ROW_COUNTS[key] = int(frame.select(pl.len()).collect(engine="streaming").item())
    return _ROW_COUNTS[key]


def _dataset_from_path(url: str) -> str:
    lowered = url.lower()
    if "amortized" in lowered:
        return "AmortizedCost"
    if "focus" in lowered:
        return "FocusCost"
    return "ActualCost"


def _present_all(store: Store, deliveries: list[Delivery]) -> dict[str, FileInfo]:
    """FileInfo of every file the deliveries name (listed again: `discover` lists per folder)."""
    out: dict[str, FileInfo] = {}
    for folder in {url.rsplit("/", 1)[0] for d in deliveries for url in d.files}:
        out |= {f.url: f for f in store.find(folder, maxdepth=1)}
    return out


def discover_exports(store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
    """Every run and manifest-less file in the period's date-range folders, run row counts checked."""
    start = billing_period.replace("-", "") + "01"
    deliveries: list[Delivery] = []
    for range_dir in store.list_dirs(root):
        range_name = range_dir.rstrip("/").rsplit("/", 1)[-1]
        if not re.fullmatch(rf"{start}-\d{{8}}", range_name):
            continue
        listing = store.find(range_dir, maxdepth=3)
        present = {f.url: f for f in listing}
        manifests = [f for f in listing if f.url.rsplit("/", 1)[-1] == "manifest.json"]
        for manifest in manifests:
            deliveries.append(
                run_delivery(store, source, root, billing_period, range_name, manifest, present, file_format)
            )
        run_folders = [m.url.rsplit("/", 1)[0] + "/" for m in manifests]
        for info in listing:
            name = info.url.lower()
            if not name.endswith(DATA_SUFFIXES) or any(info.url.startswith(f) for f in run_folders):
                continue
            deliveries.append(
                Delivery(
                    source=source,
                    billing_period=billing_period,
                    version=f"{_dataset_from_path(info.url)}:file:{info.url.rsplit('/', 1)[-1]}",
                    delivered_at=modified_at(info.modified),
                    files=(info.url,),
                    file_format=file_format,
                    fingerprint=info.identity,
                )
            )
    return check_row_counts(store, deliveries, _present_all(store, deliveries))


def _run_blobs(
    blobs: list[Any], range_name: str, root: str, present: dict[str, FileInfo], manifest_url: str
) -> tuple[list[str], dict[str, int], list[FileProblem]]:
    """A run's blobs resolved below its date-range folder: (files, rows each states, problems).

    A blob of another size than its `byteCount` is a partial upload: a `missing` problem.
    """
    files: list[str] = []
    expected: dict[str, int] = {}
    problems: list[FileProblem] = []
    for blob in blobs:
        name = str((blob or {}).get("blobName") or "")
        local = check_listed_file(
            name,
            re.escape(range_name) + "/",
            range_name,
            root,
            present,
            files,
            manifest_url,
            f"manifest {manifest_url} lists a blob outside its {range_name}/ folder",
        )
        if isinstance(local, FileProblem):
            problems.append(local)
            continue
        size = blob.get("byteCount")
        if isinstance(size, int) and size != present[local].size:
            reason = f"has {present[local].size} bytes, manifest {manifest_url} says byteCount {size} (partial upload)"
            problems.append(FileProblem(local, reason, "missing"))
            continue
        if isinstance(blob.get("dataRowCount"), int):
            expected[local] = blob["dataRowCount"]
        files.append(local)
    return files, expected, problems


def run_delivery(
    store: Store,
    source: str,
    root: str,
    billing_period: str,
    range_name: str,
    manifest: FileInfo,
    present: dict[str, FileInfo],
    file_format: str,
) -> Delivery:
    """The delivery one run's manifest describes, dated by its `submittedTime`; row counts are noted for later."""
    document, problem = load_manifest(store, manifest.url)
    fallback = modified_at(manifest.modified)
    if document is None:
        return Delivery(source, billing_period, manifest.url, fallback, (), manifest.url, (problem,))
    run = document.get("runInfo") or {}
    config = document.get("exportConfig") or {}
    dataset = str(config.get("type") or "ActualCost")
    dataset = next((d for d in DATASETS if d.lower() == dataset.lower()), dataset)
    problems: list[FileProblem] = []
    blobs = document.get("blobs")
    if not isinstance(blobs, list):
        problems.append(FileProblem(manifest.url, "manifest has no blobs[] list", "bad_manifest"))
        blobs = []
    files, expected, blob_problems = _run_blobs(blobs, range_name, root, present, manifest.url)
    problems += blob_problems
    total = document.get("dataRowCount")
    fingerprint = listing_fingerprint([present[u] for u in files])
    _EXPECTED[(manifest.url, fingerprint)] = (expected, total if isinstance(total, int) else None)
    return Delivery(
        source=source,
        billing_period=billing_period,
        version=f"{dataset}:{run.get('runId') or manifest.url}",
        delivered_at=parse_timestamp(run.get("submittedTime"), fallback),
        files=tuple(files),
        manifest_uri=manifest.url,
        problems=tuple(problems),
        file_format=file_format,
        fingerprint=fingerprint,
    )


def _row_count_problems(
    store: Store, delivery: Delivery, present: dict[str, FileInfo]
) -> tuple[list[FileProblem], bool]:
    """(the delivery's problems with any row count mismatch added, whether every blob could be counted)."""
    expected, total = _EXPECTED.get((delivery.manifest_uri, delivery.fingerprint), ({}, None))
    problems = list(delivery.problems)
    counted = 0
    for url in delivery.files:
        try:
            rows = count_rows(store, present[url])
        except Exception:  # noqa: BLE001 - a blob that cannot be read: the raw step names and
            return problems, False  # quarantines it, and the run is then incomplete (invariant 5)
        counted += rows
        if url in expected and rows != expected[url]:
            reason = f"holds {rows} rows, manifest {delivery.manifest_uri} says dataRowCount {expected[url]}"
            problems.append(FileProblem(url, reason, "missing"))
    if total is not None and counted != total and len(problems) == len(delivery.problems):
        reason = f"blobs hold {counted} rows, manifest says dataRowCount {total}"
        problems.append(FileProblem(delivery.manifest_uri, reason, "missing"))
    return problems, True


def check_row_counts(store: Store, deliveries: list[Delivery], present: dict[str, FileInfo]) -> list[Delivery]:
    """Count rows of the newest runs until one matches its manifest; a mismatch marks a run incomplete.

    Runs submitted at the same time as the first complete one are counted too: `choose_current`
    must see which of them are really complete before it calls them a tie.
    """
    out = list(deliveries)
    ordered = sorted(range(len(out)), key=lambda i: (out[i].delivered_at, out[i].version), reverse=True)
    settled: dt.datetime | None = None  # submitted time of the first complete run
    for index in ordered:
        delivery = out[index]
        if settled is not None and delivery.delivered_at != settled:
            break
        if delivery.incomplete or delivery.empty or delivery.manifest_uri is None:
            if not (delivery.incomplete or delivery.empty):
                settled = delivery.delivered_at
            continue
        problems, counted = _row_count_problems(store, delivery, present)
        if not counted:
            continue  # not settled: older runs are counted too, in case this one turns out broken
        out[index] = Delivery(**{**delivery.__dict__, "problems": tuple(problems)})
        if not out[index].incomplete:
            settled = delivery.delivered_at
    return out
