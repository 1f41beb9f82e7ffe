"""Where CUR deliveries are: AWS Data Exports manifests (CUR 2.0) and legacy CUR assemblies.

Legacy CUR: `<root>/<yyyymmdd-yyyymmdd>/[<assemblyId>/]<name>-Manifest.json` (CSV), or the Athena
integration's `<root>/year=YYYY/month=M/*.parquet` (snake_case, overwrite mode).

Which assembly is current. AWS rewrites the period-level manifest `<yyyymmdd-yyyymmdd>/<name>-Manifest.json`
with every delivery; its `assemblyId` names the current assembly, and that delivery is marked
`named_current`, so it is current whatever the objects' times say (a landing zone copied in one
go, as `aws s3 sync` does, gives every object the same LastModified). The legacy manifest
states no delivery time (its fields: assemblyId, account, columns, charset, compression,
contentType, reportId, reportName, billingPeriod, bucket, reportKeys, additionalArtifactKeys),
so the other assemblies are dated by their manifest object's LastModified, the only evidence
left. When the named assembly is incomplete (or the period-level manifest is unreadable), it is
passed over and the others are taken newest first, as for any passed-over delivery; when the
newest complete ones share a LastModified with other files, nothing is published and the tie is
reported naming them (`choose_current`). Without a period-level manifest the same time order
decides.
"""

from __future__ import annotations

import re
from dataclasses import replace

from billing_pipeline.adapters.cells import modified_at
from billing_pipeline.adapters.deliveries import Delivery, FileProblem
from billing_pipeline.adapters.manifests import check_listed_file, files_delivery, listing_fingerprint, load_manifest
from billing_pipeline.platform.storage import FileInfo, Store, join


def discover_legacy_cur(store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
    """The Athena layout's files as one delivery, else one delivery per assembly (module doc)."""
    year, month = billing_period.split("-")
    athena_dir = join(root, f"year={int(year)}", f"month={int(month)}")
    athena_files = [f for f in store.find(athena_dir) if f.url.endswith(".parquet")]
    if athena_files:
        return files_delivery(source, billing_period, athena_files, "parquet", "overwrite")
    start = f"{year}{month}01"
    period_dirs = [d for d in store.list_dirs(root) if d.rstrip("/").rsplit("/", 1)[-1].startswith(f"{start}-")]
    deliveries: dict[str, Delivery] = {}
    for period_dir in period_dirs:
        range_name = period_dir.rstrip("/").rsplit("/", 1)[-1]
        listing = store.find(period_dir, maxdepth=2)
        present = {f.url: f for f in listing}
        for manifest in (f for f in listing if f.url.endswith("-Manifest.json")):
            delivery = assembly_delivery(
                store, source, root, billing_period, range_name, manifest, present, file_format
            )
            if manifest.url.rsplit("/", 1)[0] == period_dir.rstrip("/"):
                delivery = replace(delivery, named_current=True)  # the period-level manifest names it
            known = deliveries.get(delivery.version)
            if known is not None:
                # the period-level manifest and the assembly's own describe one delivery: keep the later
                later = delivery if delivery.delivered_at > known.delivered_at else known
                delivery = replace(later, named_current=known.named_current or delivery.named_current)
            deliveries[delivery.version] = delivery
    return list(deliveries.values())


def assembly_delivery(
    store: Store,
    source: str,
    root: str,
    billing_period: str,
    range_name: str,
    manifest: FileInfo,
    present: dict[str, FileInfo],
    file_format: str,
) -> Delivery:
    """The delivery one legacy manifest describes: its `reportKeys` resolved below `<root>/<range>/`."""
    document, problem = load_manifest(store, manifest.url)
    delivered_at = modified_at(manifest.modified)
    if document is None:
        return Delivery(source, billing_period, manifest.url, delivered_at, (), manifest.url, (problem,))
    assembly = str(document.get("assemblyId") or "")
    problems: list[FileProblem] = []
    files: list[str] = []
    for key in document.get("reportKeys") or []:
        listed = check_listed_file(
            str(key),
            re.escape(range_name) + "/",
            range_name,
            root,
            present,
            files,
            manifest.url,
            f"manifest {manifest.url} lists a file outside its {range_name}/ prefix",
        )
        if isinstance(listed, FileProblem):
            problems.append(listed)
            continue
        files.append(listed)
    return Delivery(
        source=source,
        billing_period=billing_period,
        version=assembly or manifest.url,
        delivered_at=delivered_at,
        files=tuple(files),
        manifest_uri=manifest.url,
        problems=tuple(problems),
        file_format=file_format,
        fingerprint=listing_fingerprint([present[u] for u in files]),
    )
