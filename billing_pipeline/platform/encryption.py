"""Encryption at rest and private file modes for the lake.

- `s3://` lake: every write carries SSE-KMS with the configured key, through s3fs's
  `s3_additional_kwargs` (s3fs adds them to the calls that accept them: PutObject, CreateMultipartUpload,
  CopyObject; reads are unaffected, so the landing zone is read as before).
- `gs://` lake: the customer-managed key is kept as the storage option `kms_key_name` (gcsfs accepts and
  ignores it at filesystem level); the store's write paths pass it to `GCSFileSystem.open(...,
  kms_key_name=...)`, which uploads with `kmsKeyName`.
- local lake: folders the store creates get mode 0750 and files 0640 (owner and group only), whatever
  the process umask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from billing_pipeline.platform.lifecycle_config import LakeEncryptionConfig

PRIVATE_FILE_MODE = 0o640
PRIVATE_DIR_MODE = 0o750
GCS_KMS_OPTION = "kms_key_name"
S3_EXTRA_KWARGS = "s3_additional_kwargs"


def s3_encryption_kwargs(kms_key_id: str) -> dict[str, str]:
    """The S3 request parameters for SSE-KMS with one customer-managed key."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}


def lake_storage_options(
    storage_options: dict[str, Any], encryption: LakeEncryptionConfig, lake_url: str
) -> dict[str, Any]:
    """`storage_options` with the lake's encryption folded in (unchanged when no key is configured)."""
    key = encryption.kms_key_id
    if key is None:
        return dict(storage_options)
    if lake_url.startswith(("gs://", "gcs://")):
        return {**storage_options, GCS_KMS_OPTION: key}
    extra = {**storage_options.get(S3_EXTRA_KWARGS, {}), **s3_encryption_kwargs(key)}
    return {**storage_options, S3_EXTRA_KWARGS: extra}


def remote_write_kwargs(fs: Any) -> dict[str, str]:
    """Keyword arguments `fs.open(path, "wb", ...)` needs to encrypt (only gcsfs needs any)."""
    key = getattr(fs, "storage_options", {}).get(GCS_KMS_OPTION)
    if key and "gcs" in getattr(fs, "protocol", ()):
        return {GCS_KMS_OPTION: key}
    return {}


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parent with mode 0750 (existing folders are left as they are)."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # a concurrent writer made it first
            continue
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask


def make_private_file(path: str | os.PathLike[str]) -> None:
    """Give a file the lake's mode 0640 (owner read-write, group read)."""
    os.chmod(path, PRIVATE_FILE_MODE)
