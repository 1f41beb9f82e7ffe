"""A real GCS JSON API for tests: `gcp-storage-emulator` on 127.0.0.1, started and stopped by PID.

gcsfs reaches it through `STORAGE_EMULATOR_HOST` with `token="anon"`. gcsfs chooses its filesystem class
when first imported: with `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT` unset or true it picks the experimental
one, whose bucket-type lookup waits 60 s against an emulator, so the variable must be false by then.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .s3 import free_port, local_server

GCS_TEST_OPTIONS = {"token": "anon", "project": "billing-test"}


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """Start the emulator (in memory) on a free loopback port; yields its endpoint URL; stops it by PID."""
    port = free_port()
    executable = Path(sys.executable).with_name("gcp-storage-emulator")
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(executable), "start", "-H", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    with local_server(command, f"{endpoint}/storage/v1/b", "gcp-storage-emulator"):
        yield endpoint
