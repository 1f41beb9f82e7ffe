"""A real S3 API for tests: moto's server on 127.0.0.1 over HTTP, started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_server(command: list[str], probe_url: str, name: str) -> Iterator[None]:
    """Run a test server (its own session), wait until `probe_url` answers, stop it by PID afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(probe_url, timeout=1)
                break
            except urllib.error.HTTPError:  # it answers, even if with an error: up
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start ({probe_url})") from None
                time.sleep(0.1)
        yield
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def moto_server() -> Iterator[str]:
    """Start `moto_server` on a free loopback port; yields its endpoint URL; stops it by PID."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    endpoint = f"http://127.0.0.1:{port}"
    with local_server([str(moto), "-H", "127.0.0.1", "-p", str(port)], f"{endpoint}/moto-api/", "moto_server"):
        yield endpoint


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def upload_tree(client, local_root: Path, bucket: str, prefix: str) -> int:
    """Copy a local landing zone into a bucket, preserving relative paths; returns files uploaded."""
    count = 0
    for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.relative_to(local_root).as_posix()}"
        client.upload_file(str(path), bucket, key)
        count += 1
    return count
