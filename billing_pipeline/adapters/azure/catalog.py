"""Lookup tables Azure billing data needs to become FOCUS 1.2: service categories, regions, units.

Applied to the distinct values of a delivery, never per row.
"""

from __future__ import annotations

import re

# MeterCategory -> (ServiceCategory, ServiceSubcategory)
SERVICES: dict[str, tuple[str, str]] = {
    "Virtual Machines": ("Compute", "Virtual Machines"),
    "Virtual Machines Licenses": ("Compute", "Virtual Machines"),
    "Azure App Service": ("Compute", "Other (Compute)"),
    "Functions": ("Compute", "Serverless Compute"),
    "Azure Kubernetes Service": ("Compute", "Containers"),
    "Container Instances": ("Compute", "Containers"),
    "Container Registry": ("Compute", "Containers"),
    "Storage": ("Storage", "Object Storage"),
    "Backup": ("Storage", "Backup Storage"),
    "SQL Database": ("Databases", "Relational Databases"),
    "Azure Database for PostgreSQL": ("Databases", "Relational Databases"),
    "Azure Database for MySQL": ("Databases", "Relational Databases"),
    "Azure Cosmos DB": ("Databases", "NoSQL Databases"),
    "Redis Cache": ("Databases", "Caching"),
    "Azure Synapse Analytics": ("Analytics", "Analytics Platforms"),
    "Azure Data Factory v2": ("Analytics", "Data Processing"),
    "Azure Databricks": ("Analytics", "Data Processing"),
    "Bandwidth": ("Networking", "Network Connectivity"),
    "Virtual Network": ("Networking", "Network Infrastructure"),
    "Load Balancer": ("Networking", "Application Networking"),
    "Application Gateway": ("Networking", "Application Networking"),
    "Azure DNS": ("Networking", "Network Routing"),
    "Content Delivery Network": ("Networking", "Content Delivery"),
    "Azure Firewall": ("Networking", "Network Security"),
    "VPN Gateway": ("Networking", "Network Connectivity"),
    "Event Hubs": ("Integration", "Messaging"),
    "Service Bus": ("Integration", "Messaging"),
    "Logic Apps": ("Integration", "Workflow Orchestration"),
    "API Management": ("Integration", "API Management"),
    "Azure Monitor": ("Management and Governance", "Observability"),
    "Log Analytics": ("Management and Governance", "Observability"),
    "Advanced Threat Protection": ("Security", "Threat Detection and Response"),
    "Microsoft Defender for Cloud": ("Security", "Security Posture Management"),
    "Security Center": ("Security", "Security Posture Management"),
    "Key Vault": ("Security", "Secret Management"),
    "Azure Machine Learning": ("AI and Machine Learning", "Machine Learning"),
    "Cognitive Services": ("AI and Machine Learning", "Other (AI and Machine Learning)"),
    "Azure OpenAI Service": ("AI and Machine Learning", "Generative AI"),
}
OTHER = ("Other", "Other (Other)")

REGIONS: dict[str, str] = {
    "eastus": "East US",
    "eastus2": "East US 2",
    "centralus": "Central US",
    "northcentralus": "North Central US",
    "southcentralus": "South Central US",
    "westcentralus": "West Central US",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "canadacentral": "Canada Central",
    "canadaeast": "Canada East",
    "brazilsouth": "Brazil South",
    "northeurope": "North Europe",
    "westeurope": "West Europe",
    "uksouth": "UK South",
    "ukwest": "UK West",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "switzerlandnorth": "Switzerland North",
    "norwayeast": "Norway East",
    "swedencentral": "Sweden Central",
    "polandcentral": "Poland Central",
    "italynorth": "Italy North",
    "eastasia": "East Asia",
    "southeastasia": "Southeast Asia",
    "japaneast": "Japan East",
    "japanwest": "Japan West",
    "koreacentral": "Korea Central",
    "centralindia": "Central India",
    "southindia": "South India",
    "australiaeast": "Australia East",
    "australiasoutheast": "Australia Southeast",
    "uaenorth": "UAE North",
    "southafricanorth": "South Africa North",
}
# Older exports name regions by meter-region style display names.
REGION_ALIASES: dict[str, str] = {
    "useast": "eastus",
    "useast2": "eastus2",
    "uswest": "westus",
    "uswest2": "westus2",
    "uscentral": "centralus",
    "usnorthcentral": "northcentralus",
    "ussouthcentral": "southcentralus",
    "usnorth": "northcentralus",
    "cacentral": "canadacentral",
    "euwest": "westeurope",
    "eunorth": "northeurope",
    "ukso": "uksouth",
}
NOT_A_REGION = ("unassigned", "global", "unknown", "")

_UNIT_WORDS: dict[str, str] = {
    "hour": "Hours",
    "hours": "Hours",
    "day": "Days",
    "days": "Days",
    "month": "Months",
    "months": "Months",
    "year": "Years",
    "minute": "Minutes",
    "minutes": "Minutes",
    "second": "Seconds",
    "seconds": "Seconds",
    "gb": "GB",
    "tb": "TB",
    "mb": "MB",
    "kb": "KB",
    "gib": "GiB",
    "tib": "TiB",
    "mib": "MiB",
}
_SINGULAR = {
    "Hours": "Hour",
    "Days": "Day",
    "Months": "Month",
    "Years": "Year",
    "Minutes": "Minute",
    "Seconds": "Second",
}
_COUNT_UNIT = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?: [A-Za-z][A-Za-z0-9]*)*$")


def focus_unit_name(unit: str | None) -> str | None:
    """Azure `UnitOfMeasure` (`1 Hour`, `100 Hours`, `10K`, `1 GB/Month`, `1 /Month`) in the FOCUS Unit
    Format (`Hours`, `100 Hours`, `10000 Units`, `GB-Months`, `Months`). Applied to distinct values."""
    if unit is None or not unit.strip():
        return None
    match = re.match(r"^\s*(\d+(?:\.\d+)?)?\s*([KkMm](?![A-Za-z]))?\s*(.*?)\s*$", unit)
    if match is None:
        return None
    number, scale, rest = match.groups()
    block = float(number) if number else 1.0
    block *= {"k": 1_000, "m": 1_000_000}.get((scale or "").lower(), 1)
    rest = rest.strip()
    if not rest:
        name = "Units"
    elif rest.startswith("/"):
        name = _UNIT_WORDS.get(rest[1:].strip().lower(), "")
        if name not in _SINGULAR:
            name = f"Units/{rest[1:].strip().title()}"
    elif "/" in rest:
        what, per = (p.strip() for p in rest.split("/", 1))
        size = _UNIT_WORDS.get(what.lower(), what)
        period = _UNIT_WORDS.get(per.lower(), per)
        name = f"{size}-{period}" if period in _SINGULAR else f"{size}/{per}"
    else:
        name = _UNIT_WORDS.get(rest.lower()) or " ".join(
            w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", rest) if w
        )
        if not _COUNT_UNIT.match(name):
            return None
    if block == 1:
        return name
    if block != int(block):
        return None
    return f"{int(block)} {name}"


def region_of(location: str) -> tuple[str | None, str | None]:
    """(RegionId, RegionName) of a delivered location: `EastUS`, `eastus`, `US East 2`, `Unassigned`."""
    key = re.sub(r"[^a-z0-9]", "", location.lower())
    if key in NOT_A_REGION:
        return None, None
    key = REGION_ALIASES.get(key, key)
    return key, REGIONS.get(key, location)
