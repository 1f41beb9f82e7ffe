"""Dagster resources shared by code locations: configuration and clients only, no pipeline logic."""

from __future__ import annotations

from functools import lru_cache

from dagster import ConfigurableResource

from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.storage import Store


@lru_cache(maxsize=8)
def _load(config_path: str) -> BillingConfig:
    return load_config(config_path)


class BillingResource(ConfigurableResource):
    """`billing.yaml` (chosen by `BILLING_CONFIG`) and the storage client for the landing zone and lake.

    Credentials never live here: s3fs / gcsfs find them in the environment or the cloud identity.
    """

    config_path: str

    @property
    def config(self) -> BillingConfig:
        return _load(self.config_path)

    def store(self) -> Store:
        return self.config.store()


__all__ = ["BillingResource"]
