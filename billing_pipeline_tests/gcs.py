"""A real GCS JSON API for tests: `gcp-storage-emulator` on 127.0.0.1, started and stopped by PID.

gcsfs reaches it through `STORAGE_EMULATOR_HOST` with `token="anon"`. gcsfs chooses its filesystem class
when first imported: with `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT` unset or true it picks the experimental
one, whose bucket-type lookup waits 60 s against an emulator, so the variable must be false by then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .s3 import free_port

GCS_TEST_OPTIONS = {"token": "anon", "project": "billing-test"}


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """Start the emulator (in memory) on a free loopback port; yields its endpoint URL; stops it by PID."""
    port = free_port()
    executable = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen(
        [str(executable), "start", "-H", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=1)
                break
            except urllib.error.HTTPError:  # it answers: up
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not start on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
