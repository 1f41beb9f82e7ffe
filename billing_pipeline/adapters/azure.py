"""Azure Cost Management exports (ActualCost, AmortizedCost, FocusCost) to FOCUS 1.2.

Deliveries. A partitioned export run writes `<root>/<YYYYMMDD-YYYYMMDD>/[<runId>/]part_*.csv[.gz]`
(or `.parquet`) plus a `manifest.json` naming `runInfo.runId`, `blobs[{blobName, byteCount,
dataRowCount}]` and the total `dataRowCount`. One manifest = one delivery of the billing period
whose first day starts the date-range folder; its version is `<dataset>:<runId>` (the dataset,
`exportConfig.type`, travels with every row in `x_ExportVersion`). Month-to-date runs restate
the month, and the early-month re-export of the previous month is just a later run in that
month's folder: the latest *complete* run wins (`choose_current`). A run is incomplete, so held
back in favour of the previous complete run, when a blob is missing, has another size than its
`byteCount`, or holds another number of rows than its `dataRowCount` (or the blobs' rows do not
add up to the manifest's total). Only the newest runs are counted, until one is complete; counts
are cached per file identity. Overwrite mode keeps one manifest in place; create-new mode one per
run folder. Files without any manifest (older, non-partitioned exports) are each a delivery of
their own: the newest file wins. Runs are dated by `runInfo.submittedTime` (the manifest's
modification time only when it states none), manifest-less files by their modification time; two
complete candidates of the same time with other files are a tie, reported and never guessed.

Headers. EA (`Cost`, `BillingCurrency`, PascalCase), MCA (`CostInBillingCurrency`,
`billingCurrency`, camelCase), pay-as-you-go (`PreTaxCost`, `UsageDateTime`) and localized
headers (`Kategorie der Verbrauchseinheit (MeterCategory)`: the English name in parentheses) are
all matched case-insensitively through one alias table (`FIELDS`); values are never changed.
Dates `MM/DD/YYYY` (EA), `YYYY-MM-DD` and `DD.MM.YYYY` are read.

Cost views (DOMAIN.md):
- ActualCost: BilledCost = cost. Reservation-covered usage is priced 0 and the commitment purchase
  is a row of its own. EffectiveCost = cost, except a commitment purchase (EffectiveCost 0: in
  FOCUS a purchase that covers future usage is amortized onto that usage). The actual view holds
  no amortized amounts, so an ActualCost source understates EffectiveCost by the commitments;
  configure AmortizedCost or FocusCost where EffectiveCost matters.
- AmortizedCost: EffectiveCost = cost. Commitment-covered usage and `UnusedReservation` /
  `UnusedSavingsPlan` rows (FOCUS: Usage, CommitmentDiscountStatus Used / Unused) carry amortized
  amounts, which are not invoiced as such: their BilledCost is 0 (the purchase is billed, and shows
  in ActualCost). Every other row is billed at its cost. `raw_totals` applies the same rule, so
  conservation holds on the billed amount of either view.
- FocusCost: Microsoft's native FOCUS export, mapped by the FOCUS adapter.

Row identity. There is no row id, and several identical rows per resource, meter and day are
legitimate. The key is Microsoft's composite key taken to its limit, *every* delivered column, plus
the row's occurrence number among identical rows of its own file, plus a digest of the file's
content (row count and sums of row hashes: independent of row order). Within one run the blobs are
partitions of one dataset, so identical rows in different blobs are legitimate too (a partition
boundary can split repeats); only a blob that holds exactly the rows of another one (a blob
delivered twice under another name, a re-sent partition) repeats (row, occurrence, content) and is
dropped and counted. Runs never mix (one run per period is read), so an overlapping or restating
run cannot double anything. Keeping "the maximum count per row over the files" instead would drop
legitimate repeats that a partition boundary split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline.adapters.base import (
    DATETIME_FORMATS,
    MONEY_LIMIT,
    Delivery,
    FileProblem,
    check_listed_file,
    listing_fingerprint,
    load_manifest,
    modified_at,
    money_is_missing,
    money_problem,
    parse_datetime,
    parse_money,
    parse_timestamp,
    read_export_file,
)
from billing_pipeline.adapters.focus_native import FocusAdapter, tags_from_json
from billing_pipeline.adapters.tags import tags_json
from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.lookup import lookup
from billing_pipeline.platform.storage import FileInfo, Store

PROVIDER = "Microsoft"
DATA_SUFFIXES = (".csv", ".csv.gz", ".gz", ".parquet")
DATASETS = ("ActualCost", "AmortizedCost", "FocusCost")
AMORTIZED_CHARGE_TYPES = ("UnusedReservation", "UnusedSavingsPlan")
COMMITTED_MODELS = ("Reservation", "SavingsPlan")

# field -> header spellings (lowercase, localized headers reduced to the name in parentheses)
FIELDS: dict[str, tuple[str, ...]] = {
    "billing_account_id": ("billingaccountid",),
    "billing_account_name": ("billingaccountname",),
    "billing_profile_id": ("billingprofileid",),
    "subscription_id": ("subscriptionid", "subscriptionguid"),
    "subscription_name": ("subscriptionname",),
    "date": ("date", "usagedatetime"),
    "billing_period_start": ("billingperiodstartdate",),
    "billing_period_end": ("billingperiodenddate",),
    "cost": ("costinbillingcurrency", "cost", "pretaxcost"),
    "currency": ("billingcurrency", "billingcurrencycode", "currency"),
    "pricing_currency": ("pricingcurrency",),
    "payg_cost": ("paygcostinbillingcurrency",),
    "quantity": ("quantity", "usagequantity"),
    "unit": ("unitofmeasure",),
    "unit_price": ("unitprice",),
    "payg_price": ("paygprice",),
    "meter_id": ("meterid",),
    "meter_name": ("metername",),
    "meter_category": ("metercategory",),
    "meter_subcategory": ("metersubcategory",),
    "product": ("productname", "product"),
    "product_id": ("productid",),
    "part_number": ("partnumber",),
    "consumed_service": ("consumedservice",),
    "resource_id": ("resourceid", "instanceid", "instancename"),
    "resource_name": ("resourcename",),
    "resource_type": ("resourcetype",),
    "resource_group": ("resourcegroup", "resourcegroupname"),
    "location": ("resourcelocation", "location"),
    "availability_zone": ("availabilityzone",),
    "tags": ("tags",),
    "additional_info": ("additionalinfo",),
    "charge_type": ("chargetype",),
    "frequency": ("frequency",),
    "pricing_model": ("pricingmodel",),
    "reservation_id": ("reservationid",),
    "reservation_name": ("reservationname",),
    "benefit_id": ("benefitid",),
    "benefit_name": ("benefitname",),
    "invoice_id": ("invoiceid",),
    "invoice_section": ("invoicesectionname", "invoicesection"),
    "publisher_name": ("publishername",),
    "publisher_type": ("publishertype",),
    "cost_center": ("costcenter",),
}
MONEY_FIELDS = ("cost", "payg_cost", "quantity", "unit_price", "payg_price")

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


def canonical_header(name: str) -> str:
    """`Kategorie der Verbrauchseinheit (MeterCategory)` -> `metercategory`; BOM and case dropped."""
    name = name.lstrip("\ufeff").strip()
    inner = re.search(r"\(([A-Za-z0-9]+)\)\s*$", name)
    return (inner.group(1) if inner else name).lower()


def header_map(schema: pl.Schema | list[str]) -> dict[str, str]:
    """field -> the delivered column that holds it (first alias present wins)."""
    by_key: dict[str, str] = {}
    for column in schema:
        by_key.setdefault(canonical_header(column), column)
    found: dict[str, str] = {}
    for field, aliases in FIELDS.items():
        for alias in aliases:
            if alias in by_key:
                found[field] = by_key[alias]
                break
    return found


def is_focus_export(schema: pl.Schema | list[str]) -> bool:
    return "ChargePeriodStart" in schema and "BilledCost" in schema


def dataset_of(version: pl.Expr) -> pl.Expr:
    """The export dataset a row came from, from its `x_ExportVersion` (`AmortizedCost:<runId>`)."""
    return version.str.extract(r"^(ActualCost|AmortizedCost|FocusCost):", 1).fill_null("ActualCost")


# ---- discovery -------------------------------------------------------------------------------------------

_ROW_COUNTS: dict[tuple[str, int, str], int] = {}


def count_rows(store: Store, info: FileInfo) -> int:
    """Data rows of one delivered blob (cached per url, size and etag/mtime)."""
    key = (info.url, info.size, info.etag or info.modified)
    if key not in _ROW_COUNTS:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="azure-count-") as tmp:
            local = store.stage(info.url, Path(tmp))
            frame = read_export_file(local, "auto")
            _ROW_COUNTS[key] = int(frame.select(pl.len()).collect(engine="streaming").item())
    return _ROW_COUNTS[key]


def _dataset_from_path(url: str) -> str:
    lowered = url.lower()
    if "amortized" in lowered:
        return "AmortizedCost"
    if "focus" in lowered:
        return "FocusCost"
    return "ActualCost"


class AzureAdapter:
    """Azure Cost Management exports: partitioned runs with manifest.json, or plain export files."""

    provider = "azure"
    _focus = FocusAdapter()

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        start = billing_period.replace("-", "") + "01"
        deliveries: list[Delivery] = []
        for range_dir in store.list_dirs(root):
            range_name = range_dir.rstrip("/").rsplit("/", 1)[-1]
            if not re.fullmatch(rf"{start}-\d{{8}}", range_name):
                continue
            listing = store.find(range_dir, maxdepth=3)
            present = {f.url: f for f in listing}
            manifests = [f for f in listing if f.url.rsplit("/", 1)[-1] == "manifest.json"]
            for manifest in manifests:
                deliveries.append(
                    self._run(store, source, root, billing_period, range_name, manifest, present, file_format)
                )
            run_folders = [m.url.rsplit("/", 1)[0] + "/" for m in manifests]
            for info in listing:
                name = info.url.lower()
                if not name.endswith(DATA_SUFFIXES) or any(info.url.startswith(f) for f in run_folders):
                    continue
                deliveries.append(
                    Delivery(
                        source=source,
                        billing_period=billing_period,
                        version=f"{_dataset_from_path(info.url)}:file:{info.url.rsplit('/', 1)[-1]}",
                        delivered_at=modified_at(info.modified),
                        files=(info.url,),
                        file_format=file_format,
                        fingerprint=info.identity,
                    )
                )
        return self._check_row_counts(store, deliveries, _present_all(store, deliveries))

    def _run(
        self,
        store: Store,
        source: str,
        root: str,
        billing_period: str,
        range_name: str,
        manifest: FileInfo,
        present: dict[str, FileInfo],
        file_format: str,
    ) -> Delivery:
        document, problem = load_manifest(store, manifest.url)
        fallback = modified_at(manifest.modified)
        if document is None:
            return Delivery(source, billing_period, manifest.url, fallback, (), manifest.url, (problem,))
        run = document.get("runInfo") or {}
        config = document.get("exportConfig") or {}
        dataset = str(config.get("type") or "ActualCost")
        dataset = next((d for d in DATASETS if d.lower() == dataset.lower()), dataset)
        version = f"{dataset}:{run.get('runId') or manifest.url}"
        problems: list[FileProblem] = []
        files: list[str] = []
        expected: dict[str, int] = {}
        blobs = document.get("blobs")
        if not isinstance(blobs, list):
            problems.append(FileProblem(manifest.url, "manifest has no blobs[] list", "bad_manifest"))
            blobs = []
        for blob in blobs:
            name = str((blob or {}).get("blobName") or "")
            local = check_listed_file(
                name,
                re.escape(range_name) + "/",
                range_name,
                root,
                present,
                files,
                manifest.url,
                f"manifest {manifest.url} lists a blob outside its {range_name}/ folder",
            )
            if isinstance(local, FileProblem):
                problems.append(local)
                continue
            size = blob.get("byteCount")
            if isinstance(size, int) and size != present[local].size:
                problems.append(
                    FileProblem(
                        local,
                        f"has {present[local].size} bytes, manifest {manifest.url} says "
                        f"byteCount {size} (partial upload)",
                        "missing",
                    )
                )
                continue
            if isinstance(blob.get("dataRowCount"), int):
                expected[local] = blob["dataRowCount"]
            files.append(local)
        total = document.get("dataRowCount")
        fingerprint = listing_fingerprint([present[u] for u in files])
        delivery = Delivery(
            source=source,
            billing_period=billing_period,
            version=version,
            delivered_at=parse_timestamp(run.get("submittedTime"), fallback),
            files=tuple(files),
            manifest_uri=manifest.url,
            problems=tuple(problems),
            file_format=file_format,
            fingerprint=fingerprint,
        )
        _EXPECTED[(manifest.url, fingerprint)] = (expected, total if isinstance(total, int) else None)
        return delivery

    def _check_row_counts(
        self, store: Store, deliveries: list[Delivery], present: dict[str, FileInfo]
    ) -> list[Delivery]:
        """Count rows of the newest runs until one matches its manifest; a mismatch marks a run incomplete.

        Runs submitted at the same time as the first complete one are counted too: `choose_current`
        must see which of them are really complete before it calls them a tie.
        """
        out = list(deliveries)
        ordered = sorted(range(len(out)), key=lambda i: (out[i].delivered_at, out[i].version), reverse=True)
        settled: dt.datetime | None = None  # submitted time of the first complete run
        for index in ordered:
            delivery = out[index]
            if settled is not None and delivery.delivered_at != settled:
                break
            if delivery.incomplete or delivery.empty or delivery.manifest_uri is None:
                if not (delivery.incomplete or delivery.empty):
                    settled = delivery.delivered_at
                continue
            expected, total = _EXPECTED.get((delivery.manifest_uri, delivery.fingerprint), ({}, None))
            problems = list(delivery.problems)
            counted = 0
            unverifiable = False
            for url in delivery.files:
                try:
                    rows = count_rows(store, present[url])
                except Exception:  # noqa: BLE001 - a blob that cannot be read: the raw step names and
                    unverifiable = True  # quarantines it, and the run is then incomplete (invariant 5)
                    break
                counted += rows
                if url in expected and rows != expected[url]:
                    problems.append(
                        FileProblem(
                            url,
                            f"holds {rows} rows, manifest {delivery.manifest_uri} says dataRowCount {expected[url]}",
                            "missing",
                        )
                    )
            if unverifiable:
                continue  # not settled: older runs are counted too, in case this one turns out broken
            if total is not None and counted != total and len(problems) == len(delivery.problems):
                problems.append(
                    FileProblem(
                        delivery.manifest_uri,
                        f"blobs hold {counted} rows, manifest says dataRowCount {total}",
                        "missing",
                    )
                )
            out[index] = Delivery(**{**delivery.__dict__, "problems": tuple(problems)})
            if not out[index].incomplete:
                settled = delivery.delivered_at
        return out

    # ---- reading and mapping ---------------------------------------------------------------------------

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_export_file(local_file, file_format)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        if is_focus_export(schema):
            return self._focus.usage_start(schema)
        columns = header_map(schema)
        if "date" not in columns:
            raise ValueError("not an Azure cost export: no Date / UsageDateTime column")
        return parse_datetime(pl.col(columns["date"]), schema[columns["date"]])

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        if "_az_row" not in schema:
            return self._focus.dedup_key(schema)
        return ["_az_row", "_az_occurrence", "_az_file"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Per row: the billed amount as delivered (for AmortizedCost, 0 on amortized rows: module doc)."""
        schema = raw.collect_schema()
        if is_focus_export(schema):
            return self._focus.raw_totals(raw)
        get = _getter(schema)
        billed = _billed(get, schema)
        return raw.select(
            _account(get).alias("BillingAccountId"), get.text("currency").alias("BillingCurrency"), billed.alias("cost")
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        schema = raw.collect_schema()
        if is_focus_export(schema):
            return self._focus.to_focus(raw)
        get = _getter(schema)
        distinct = (
            raw.select(
                get.text("meter_category").unique().implode().alias("service"),
                get.text("unit").unique().implode().alias("unit"),
                get.text("location").unique().implode().alias("location"),
            )
            .collect()
            .row(0, named=True)
        )
        services = {name: SERVICES.get(name, OTHER) for name in distinct["service"] if name is not None}
        units = {u: focus_unit_name(u) for u in distinct["unit"] if u is not None}
        regions = {loc: _region(loc) for loc in distinct["location"] if loc is not None}

        cost = get.money("cost")
        charge_type = get.text("charge_type")
        model = get.text("pricing_model")
        amortized = dataset_of(_version(schema)) == "AmortizedCost"
        commitment_id = pl.coalesce(get.text("benefit_id"), get.text("reservation_id"))
        committed = model.is_in(COMMITTED_MODELS).fill_null(False) & commitment_id.is_not_null()
        unused = charge_type.is_in(AMORTIZED_CHARGE_TYPES).fill_null(False)
        category = (
            pl.when(charge_type.is_in(["Usage", *AMORTIZED_CHARGE_TYPES]) | charge_type.is_null())
            .then(pl.lit("Usage"))
            .when(charge_type == "Purchase")
            .then(pl.lit("Purchase"))
            .when(charge_type == "Tax")
            .then(pl.lit("Tax"))
            .when(charge_type.is_in(["Refund", "Credit"]))
            .then(pl.lit("Credit"))
            .otherwise(pl.lit("Adjustment"))
        )
        is_usage = category == "Usage"
        priced = category.is_in(["Usage", "Purchase"])
        commitment_purchase = (category == "Purchase") & committed
        billed = _billed(get, schema)
        effective = pl.when(commitment_purchase).then(pl.lit(0, dtype=MONEY)).otherwise(cost)
        unit = lookup(get.text("unit"), units)
        quantity = get.money("quantity")
        pricing_quantity = pl.when(priced & unit.is_not_null()).then(quantity)
        usage_quantity = pl.when(is_usage & ~unused & unit.is_not_null()).then(quantity)
        unit_price = pl.when(pricing_quantity.is_not_null()).then(get.money("unit_price"))
        list_price = pl.when(pricing_quantity.is_not_null()).then(get.money("payg_price"))
        # quantity x PayGPrice only where it stays in range (a Decimal product that overflows raises)
        payg_price = get.money("payg_price")
        in_range = (pricing_quantity.cast(pl.Float64) * payg_price.cast(pl.Float64)).abs() < MONEY_LIMIT
        payg_product = pl.when(in_range).then(pricing_quantity) * pl.when(in_range).then(payg_price)
        list_cost = pl.coalesce(get.money("payg_cost"), payg_product, cost)
        product_out_of_range = (
            money_is_missing(get.col("payg_cost"), get.dtype("payg_cost"))
            & pricing_quantity.is_not_null()
            & payg_price.is_not_null()
            & ~in_range
        )
        contracted_cost = pl.when(amortized & (committed | unused)).then(cost).otherwise(billed)
        account = _account(get)
        subscription = get.text("subscription_id")
        currency = get.text("currency")
        start = parse_datetime(get.col("date"), get.dtype("date"))
        period_start = pl.coalesce(
            parse_datetime(get.col("billing_period_start"), get.dtype("billing_period_start")), start.dt.month_start()
        )
        period_end = pl.coalesce(
            parse_datetime(get.col("billing_period_end"), get.dtype("billing_period_end")).dt.offset_by("1d"),
            period_start.dt.offset_by("1mo"),
        )
        region_id = lookup(get.text("location"), {k: v[0] for k, v in regions.items()})
        region_name = lookup(get.text("location"), {k: v[1] for k, v in regions.items()})
        resource_id = get.text("resource_id")
        service = pl.coalesce(get.text("meter_category"), get.text("consumed_service"), pl.lit("Unknown"))
        commitment_type = pl.when(commitment_id.is_not_null() & (committed | unused | commitment_purchase)).then(
            pl.when((model == "SavingsPlan") | (charge_type == "UnusedSavingsPlan"))
            .then(pl.lit("Savings Plan"))
            .otherwise(pl.lit("Reservation"))
        )
        tags_text = get.text("tags")
        tag_list = tags_from_json(tags_text)
        bad = pl.concat_str(
            [money_problem(get.col(f), get.dtype(f), get.name(f), get.limit(f)) for f in MONEY_FIELDS if get.has(f)]
            + [
                pl.when(product_out_of_range).then(
                    pl.format(
                        "non-finite or out-of-range money {} x {} in ListCost ({} x {})",
                        pricing_quantity,
                        payg_price,
                        pl.lit(get.name("quantity")),
                        pl.lit(get.name("payg_price")),
                    )
                ),
                pl.when(money_is_missing(get.col("cost"), get.dtype("cost"))).then(
                    pl.lit(f"missing cost in {get.name('cost')}")
                ),
                pl.when(currency.is_null()).then(pl.lit("missing billing currency")),
                pl.when(~currency.str.contains(r"^[A-Z]{3}$")).then(pl.format("invalid billing currency {}", currency)),
                pl.when(account.is_null()).then(pl.lit("missing billing account and subscription")),
            ],
            separator="; ",
            ignore_nulls=True,
        )
        frame = raw.with_columns(pl.struct([c for c in schema if not c.startswith("x_")]).alias("_az_row"))
        row_hash = pl.col("_az_row").hash(seed=0)
        file = pl.col("x_FileUri") if "x_FileUri" in schema else pl.lit("")
        occurrence = pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(row_hash, file)
        # what the file holds, whatever its row order: rows of two files are duplicates only if the files are
        content = pl.struct(
            pl.len().over(file).alias("rows"),
            (row_hash // 2**32).sum().over(file).alias("high"),
            (row_hash % 2**32).sum().over(file).alias("low"),
        )
        return frame.select(
            billed.alias("BilledCost"),
            account.alias("BillingAccountId"),
            pl.coalesce(get.text("billing_account_name"), account).alias("BillingAccountName"),
            pl.when(get.text("billing_account_id").is_not_null())
            .then(pl.lit("Billing Account"))
            .when(account.is_not_null())
            .then(pl.lit("Subscription"))
            .alias("BillingAccountType"),
            currency.alias("BillingCurrency"),
            period_end.alias("BillingPeriodEnd"),
            period_start.alias("BillingPeriodStart"),
            category.alias("ChargeCategory"),
            pl.lit(None, dtype=pl.String).alias("ChargeClass"),
            pl.coalesce(get.text("product"), get.text("meter_name")).alias("ChargeDescription"),
            start.dt.offset_by("1d").alias("ChargePeriodEnd"),
            start.alias("ChargePeriodStart"),
            contracted_cost.alias("ContractedCost"),
            effective.alias("EffectiveCost"),
            pl.lit(PROVIDER).alias("InvoiceIssuerName"),
            list_cost.alias("ListCost"),
            pricing_quantity.alias("PricingQuantity"),
            pl.when(pricing_quantity.is_not_null()).then(unit).alias("PricingUnit"),
            pl.lit(PROVIDER).alias("ProviderName"),
            pl.coalesce(get.text("publisher_name"), pl.lit(PROVIDER)).alias("PublisherName"),
            lookup(service, {k: v[0] for k, v in services.items()}, default=OTHER[0]).alias("ServiceCategory"),
            lookup(service, {k: v[1] for k, v in services.items()}, default=OTHER[1]).alias("ServiceSubcategory"),
            service.alias("ServiceName"),
            get.text("availability_zone").alias("AvailabilityZone"),
            lookup(
                get.text("frequency"),
                {"UsageBased": "Usage-Based", "Recurring": "Recurring", "OneTime": "One-Time"},
                default="Usage-Based",
            ).alias("ChargeFrequency"),
            get.text("invoice_id").alias("InvoiceId"),
            pl.when(commitment_type.is_not_null()).then(commitment_id).alias("CommitmentDiscountId"),
            pl.when(commitment_type.is_not_null())
            .then(pl.coalesce(get.text("benefit_name"), get.text("reservation_name")))
            .alias("CommitmentDiscountName"),
            commitment_type.alias("CommitmentDiscountType"),
            pl.when(commitment_type == "Savings Plan")
            .then(pl.lit("Spend"))
            .when(commitment_type == "Reservation")
            .then(pl.lit("Usage"))
            .alias("CommitmentDiscountCategory"),
            pl.when(commitment_type.is_not_null() & is_usage)
            .then(pl.when(unused).then(pl.lit("Unused")).otherwise(pl.lit("Used")))
            .alias("CommitmentDiscountStatus"),
            usage_quantity.alias("ConsumedQuantity"),
            pl.when(usage_quantity.is_not_null()).then(unit).alias("ConsumedUnit"),
            unit_price.alias("ContractedUnitPrice"),
            list_price.alias("ListUnitPrice"),
            pl.when(priced)
            .then(
                pl.when(committed | unused)
                .then(pl.lit("Committed"))
                .when(model == "Spot")
                .then(pl.lit("Dynamic"))
                .otherwise(pl.lit("Standard"))
            )
            .alias("PricingCategory"),
            pl.coalesce(get.text("pricing_currency"), currency).alias("PricingCurrency"),
            pl.when(pl.coalesce(get.text("pricing_currency"), currency) == currency)
            .then(effective)
            .alias("PricingCurrencyEffectiveCost"),
            pl.when(pl.coalesce(get.text("pricing_currency"), currency) == currency)
            .then(unit_price)
            .alias("PricingCurrencyContractedUnitPrice"),
            pl.when(pl.coalesce(get.text("pricing_currency"), currency) == currency)
            .then(list_price)
            .alias("PricingCurrencyListUnitPrice"),
            region_id.alias("RegionId"),
            pl.when(region_id.is_not_null()).then(region_name).alias("RegionName"),
            resource_id.alias("ResourceId"),
            pl.coalesce(get.text("resource_name"), resource_id.str.extract(r"/([^/]+)/?$", 1)).alias("ResourceName"),
            pl.when(resource_id.is_not_null())
            .then(
                pl.coalesce(
                    resource_id.str.extract(r"(?i)/providers/([^/]+/[^/]+)/[^/]+", 1),
                    get.text("resource_type"),
                    get.text("consumed_service"),
                    pl.lit("Other"),
                )
            )
            .alias("ResourceType"),
            pl.when(category != "Tax")
            .then(pl.coalesce(get.text("product_id"), get.text("part_number"), get.text("meter_id")))
            .alias("SkuId"),
            pl.when((category != "Tax") & get.text("meter_id").is_not_null())
            .then(get.text("meter_name"))
            .alias("SkuMeter"),
            # a price is a meter of a product: one SkuId per SkuPriceId by construction
            pl.when(priced)
            .then(
                pl.concat_str(
                    [
                        pl.coalesce(get.text("product_id"), get.text("part_number"), get.text("meter_id")),
                        get.text("meter_id"),
                    ],
                    separator="_",
                )
            )
            .alias("SkuPriceId"),
            subscription.alias("SubAccountId"),
            pl.coalesce(get.text("subscription_name"), subscription).alias("SubAccountName"),
            pl.when(subscription.is_not_null()).then(pl.lit("Subscription")).alias("SubAccountType"),
            tags_json(tag_list).alias("Tags"),
            tag_list.alias("x_TagList"),
            dataset_of(_version(schema)).alias("x_Dataset"),
            charge_type.alias("x_ChargeType"),
            model.alias("x_PricingModel"),
            get.text("meter_category").alias("x_MeterCategory"),
            get.text("meter_subcategory").alias("x_MeterSubcategory"),
            get.text("meter_id").alias("x_MeterId"),
            get.text("unit").alias("x_UnitOfMeasure"),
            get.text("resource_group").alias("x_ResourceGroup"),
            get.text("location").alias("x_ResourceLocation"),
            get.text("billing_profile_id").alias("x_BillingProfileId"),
            get.text("invoice_section").alias("x_InvoiceSectionName"),
            get.text("publisher_type").alias("x_PublisherType"),
            get.text("cost_center").alias("x_CostCenter"),
            get.text("additional_info").alias("x_AdditionalInfo"),
            cost.alias("x_CostInBillingCurrency"),
            *[pl.col(c) for c in schema if c.startswith("x_")],
            pl.when(bad != "").then(bad).alias("_bad_reason"),
            pl.col("_az_row"),
            occurrence.alias("_az_occurrence"),
            content.alias("_az_file"),
        )


_EXPECTED: dict[tuple[str, str], tuple[dict[str, int], int | None]] = {}


def _present_all(store: Store, deliveries: list[Delivery]) -> dict[str, FileInfo]:
    """FileInfo of every file the deliveries name (listed again: `discover` lists per folder)."""
    out: dict[str, FileInfo] = {}
    for folder in {url.rsplit("/", 1)[0] for d in deliveries for url in d.files}:
        out |= {f.url: f for f in store.find(folder, maxdepth=1)}
    return out


def _region(location: str) -> tuple[str | None, str | None]:
    """(RegionId, RegionName) of a delivered location: `EastUS`, `eastus`, `US East 2`, `Unassigned`."""
    key = re.sub(r"[^a-z0-9]", "", location.lower())
    if key in NOT_A_REGION:
        return None, None
    key = REGION_ALIASES.get(key, key)
    return key, REGIONS.get(key, location)


def _version(schema: pl.Schema) -> pl.Expr:
    return pl.col("x_ExportVersion").cast(pl.String) if "x_ExportVersion" in schema else pl.lit("ActualCost:")


class _Getter:
    """Typed access to Azure fields whatever the header spelling (`header_map`)."""

    def __init__(self, schema: pl.Schema) -> None:
        self.schema = schema
        self.columns = header_map(schema)

    def has(self, field: str) -> bool:
        return field in self.columns

    def name(self, field: str) -> str:
        return self.columns.get(field, field)

    def dtype(self, field: str) -> pl.DataType:
        return self.schema[self.columns[field]] if field in self.columns else pl.String()

    def col(self, field: str) -> pl.Expr:
        return pl.col(self.columns[field]) if field in self.columns else pl.lit(None, dtype=pl.String)

    def text(self, field: str) -> pl.Expr:
        value = self.col(field).cast(pl.String).str.strip_chars()
        return pl.when(~value.is_in(["", "None", "NULL", "null"])).then(value)

    def money(self, field: str) -> pl.Expr:
        if field not in self.columns:
            return pl.lit(None, MONEY)
        return parse_money(self.col(field), self.dtype(field), self.limit(field))

    def limit(self, field: str) -> int | None:
        """MONEY_LIMIT for money fields; none for the quantity."""
        return None if field == "quantity" else MONEY_LIMIT


def _getter(schema: pl.Schema) -> _Getter:
    return _Getter(schema)


def _account(get: _Getter) -> pl.Expr:
    """The billing account; pay-as-you-go exports have none, their subscription is what is billed."""
    return pl.coalesce(get.text("billing_account_id"), get.text("subscription_id"))


def _billed(get: _Getter, schema: pl.Schema) -> pl.Expr:
    """BilledCost: the cost, except amortized rows of an AmortizedCost export (billed as the purchase)."""
    cost = get.money("cost")
    committed = (
        get.text("pricing_model").is_in(COMMITTED_MODELS).fill_null(False)
        & pl.coalesce(get.text("benefit_id"), get.text("reservation_id")).is_not_null()
    )
    unused = get.text("charge_type").is_in(AMORTIZED_CHARGE_TYPES).fill_null(False)
    amortized_row = (
        (dataset_of(_version(schema)) == "AmortizedCost")
        & (committed | unused)
        & (get.text("charge_type") != "Purchase").fill_null(True)
    )
    return pl.when(amortized_row & cost.is_not_null()).then(pl.lit(0, dtype=MONEY)).otherwise(cost)


def manifest_document(
    run_id: str,
    blobs: list[dict[str, Any]],
    dataset: str = "ActualCost",
    submitted: dt.datetime | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    export_name: str = "export",
    overwrite: bool = False,
    file_format: str = "Csv",
    compression: str = "Gzip",
) -> dict[str, Any]:
    """A `manifest.json` as Cost Management writes it (used by the generator and the tests)."""
    submitted = submitted or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return {
        "manifestVersion": "2024-04-01",
        "byteCount": sum(int(b.get("byteCount") or 0) for b in blobs),
        "blobCount": len(blobs),
        "dataRowCount": sum(int(b.get("dataRowCount") or 0) for b in blobs),
        "exportConfig": {
            "exportName": export_name,
            "resourceId": f"/providers/Microsoft.Billing/billingAccounts/0/providers/Microsoft.CostManagement/"
            f"exports/{export_name}",
            "dataVersion": "2023-05-01",
            "apiVersion": "2023-07-01-preview",
            "type": dataset,
            "timeFrame": "MonthToDate",
            "granularity": "Daily",
        },
        "deliveryConfig": {
            "partitionData": True,
            "dataOverwriteBehavior": "OverwritePreviousReport" if overwrite else "CreateNewReport",
            "fileFormat": file_format,
            "compressionMode": compression,
            "containerUri": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/costs",
            "rootFolderPath": "exports",
        },
        "runInfo": {
            "executionType": "Scheduled",
            "submittedTime": submitted.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "runId": run_id,
            "startDate": f"{start or dt.date(2026, 1, 1):%Y-%m-%d}T00:00:00",
            "endDate": f"{end or dt.date(2026, 1, 31):%Y-%m-%d}T00:00:00",
        },
        "blobs": blobs,
    }


def blob_entry(path: Path, container_relative: str) -> dict[str, Any]:
    """One `blobs[]` entry for a written file: its name in the container, bytes and data rows."""
    rows = int(read_export_file(path, "auto").select(pl.len()).collect().item())
    return {"blobName": container_relative, "byteCount": path.stat().st_size, "dataRowCount": rows}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = [
    "AzureAdapter",
    "DATETIME_FORMATS",
    "blob_entry",
    "canonical_header",
    "focus_unit_name",
    "header_map",
    "manifest_document",
]
