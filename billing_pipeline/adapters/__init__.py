"""Provider adapters: one per export format, each turning delivered files into FOCUS rows."""

from __future__ import annotations

from billing_pipeline.adapters.aws import AwsCur2Adapter, AwsLegacyCurAdapter
from billing_pipeline.adapters.azure import AzureAdapter
from billing_pipeline.adapters.base import Adapter, Delivery, DeliveryChoice, FileProblem, choose_current
from billing_pipeline.adapters.focus_native import FocusAdapter
from billing_pipeline.adapters.gcp import GcpAdapter

ADAPTERS: dict[str, Adapter] = {
    "aws_cur2": AwsCur2Adapter(),
    "aws_cur": AwsLegacyCurAdapter(),
    "focus": FocusAdapter(),
    "gcp": GcpAdapter(),
    "azure": AzureAdapter(),
}


def adapter_for(provider: str) -> Adapter:
    try:
        return ADAPTERS[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; supported: {sorted(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "Delivery", "DeliveryChoice", "FileProblem", "adapter_for", "choose_current"]
