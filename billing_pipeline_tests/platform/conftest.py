"""Fixtures of the platform tests: a GCS emulator beside the moto S3 server of the top-level conftest."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from ..gcs import gcs_emulator

# Before anything imports gcsfs (it reads this once, at import): see `billing_pipeline_tests.gcs`.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    """A GCS emulator on 127.0.0.1 that gcsfs (`token="anon"`) reaches through STORAGE_EMULATOR_HOST, per module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        if "gcsfs" in sys.modules:
            import gcsfs  # noqa: PLC0415
            from gcsfs.core import GCSFileSystem  # noqa: PLC0415

            assert gcsfs.GCSFileSystem is GCSFileSystem, "gcsfs was imported with its experimental class"
        with gcs_emulator() as endpoint:
            patch.setenv("STORAGE_EMULATOR_HOST", endpoint)
            _forget_gcs_clients()
            try:
                yield endpoint
            finally:
                _forget_gcs_clients()


def _forget_gcs_clients() -> None:
    """gcsfs caches clients per options; one built for another emulator port must not be reused."""
    from gcsfs.core import GCSFileSystem  # noqa: PLC0415

    GCSFileSystem.clear_instance_cache()
