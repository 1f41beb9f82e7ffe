"""`manifest.json` and its `blobs[]` entries as Cost Management writes them (the generator and the
tests write Azure export runs with these)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline.adapters.base import read_export_file


def manifest_document(
    run_id: str,
    blobs: list[dict[str, Any]],
    dataset: str = "ActualCost",
    submitted: dt.datetime | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    export_name: str = "export",
    overwrite: bool = False,
    file_format: str = "Csv",
    compression: str = "Gzip",
) -> dict[str, Any]:
    """A `manifest.json` as Cost Management writes it (used by the generator and the tests)."""
    submitted = submitted or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return {
        "manifestVersion": "2024-04-01",
        "byteCount": sum(int(b.get("byteCount") or 0) for b in blobs),
        "blobCount": len(blobs),
        "dataRowCount": sum(int(b.get("dataRowCount") or 0) for b in blobs),
        "exportConfig": {
            "exportName": export_name,
            "resourceId": f"/providers/Microsoft.Billing/billingAccounts/0/providers/Microsoft.CostManagement/"
            f"exports/{export_name}",
            "dataVersion": "2023-05-01",
            "apiVersion": "2023-07-01-preview",
            "type": dataset,
            "timeFrame": "MonthToDate",
            "granularity": "Daily",
        },
        "deliveryConfig": {
            "partitionData": True,
            "dataOverwriteBehavior": "OverwritePreviousReport" if overwrite else "CreateNewReport",
            "fileFormat": file_format,
            "compressionMode": compression,
            "containerUri": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/costs",
            "rootFolderPath": "exports",
        },
        "runInfo": {
            "executionType": "Scheduled",
            "submittedTime": submitted.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "runId": run_id,
            "startDate": f"{start or dt.date(2026, 1, 1):%Y-%m-%d}T00:00:00",
            "endDate": f"{end or dt.date(2026, 1, 31):%Y-%m-%d}T00:00:00",
        },
        "blobs": blobs,
    }


def blob_entry(path: Path, container_relative: str) -> dict[str, Any]:
    """One `blobs[]` entry for a written file: its name in the container, bytes and data rows."""
    rows = int(read_export_file(path, "auto").select(pl.len()).collect().item())
    return {"blobName": container_relative, "byteCount": path.stat().st_size, "dataRowCount": rows}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
