"""What a check evaluation tells the alert routing: the metadata keys every SLI and budget check writes,
and the check names the checks, the freshness sensor and the routing share. No Dagster here, so the
Dagster shell (checks, sensors, assets) and `alerts` import it alike."""

from __future__ import annotations

import re

from billing_pipeline.platform.config import SourceConfig

ROUTE_KEY = "alert/route"
SLO_NAME_KEY = "alert/slo"
SCOPE_KEY = "alert/scope"  # `latest`: one alert per check, whatever the partition (an SLO's burn is a state)
SUMMARY_KEY = "summary"
# JSON list of the cost budgets (team / total, at warn or over) an SLO's burning sources feed: the alert names them
THREATENED_BUDGETS_KEY = "budget/threatened"


def dagster_name(text: str) -> str:
    """Dagster names allow letters, digits and `_` only; source names may also hold `-`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def freshness_check_name(source: SourceConfig | str) -> str:
    """The freshness check of one source (each has its own expected latency)."""
    return f"freshness_{dagster_name(source if isinstance(source, str) else source.name)}"
