"""Finding a delivery's files: manifest-less listings, and manifests resolved below the configured root.

Manifests name files by the bucket the provider wrote to; a file is read only when it resolves
inside the folder its manifest describes and was really delivered (`check_listed_file`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath

from billing_pipeline.adapters.cells import modified_at, parse_timestamp
from billing_pipeline.adapters.deliveries import Delivery, FileProblem
from billing_pipeline.platform.storage import FileInfo, Store, join


def listing_fingerprint(files: list[FileInfo]) -> str:
    """A delivery's fingerprint from its file listing (cheap; the content fingerprints are per day)."""
    return "|".join(f.identity for f in files)


def files_delivery(
    source: str, billing_period: str, files: list[FileInfo], file_format: str, mode: str
) -> list[Delivery]:
    """A manifest-less delivery (overwrite mode, appends, plain folders): every listed file, versioned
    by a hash of the listing; `mode` names the kind of version (`overwrite`, `append`, `files`)."""
    if not files:
        return []
    fingerprint = listing_fingerprint(files)
    return [
        Delivery(
            source=source,
            billing_period=billing_period,
            version=f"{mode}-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
            delivered_at=max(modified_at(f.modified) for f in files),
            files=tuple(f.url for f in files),
            file_format=file_format,
            fingerprint=fingerprint,
        )
    ]


def relative_to_anchor(uri: str, anchor_pattern: str) -> str | None:
    """The part of `uri` from the first match of `anchor_pattern` on (None if it never matches).

    Manifests name files by the bucket AWS wrote to; replicated or mirrored exports must be resolved
    against the configured root instead, by their path below a known anchor.
    """
    match = re.search(anchor_pattern, uri)
    return uri[match.start() :] if match else None


def is_inside(relative: str, prefix: str) -> bool:
    """True when `relative` stays inside `prefix` (no `..` escapes, no absolute paths)."""
    parts = PurePosixPath(relative).parts
    if ".." in parts or relative.startswith("/"):
        return False
    return relative.startswith(prefix.rstrip("/") + "/")


def load_manifest(store: Store, url: str) -> tuple[dict | None, FileProblem | None]:
    try:
        document = json.loads(store.read_bytes(url))
    except Exception as error:  # noqa: BLE001 - any unreadable manifest is reported, not raised
        return None, FileProblem(url, f"manifest is not readable JSON ({error})", "bad_manifest")
    if not isinstance(document, dict):
        return None, FileProblem(url, "manifest is not a JSON object", "bad_manifest")
    return document, None


def check_listed_file(
    name: str,
    anchor: str,
    folder: str,
    root: str,
    present: dict[str, FileInfo],
    accepted: list[str],
    manifest_url: str,
    outside_reason: str,
) -> str | FileProblem:
    """A file a manifest lists, resolved below `root`: its URL, or why it is not read.

    Outside the manifest's `folder` (`outside_prefix`), absent from the listing `present` (`missing`)
    or already in `accepted` (`listed_twice`): what every manifest-driven delivery must refuse.
    """
    relative = relative_to_anchor(name, anchor)
    if relative is None or not is_inside(relative, folder):
        return FileProblem(name, outside_reason, "outside_prefix")
    local = join(root, relative)
    if local not in present:
        return FileProblem(local, f"listed in manifest {manifest_url} but not delivered", "missing")
    if local in accepted:
        return FileProblem(local, f"listed twice in manifest {manifest_url}; read once", "listed_twice")
    return local


def discover_data_exports(
    store: Store, source: str, root: str, billing_period: str, file_format: str
) -> list[Delivery]:
    """Deliveries of an AWS Data Exports layout (CUR 2.0, FOCUS): one per manifest.

    `<root>/metadata/BILLING_PERIOD=YYYY-MM/[<executionId>/]<export>-Manifest.json` lists `dataFiles`
    as full URIs; each is resolved below `<root>/data/BILLING_PERIOD=YYYY-MM/` and refused if it
    points anywhere else. A delivery is dated by the manifest's `exportTime` (when the refresh ran),
    the manifest object's LastModified only when it states none: a copied or replicated export
    keeps its export times, not its object times.
    """
    period_dir = f"BILLING_PERIOD={billing_period}"
    metadata = join(root, "metadata", period_dir)
    manifests = [f for f in store.find(metadata) if f.url.endswith("Manifest.json")]
    present = {f.url: f for f in store.find(join(root, "data", period_dir))}
    deliveries: list[Delivery] = []
    for manifest in manifests:
        document, problem = load_manifest(store, manifest.url)
        fallback_time = modified_at(manifest.modified)
        if document is None:
            deliveries.append(
                Delivery(source, billing_period, manifest.url, fallback_time, (), manifest.url, (problem,))
            )
            continue
        version = str(document.get("executionId") or manifest.url)
        problems: list[FileProblem] = []
        files: list[str] = []
        for uri in document.get("dataFiles") or []:
            listed = check_listed_file(
                str(uri),
                r"data/BILLING_PERIOD=",
                f"data/{period_dir}",
                root,
                present,
                files,
                manifest.url,
                f"manifest {manifest.url} lists a file outside its export's data/{period_dir}/ prefix",
            )
            if isinstance(listed, FileProblem):
                problems.append(listed)
                continue
            files.append(listed)
        fingerprint = listing_fingerprint([present[u] for u in files])
        deliveries.append(
            Delivery(
                source=source,
                billing_period=billing_period,
                version=version,
                delivered_at=parse_timestamp(document.get("exportTime"), fallback_time),
                files=tuple(files),
                manifest_uri=manifest.url,
                problems=tuple(problems),
                file_format=file_format,
                fingerprint=fingerprint,
            )
        )
    return deliveries
