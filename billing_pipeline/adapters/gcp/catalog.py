"""Lookup tables GCP billing data needs to become FOCUS 1.2: service categories, region names, units.

Applied to the distinct values of a delivery (`distinct_lookup`), never with per-row regexes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from billing_pipeline.platform.lookup import lookup

# service.description -> (ServiceCategory, ServiceSubcategory)
SERVICES: dict[str, tuple[str, str]] = {
    "Compute Engine": ("Compute", "Virtual Machines"),
    "Kubernetes Engine": ("Compute", "Containers"),
    "Cloud Run": ("Compute", "Containers"),
    "Cloud Functions": ("Compute", "Serverless Compute"),
    "App Engine": ("Compute", "Other (Compute)"),
    "Cloud Storage": ("Storage", "Object Storage"),
    "Filestore": ("Storage", "File Storage"),
    "Backup and DR Service": ("Storage", "Backup Storage"),
    "BigQuery": ("Databases", "Data Warehouses"),
    "BigQuery Storage API": ("Databases", "Data Warehouses"),
    "Cloud SQL": ("Databases", "Relational Databases"),
    "Cloud Spanner": ("Databases", "Relational Databases"),
    "AlloyDB": ("Databases", "Relational Databases"),
    "Cloud Bigtable": ("Databases", "NoSQL Databases"),
    "Cloud Firestore": ("Databases", "NoSQL Databases"),
    "Cloud Memorystore for Redis": ("Databases", "Caching"),
    "Networking": ("Networking", "Network Connectivity"),
    "Cloud DNS": ("Networking", "Network Routing"),
    "Cloud CDN": ("Networking", "Content Delivery"),
    "Cloud Load Balancing": ("Networking", "Application Networking"),
    "Cloud Armor": ("Networking", "Network Security"),
    "Cloud Pub/Sub": ("Integration", "Messaging"),
    "Cloud Scheduler": ("Integration", "Workflow Orchestration"),
    "Workflows": ("Integration", "Workflow Orchestration"),
    "Dataflow": ("Analytics", "Data Processing"),
    "Cloud Dataproc": ("Analytics", "Data Processing"),
    "Looker Studio": ("Analytics", "Business Intelligence"),
    "Vertex AI": ("AI and Machine Learning", "Machine Learning"),
    "Gemini API": ("AI and Machine Learning", "Generative AI"),
    "Cloud Logging": ("Management and Governance", "Observability"),
    "Stackdriver Logging": ("Management and Governance", "Observability"),
    "Cloud Monitoring": ("Management and Governance", "Observability"),
    "Stackdriver Monitoring": ("Management and Governance", "Observability"),
    "Support": ("Management and Governance", "Support"),
    "Security Command Center": ("Security", "Security Posture Management"),
    "Secret Manager": ("Security", "Secret Management"),
    "Cloud Key Management Service (KMS)": ("Security", "Secret Management"),
    "Identity Platform": ("Identity", "Identity and Access Management"),
    "Artifact Registry": ("Developer Tools", "Other (Developer Tools)"),
    "Cloud Build": ("Developer Tools", "Continuous Integration and Deployment"),
}
OTHER = ("Other", "Other (Other)")

REGIONS: dict[str, str] = {
    "us-central1": "Iowa",
    "us-east1": "South Carolina",
    "us-east4": "Northern Virginia",
    "us-east5": "Columbus",
    "us-south1": "Dallas",
    "us-west1": "Oregon",
    "us-west2": "Los Angeles",
    "us-west3": "Salt Lake City",
    "us-west4": "Las Vegas",
    "northamerica-northeast1": "Montreal",
    "northamerica-northeast2": "Toronto",
    "southamerica-east1": "Sao Paulo",
    "southamerica-west1": "Santiago",
    "europe-west1": "Belgium",
    "europe-west2": "London",
    "europe-west3": "Frankfurt",
    "europe-west4": "Netherlands",
    "europe-west6": "Zurich",
    "europe-west8": "Milan",
    "europe-west9": "Paris",
    "europe-north1": "Finland",
    "europe-central2": "Warsaw",
    "europe-southwest1": "Madrid",
    "asia-east1": "Taiwan",
    "asia-east2": "Hong Kong",
    "asia-northeast1": "Tokyo",
    "asia-northeast2": "Osaka",
    "asia-northeast3": "Seoul",
    "asia-south1": "Mumbai",
    "asia-south2": "Delhi",
    "asia-southeast1": "Singapore",
    "asia-southeast2": "Jakarta",
    "australia-southeast1": "Sydney",
    "australia-southeast2": "Melbourne",
    "me-west1": "Tel Aviv",
    "me-central1": "Doha",
    "africa-south1": "Johannesburg",
}

# GCP unit spellings -> FOCUS Unit Format
UNITS: dict[str, str] = {
    "byte": "B",
    "bytes": "B",
    "kibibyte": "KiB",
    "mebibyte": "MiB",
    "gibibyte": "GiB",
    "tebibyte": "TiB",
    "pebibyte": "PiB",
    "gigabyte": "GB",
    "terabyte": "TB",
    "second": "Seconds",
    "seconds": "Seconds",
    "minute": "Minutes",
    "hour": "Hours",
    "hours": "Hours",
    "day": "Days",
    "month": "Months",
    "requests": "Requests",
    "request": "Requests",
    "count": "Count",
}
_TIME_PLURAL = {
    "second": "Seconds",
    "seconds": "Seconds",
    "minute": "Minutes",
    "hour": "Hours",
    "hours": "Hours",
    "day": "Days",
    "month": "Months",
    "year": "Years",
}
_COUNT_UNIT = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?: [A-Za-z][A-Za-z0-9]*)*$")


def focus_unit_name(unit: str | None) -> str | None:
    """A GCP unit (`gibibyte month`, `byte-seconds`, `hour`) in the FOCUS Unit Format (`GiB-Months`).

    Applied to distinct values only. A unit that cannot be spelled in the format is dropped (None),
    and the delivered one stays in an `x_` column.
    """
    if unit is None or not unit.strip():
        return None
    value = unit.strip()
    if value.lower() in UNITS:
        return UNITS[value.lower()]
    parts = re.split(r"[ \-]", value.lower())
    if len(parts) == 2 and parts[0] in UNITS and parts[1] in _TIME_PLURAL:
        return f"{UNITS[parts[0]]}-{_TIME_PLURAL[parts[1]]}"
    words = " ".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", value) if w)
    return words if _COUNT_UNIT.match(words) else None


def distinct_lookup(expr: pl.Expr, distinct: list[str | None], function: Callable[[str], str | None]) -> pl.Expr:
    """`expr` mapped through `function`, evaluated once per distinct value (not per row)."""
    return lookup(expr, {value: function(value) for value in distinct if value is not None})
