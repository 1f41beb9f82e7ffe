"""One way to reach files, local or in an object store, and atomic Parquet writes.

Listing and small reads go through fsspec (s3fs for `s3://`, gcsfs for `gs://`). Large reads are
staged to local disk first and scanned lazily by polars, so memory stays bounded whatever the
store; writes are streamed to a local temporary file and then published in one step (a rename
locally, a single PUT in an object store), so a reader never sees half a slice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import polars as pl
from fsspec.core import url_to_fs

from billing_pipeline.platform.encryption import make_private_dirs, make_private_file, remote_write_kwargs

log = logging.getLogger(__name__)

# Row groups of 100k rows on every sink, so readers (DuckDB, Athena, the next layer) can prune by
# row-group statistics at a useful granularity. This is not a memory bound: peak memory of the
# layers was measured unchanged with it (see README, "Performance").
ROW_GROUP_ROWS = 100_000

# Every Parquet file the pipeline writes. zstd at level 1 rather than polars' default 3: encoding
# is the largest single cost of a layer's pass, and a 1M-row normalized slice was written in 2.18 s
# instead of 2.45 s for 103 MiB instead of 102 MiB.
PARQUET_OPTIONS: dict[str, Any] = {
    "row_group_size": ROW_GROUP_ROWS,
    "compression": "zstd",
    "compression_level": 1,
    "statistics": True,
}


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join URL / path segments with `/` (fsspec paths use forward slashes everywhere)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


# Error names / texts of a denied read: PermissionError (local, s3fs maps AccessDenied to it), botocore's
# AccessDenied, gcsfs / HTTP "Forbidden". A bare "403" is not enough: file names contain numbers.
DENIED_MARKERS = ("PermissionError", "AccessDenied", "Access Denied", "Forbidden", "HTTP 403", "status 403")


def is_access_denied(text: str) -> bool:
    """True for a store error that means "not allowed" (M10 counts these), not "broken"."""
    return any(marker in text for marker in DENIED_MARKERS)


@dataclass(frozen=True)
class FileInfo:
    """What a listing tells about a file: enough to notice a change without reading it."""

    url: str
    size: int
    modified: str
    etag: str

    @property
    def identity(self) -> str:
        """What says a file is unchanged without reading it: path, size and ETag (or mtime)."""
        return f"{self.url}:{self.size}:{self.etag or self.modified}"


OBJECT_STORE_PROTOCOLS = ("s3", "s3a", "gs", "gcs")


def under_prefix(url: str, prefix: str) -> bool:
    """Whether `url` is `prefix` or lies under it, on a path boundary (`s3://lake` does not cover `s3://lake2`).

    A bare protocol (`s3://`) covers every URL of that protocol.
    """
    if prefix.endswith("://"):
        return url.startswith(prefix)
    base = prefix.rstrip("/")
    return url == base or url.startswith(base + "/")


def options_for_url(url: str, default_options: dict[str, Any], locations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The storage options for `url`: those of the longest location prefix covering it, else the default
    (`storage_options`) for an object-store URL, else none. A location's options replace the default whole,
    so an S3 landing zone's endpoint never leaks into a GCS lake's client or the reverse."""
    matching = [prefix for prefix in locations if under_prefix(url, prefix)]
    if matching:
        return dict(locations[max(matching, key=len)])
    protocol = url.split("://", 1)[0] if is_remote(url) else "file"
    return dict(default_options) if protocol in OBJECT_STORE_PROTOCOLS else {}


class Store:
    """A filesystem rooted nowhere in particular, built from a URL and storage options.

    `storage_options` apply to every `s3://` / `gs://` URL; `locations` (URL prefix -> options) override
    them for the URLs under a prefix, the longest prefix winning (`options_for_url`).
    """

    def __init__(
        self, storage_options: dict[str, Any] | None = None, locations: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.storage_options = dict(storage_options or {})
        self.locations = {prefix: dict(options) for prefix, options in (locations or {}).items()}
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    def options(self, url: str) -> dict[str, Any]:
        """The storage options the client of `url` is built with (they may hold credentials: never log them)."""
        return options_for_url(url, self.storage_options, self.locations)

    def fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, path = url_to_fs(url, **self.options(url))
        return fs, path

    def _url(self, fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
        if not is_remote(like):
            return path
        protocol = like.split("://", 1)[0]
        return f"{protocol}://{path}"

    def invalidate(self, url: str) -> None:
        """Forget cached listings (s3fs caches them per process; sensors live long)."""
        fs, path = self.fs(url)
        fs.invalidate_cache(path)

    def exists(self, url: str) -> bool:
        fs, path = self.fs(url)
        return bool(fs.exists(path))

    def info(self, url: str) -> FileInfo:
        fs, path = self.fs(url)
        return self._file_info(fs, fs.info(path), url)

    def _file_info(self, fs: fsspec.AbstractFileSystem, entry: dict[str, Any], like: str) -> FileInfo:
        modified = entry.get("LastModified") or entry.get("mtime") or entry.get("updated") or ""
        if hasattr(modified, "isoformat"):
            modified = modified.isoformat()
        etag = str(entry.get("ETag") or entry.get("etag") or entry.get("md5Hash") or "").strip('"')
        return FileInfo(
            url=self._url(fs, entry["name"], like),
            size=int(entry.get("size") or 0),
            modified=str(modified),
            etag=etag,
        )

    def find(self, url: str, maxdepth: int | None = None) -> list[FileInfo]:
        """Every file under `url` (recursively), sorted by path; an absent folder is empty."""
        fs, path = self.fs(url)
        if not fs.exists(path):
            return []
        entries = fs.find(path, maxdepth=maxdepth, detail=True)
        return [self._file_info(fs, entry, url) for _, entry in sorted(entries.items())]

    def list_dirs(self, url: str) -> list[str]:
        """Immediate sub-folders of `url`, as URLs."""
        fs, path = self.fs(url)
        if not fs.exists(path):
            return []
        return sorted(
            self._url(fs, entry["name"], url) for entry in fs.ls(path, detail=True) if entry["type"] == "directory"
        )

    def read_bytes(self, url: str) -> bytes:
        fs, path = self.fs(url)
        with fs.open(path, "rb") as handle:
            return handle.read()

    def write_bytes(self, url: str, data: bytes) -> None:
        """Write a small object atomically (temp file + rename locally, one PUT remotely)."""
        fs, path = self.fs(url)
        if is_remote(url):
            if write_kwargs := remote_write_kwargs(fs):
                with fs.open(path, "wb", **write_kwargs) as out:
                    out.write(data)
                return
            fs.pipe_file(path, data)
            return
        make_private_dirs(Path(path).parent)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        Path(tmp).write_bytes(data)
        make_private_file(tmp)
        os.replace(tmp, path)

    def copy_in(self, source_url: str, dest_url: str) -> None:
        """Copy a file (e.g. into quarantine) without modifying the source."""
        data_fs, data_path = self.fs(source_url)
        with data_fs.open(data_path, "rb") as handle:
            if is_remote(dest_url):
                fs, path = self.fs(dest_url)
                with fs.open(path, "wb", **remote_write_kwargs(fs)) as out:
                    shutil.copyfileobj(handle, out)
            else:
                make_private_dirs(Path(dest_url).parent)
                with open(dest_url, "wb") as out:
                    shutil.copyfileobj(handle, out)
                make_private_file(dest_url)

    def remove(self, url: str) -> None:
        fs, path = self.fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def stage(self, url: str, workdir: Path) -> Path:
        """Stage `url` to `workdir` (if remote) and return the local path; caller owns `workdir`."""
        if not is_remote(url):
            return Path(url)
        fs, path = self.fs(url)
        digest = hashlib.sha1(url.encode()).hexdigest()[:12]
        target = workdir / f"{digest}-{Path(path).name}"
        fs.get(path, str(target))
        return target

    def publish_file(self, local_file: Path, dest_url: str) -> None:
        """Move a finished local file to `dest_url` in one step (private modes locally, the lake's key remotely)."""
        if is_remote(dest_url):
            fs, path = self.fs(dest_url)
            if write_kwargs := remote_write_kwargs(fs):
                with open(local_file, "rb") as handle, fs.open(path, "wb", **write_kwargs) as out:
                    shutil.copyfileobj(handle, out)
            else:
                fs.put_file(str(local_file), path)
            local_file.unlink(missing_ok=True)
            return
        make_private_dirs(Path(dest_url).parent)
        make_private_file(local_file)
        try:
            os.replace(local_file, dest_url)
        except OSError:
            # another filesystem: copy next to the target, then rename atomically
            tmp = f"{dest_url}.tmp-{uuid.uuid4().hex}"
            shutil.copyfile(local_file, tmp)
            make_private_file(tmp)
            os.replace(tmp, dest_url)
            local_file.unlink(missing_ok=True)

    def write_parquet(
        self,
        frame: pl.LazyFrame | pl.DataFrame,
        dest_url: str,
        workdir: Path,
        optimizations: pl.QueryOptFlags | None = None,
    ) -> None:
        """Stream `frame` to Parquet in `workdir` (scratch, outside the lake), then publish it atomically.

        Writing outside the lake means a failed or killed write never leaves a partial file beside
        the slice it would have replaced (polars may still be creating the file when it raises).
        `optimizations`: polars' query optimizations for the sink, when the frame needs other than the default.
        """
        tmp = workdir / f".tmp-{uuid.uuid4().hex}.partial"
        try:
            if isinstance(frame, pl.DataFrame):
                frame.write_parquet(tmp, **PARQUET_OPTIONS)
            else:
                flags = pl.QueryOptFlags() if optimizations is None else optimizations
                frame.sink_parquet(tmp, **PARQUET_OPTIONS, optimizations=flags)
            self.publish_file(tmp, dest_url)
        finally:
            tmp.unlink(missing_ok=True)


# Scratch folders are named `<prefix>scratch-pid<owner pid>-<random>`, so a later process can tell
# whose they are: a run killed with SIGKILL never reaches the `finally` that removes its folder.
SCRATCH_MARK = "scratch-pid"
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_MARK) + r"(\d+)-[a-z0-9_]+$")
_swept: set[tuple[int, str]] = set()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie, or another user's process, counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


def remove_stale_scratch_dirs(directory: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders in `directory` (the temp dir) whose owning process is gone.

    Only folders named by `scratch_dir`, owned by this user and not symlinks; never those of a live
    process, since concurrent runs share the temp dir. A dead owner's pid reused by a new process keeps
    the folder until that process ends too (a leak, never a removal of live work).
    """
    root = Path(directory if directory is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _SCRATCH_NAME.search(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            log.info("removed scratch folder %s left by process %d, which no longer exists", entry.path, pid)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str = "billing-") -> Iterator[Path]:
    """A local working folder removed afterwards, for staged inputs and unpublished outputs.

    The first one a process opens also removes the folders that dead processes left behind.
    """
    key = (os.getpid(), tempfile.gettempdir())
    if key not in _swept:
        _swept.add(key)
        remove_stale_scratch_dirs(key[1])
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{SCRATCH_MARK}{os.getpid()}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
