"""GCP Cloud Billing export (the BigQuery table, as exported files) to FOCUS 1.2.

What a delivery is. The export is append-only: every append carries a strictly later
`export_time`, corrections are new rows negating old ones, and a usage day keeps receiving rows
for days after it ends. So a GCP source has one delivery per billing period: every data file under
the source URL (newline-delimited JSON, optionally gzip, or Parquet, as `EXPORT DATA` or the
BigQuery pull in `gcp_bigquery` writes them), read together. Its version is a digest of the file
listing, so a new append is a new version and the days whose content changed are rebuilt. Files
below a hive folder `export_date=YYYY-MM-DD` (or `export_month=YYYY-MM`) exported before the
period started are skipped: a row is never exported before its usage.

Row identity (no double ingestion). A row is identified by *all* its delivered columns, nested
values and `export_time` included (lineage columns aside). A file re-exported with the same rows
(a window pulled twice, a file copied under another name, the same rows as JSON and as Parquet)
repeats identities and is dropped as duplicates, counted; a correction differs at least in
`export_time` and cost and is kept. GCP aggregates usage per hour, SKU, project and resource, so
two genuinely separate charges never share every column and `export_time`.

Credits are FOCUS rows of their own: ChargeCategory "Credit", BilledCost = EffectiveCost =
ListCost = ContractedCost = the credit amount, every dimension of the charge they belong to, the
credit's name as ChargeDescription and its type/id in `x_CreditType`/`x_CreditId` (GCP's own FOCUS
export does the same). Hence per account and currency: raw `cost` + `credits.amount` = the sum of
normalized BilledCost, exactly (`raw_totals` counts both). Floats (`cost`, credit amounts, usage)
are converted to Decimal once, through their shortest round-trip text (`parse_money`).

Invoices: BillingPeriodStart/End come from `invoice.month` (late usage at month end lands on the
next month's invoice), so reconciliation matches invoices on the invoice month
(`bills_by_invoice_month`); the delivered value is kept in `x_InvoiceMonth`.

Low-cardinality columns (service, units, regions) are mapped through lookups computed on their
distinct values, never with per-row regexes.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from billing_pipeline.adapters.base import (
    MONEY_LIMIT,
    Delivery,
    EmptyExportFileError,
    files_delivery,
    money_is_missing,
    money_problem,
    parse_datetime,
    parse_money,
    text,
)
from billing_pipeline.adapters.tags import TAG, TAG_LIST, tags_json
from billing_pipeline.platform.focus import MONEY, TIMESTAMP
from billing_pipeline.platform.lookup import lookup
from billing_pipeline.platform.storage import Store

PROVIDER = "Google Cloud"
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
TIME_COLUMNS = ("usage_start_time", "usage_end_time", "export_time")
JSON_SAMPLE_ROWS = 1000

_KV = pl.Struct({"key": pl.String, "value": pl.String})
CREDIT = pl.Struct(
    {"name": pl.String, "amount": pl.Float64, "full_name": pl.String, "id": pl.String, "type": pl.String}
)
# The export table's columns (standard and detailed), as typed in BigQuery.
SCHEMA: dict[str, pl.DataType] = {
    "billing_account_id": pl.String(),
    "service": pl.Struct({"id": pl.String, "description": pl.String}),
    "sku": pl.Struct({"id": pl.String, "description": pl.String}),
    "usage_start_time": TIMESTAMP,
    "usage_end_time": TIMESTAMP,
    "project": pl.Struct(
        {
            "id": pl.String,
            "number": pl.String,
            "name": pl.String,
            "labels": pl.List(_KV),
            "ancestry_numbers": pl.String,
            "ancestors": pl.List(pl.Struct({"resource_name": pl.String, "display_name": pl.String})),
        }
    ),
    "labels": pl.List(_KV),
    "system_labels": pl.List(_KV),
    "location": pl.Struct({"location": pl.String, "country": pl.String, "region": pl.String, "zone": pl.String}),
    "resource": pl.Struct({"name": pl.String, "global_name": pl.String}),
    "tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String, "inherited": pl.Boolean, "namespace": pl.String})),
    "price": pl.Struct(
        {
            "effective_price": pl.Float64,
            "tier_start_amount": pl.Float64,
            "unit": pl.String,
            "pricing_unit_quantity": pl.Float64,
        }
    ),
    "subscription": pl.Struct({"instance_id": pl.String}),
    "transaction_type": pl.String(),
    "seller_name": pl.String(),
    "export_time": TIMESTAMP,
    "cost": pl.Float64(),
    "cost_at_list": pl.Float64(),
    "currency": pl.String(),
    "currency_conversion_rate": pl.Float64(),
    "usage": pl.Struct(
        {"amount": pl.Float64, "unit": pl.String, "amount_in_pricing_units": pl.Float64, "pricing_unit": pl.String}
    ),
    "credits": pl.List(CREDIT),
    "invoice": pl.Struct({"month": pl.String, "publisher_type": pl.String}),
    "cost_type": pl.String(),
    "adjustment_info": pl.Struct({"id": pl.String, "description": pl.String, "mode": pl.String, "type": pl.String}),
}

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


def _mapped(expr: pl.Expr, distinct: list[str | None], function) -> pl.Expr:  # noqa: ANN001 - a plain callable
    """`expr` mapped through `function`, evaluated once per distinct value (not per row)."""
    return lookup(expr, {value: function(value) for value in distinct if value is not None})


# ---- reading: both file formats to one typed shape ----------------------------------------------------


def _gcp_time(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """BigQuery's timestamp spellings (`2020-11-09 23:00:00 UTC`, `...+00:00`, Parquet INT64) as UTC."""
    return parse_datetime(expr, dtype)


def conform_expr(expr: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    """`expr` (of type `have`) in the canonical type `want`; fields the file lacks become nulls.

    Fields the file has beyond the canonical ones are kept (appended), so nothing delivered is lost.
    """
    if have == want:
        return expr
    if isinstance(have, pl.Null) or (isinstance(have, pl.List) and isinstance(have.inner, pl.Null)):
        return expr.cast(want)
    if isinstance(want, pl.Datetime):
        return _gcp_time(expr, have)
    if isinstance(want, pl.Struct) and isinstance(have, pl.Struct):
        have_fields = {f.name: f.dtype for f in have.fields}
        fields = [
            conform_expr(expr.struct.field(f.name), have_fields[f.name], f.dtype).alias(f.name)
            if f.name in have_fields
            else pl.lit(None, dtype=f.dtype).alias(f.name)
            for f in want.fields
        ]
        wanted = {f.name for f in want.fields}
        fields += [expr.struct.field(name) for name in have_fields if name not in wanted]
        return pl.when(expr.is_not_null()).then(pl.struct(fields))
    if isinstance(want, pl.List) and isinstance(have, pl.List):
        return expr.list.eval(conform_expr(pl.element(), have.inner, want.inner))
    if want.is_numeric() and have.is_numeric():
        return expr.cast(want)
    if want == pl.String and not have.is_nested():
        return expr.cast(pl.String)
    return expr  # a type the adapter cannot use: left as delivered (schema drift reports it)


def _json_schema(want: pl.DataType) -> pl.DataType:
    """The canonical type as JSON spells it (timestamps are text there)."""
    if isinstance(want, pl.Datetime):
        return pl.String()
    if isinstance(want, pl.Struct):
        return pl.Struct({f.name: _json_schema(f.dtype) for f in want.fields})
    if isinstance(want, pl.List):
        return pl.List(_json_schema(want.inner))
    return want


def is_json(name: str) -> bool:
    return name.lower().endswith(JSON_SUFFIXES)


def read_gcp_file(local_file: Path) -> pl.LazyFrame:
    """One exported file in the canonical typed shape: JSON with the table's schema (plus any column
    the first rows show beyond it), Parquet as typed by BigQuery, both conformed to `SCHEMA`."""
    if local_file.stat().st_size == 0:
        raise EmptyExportFileError("the file is empty (0 bytes)")
    if is_json(local_file.name):
        sample = pl.read_ndjson(local_file, n_rows=JSON_SAMPLE_ROWS, infer_schema_length=JSON_SAMPLE_ROWS)
        schema = {name: _json_schema(dtype) for name, dtype in SCHEMA.items()}
        schema |= {name: dtype for name, dtype in sample.schema.items() if name not in SCHEMA}
        frame = pl.scan_ndjson(local_file, schema=schema)
    else:
        pl.read_parquet_schema(local_file)  # fails fast on a truncated file (no footer)
        frame = pl.scan_parquet(local_file)
    present = frame.collect_schema()
    known = [
        conform_expr(pl.col(name), present[name], dtype).alias(name)
        if name in present
        else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in SCHEMA.items()
    ]
    return frame.select(*known, *[pl.col(name) for name in present if name not in SCHEMA])


# ---- the adapter --------------------------------------------------------------------------------------


def _field(schema: pl.Schema, column: str, *path: str, dtype: pl.DataType = pl.String) -> pl.Expr:
    """A (nested) field, or a typed null when the delivery lacks it."""
    if column not in schema:
        return pl.lit(None, dtype=dtype)
    expr, current = pl.col(column), schema[column]
    for name in path:
        if not isinstance(current, pl.Struct) or name not in {f.name for f in current.fields}:
            return pl.lit(None, dtype=dtype)
        current = {f.name: f.dtype for f in current.fields}[name]
        expr = expr.struct.field(name)
    return expr


def _stext(schema: pl.Schema, column: str, *path: str) -> pl.Expr:
    value = _field(schema, column, *path).cast(pl.String).str.strip_chars()
    return pl.when(value != "").then(value)


def _credits(schema: pl.Schema) -> pl.Expr:
    """The credits list, also from the JSON text quarantined rows carry."""
    if "credits" not in schema:
        return pl.lit([], dtype=pl.List(CREDIT))
    if schema["credits"] == pl.String:
        return pl.col("credits").str.json_decode(pl.List(CREDIT))
    return pl.col("credits")


def _period_bounds(invoice_month: pl.Expr, usage_start: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    month = invoice_month.str.to_date("%Y%m", strict=False)
    start = pl.coalesce(month, usage_start.dt.date().dt.month_start())
    start_ts = start.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return start_ts, start_ts.dt.offset_by("1mo")


def _tag_list(schema: pl.Schema) -> pl.Expr:
    """Resource labels, then the project's labels they inherit (a resource label wins on a shared key)."""
    own = pl.col("labels") if "labels" in schema and schema["labels"] == pl.List(_KV) else pl.lit([], dtype=TAG_LIST)
    project = _field(schema, "project", "labels", dtype=TAG_LIST)
    both = pl.concat_list([own.fill_null(pl.lit([], dtype=TAG_LIST)), project.fill_null(pl.lit([], dtype=TAG_LIST))])
    key = pl.element().struct.field("key")
    value = pl.element().struct.field("value")
    return both.list.eval(pl.element().filter(key.is_first_distinct() & value.is_not_null())).cast(pl.List(TAG))


def _resource_type(resource_id: pl.Expr) -> pl.Expr:
    """`//compute.googleapis.com/projects/p/zones/z/instances/i` -> `compute instances` (per row: ids are
    high-cardinality); any other id -> `Other`."""
    service = resource_id.str.extract(r"^//([a-z0-9-]+)\.googleapis\.com/", 1)
    collection = resource_id.str.extract(r"/([A-Za-z]+)/[^/]+$", 1)
    typed = pl.concat_str([service, pl.lit(" "), collection])
    return pl.when(resource_id.is_not_null()).then(pl.coalesce(typed, pl.lit("Other")))


class GcpAdapter:
    """GCP billing export files: every NDJSON / Parquet file under the source URL, append-only."""

    provider = "gcp"
    bills_by_invoice_month = True

    def discover(self, store: Store, source: str, root: str, billing_period: str, file_format: str) -> list[Delivery]:
        period_start = f"{billing_period}-01"
        files = []
        for info in store.find(root):
            name = info.url.lower()
            if not name.endswith(JSON_SUFFIXES + PARQUET_SUFFIXES) or "/_" in info.url:
                continue
            exported = re.search(r"/export_(?:date|month)=(\d{4}-\d\d(?:-\d\d)?)/", info.url)
            if exported and exported.group(1) < period_start[: len(exported.group(1))]:
                continue
            files.append(info)
        return files_delivery(source, billing_period, files, file_format, "append")

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame:
        return read_gcp_file(local_file)

    def usage_start(self, schema: pl.Schema) -> pl.Expr:
        if "usage_start_time" not in schema:
            raise ValueError("not a GCP billing export: no usage_start_time column")
        return _gcp_time(pl.col("usage_start_time"), schema["usage_start_time"])

    def dedup_key(self, schema: pl.Schema) -> list[str]:
        """Every delivered column (export_time included) and which FOCUS row of it: see module doc."""
        return ["_gcp_row", "_gcp_part"]

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Per row: cost plus its credits (both are BilledCost in FOCUS), as Decimal."""
        schema = raw.collect_schema()
        cost = parse_money(pl.col("cost"), schema["cost"], MONEY_LIMIT) if "cost" in schema else pl.lit(None, MONEY)
        amount = pl.element().struct.field("amount")
        credits = _credits(schema).list.eval(parse_money(amount, pl.Float64, MONEY_LIMIT)).list.sum()
        return raw.select(
            text("billing_account_id").alias("BillingAccountId"),
            text("currency").alias("BillingCurrency"),
            (cost.fill_null(0) + credits.fill_null(0)).cast(MONEY).alias("cost"),
        )

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        schema = raw.collect_schema()
        delivered = [c for c in schema if not c.startswith("x_")]
        distinct = (
            raw.select(
                _stext(schema, "service", "description").unique().implode().alias("service"),
                _stext(schema, "usage", "pricing_unit").unique().implode().alias("pricing_unit"),
                _stext(schema, "usage", "unit").unique().implode().alias("unit"),
                _stext(schema, "location", "region").unique().implode().alias("region"),
            )
            .collect()
            .row(0, named=True)
        )

        def money(column: str, *path: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
            """A money field (`limit=None`: a quantity or rate); `problem` says why it cannot be used."""
            return parse_money(_field(schema, column, *path, dtype=pl.Float64), field_type(column, path), limit)

        def field_type(column: str, path: tuple[str, ...]) -> pl.DataType:
            return schema[column] if column in schema and not path else pl.Float64

        def problem(column: str, *path: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
            expr = _field(schema, column, *path, dtype=pl.Float64)
            return money_problem(expr, field_type(column, path), ".".join((column, *path)), limit)

        cost = money("cost")
        cost_type = _stext(schema, "cost_type").str.to_lowercase()
        adjustment = _stext(schema, "adjustment_info", "id")
        category = (
            pl.when(cost_type == "tax")
            .then(pl.lit("Tax"))
            .when(cost_type.is_in(["adjustment", "rounding error", "rounding_error"]))
            .then(pl.lit("Adjustment"))
            .otherwise(pl.lit("Usage"))
        )
        is_usage = category == "Usage"
        start = _field(schema, "usage_start_time", dtype=TIMESTAMP)
        period_start, period_end = _period_bounds(_stext(schema, "invoice", "month"), start)
        service = _stext(schema, "service", "description")
        services = {name: SERVICES.get(name, OTHER) for name in distinct["service"] if name is not None}
        pricing_unit = pl.when(is_usage).then(
            _mapped(_stext(schema, "usage", "pricing_unit"), distinct["pricing_unit"], focus_unit_name)
        )
        consumed_unit = pl.when(is_usage).then(
            _mapped(_stext(schema, "usage", "unit"), distinct["unit"], focus_unit_name)
        )
        pricing_quantity = pl.when(pricing_unit.is_not_null()).then(
            money("usage", "amount_in_pricing_units", limit=None)
        )
        consumed_quantity = pl.when(consumed_unit.is_not_null()).then(money("usage", "amount", limit=None))
        region = _stext(schema, "location", "region")
        region_name = pl.coalesce(lookup(region, REGIONS), region)
        project = _stext(schema, "project", "id")
        resource_id = _stext(schema, "resource", "global_name")
        sku = _stext(schema, "sku", "id")
        third_party = _stext(schema, "transaction_type").str.starts_with("THIRD_PARTY").fill_null(False)
        tag_list = _tag_list(schema)
        account = _stext(schema, "billing_account_id")
        currency = _stext(schema, "currency")
        credits = _credits(schema)
        credit_problems = (
            credits.list.eval(money_problem(pl.element().struct.field("amount"), pl.Float64, "credits.amount"))
            .list.drop_nulls()
            .list.join("; ")
        )
        bad = pl.concat_str(
            [
                problem("cost"),
                problem("cost_at_list"),
                problem("price", "effective_price"),
                problem("usage", "amount", limit=None),
                problem("usage", "amount_in_pricing_units", limit=None),
                pl.when(credit_problems != "").then(credit_problems),
                pl.when(money_is_missing(_field(schema, "cost", dtype=pl.Float64), field_type("cost", ()))).then(
                    pl.lit("missing cost in cost")
                ),
                pl.when(account.is_null()).then(pl.lit("missing billing_account_id")),
                pl.when(currency.is_null()).then(pl.lit("missing currency")),
                pl.when(_field(schema, "usage_end_time", dtype=TIMESTAMP).is_null()).then(
                    pl.lit("missing usage_end_time")
                ),
                pl.when(
                    credits.list.eval(pl.element().struct.field("amount").is_null()).list.any().fill_null(False)
                ).then(pl.lit("credit without amount in credits")),
            ],
            separator="; ",
            ignore_nulls=True,
        )
        charge = raw.select(
            cost.alias("BilledCost"),
            account.alias("BillingAccountId"),
            account.alias("BillingAccountName"),
            pl.when(account.is_not_null()).then(pl.lit("Billing Account")).alias("BillingAccountType"),
            currency.alias("BillingCurrency"),
            period_end.alias("BillingPeriodEnd"),
            period_start.alias("BillingPeriodStart"),
            category.alias("ChargeCategory"),
            pl.when(adjustment.is_not_null()).then(pl.lit("Correction")).alias("ChargeClass"),
            _stext(schema, "sku", "description").alias("ChargeDescription"),
            _field(schema, "usage_end_time", dtype=TIMESTAMP).alias("ChargePeriodEnd"),
            start.alias("ChargePeriodStart"),
            cost.alias("ContractedCost"),
            cost.alias("EffectiveCost"),
            pl.lit(PROVIDER).alias("InvoiceIssuerName"),
            pl.coalesce(money("cost_at_list"), cost).alias("ListCost"),
            pricing_quantity.alias("PricingQuantity"),
            pl.when(pricing_quantity.is_not_null()).then(pricing_unit).alias("PricingUnit"),
            pl.lit(PROVIDER).alias("ProviderName"),
            pl.when(third_party)
            .then(pl.coalesce(_stext(schema, "seller_name"), pl.lit(PROVIDER)))
            .otherwise(pl.lit(PROVIDER))
            .alias("PublisherName"),
            lookup(service, {k: v[0] for k, v in services.items()}, default=OTHER[0]).alias("ServiceCategory"),
            lookup(service, {k: v[1] for k, v in services.items()}, default=OTHER[1]).alias("ServiceSubcategory"),
            pl.coalesce(service, pl.lit("Unknown")).alias("ServiceName"),
            _stext(schema, "location", "zone").alias("AvailabilityZone"),
            pl.when(is_usage).then(pl.lit("Usage-Based")).otherwise(pl.lit("One-Time")).alias("ChargeFrequency"),
            consumed_quantity.alias("ConsumedQuantity"),
            pl.when(consumed_quantity.is_not_null()).then(consumed_unit).alias("ConsumedUnit"),
            pl.when(pricing_quantity.is_not_null())
            .then(money("price", "effective_price"))
            .alias("ContractedUnitPrice"),
            # no list price is delivered without `cost_at_list`: then list = contracted, as ListCost = cost
            pl.when(pricing_quantity.is_not_null() & money("cost_at_list").is_null())
            .then(money("price", "effective_price"))
            .alias("ListUnitPrice"),
            pl.when(pricing_quantity.is_not_null() & money("cost_at_list").is_null())
            .then(money("price", "effective_price"))
            .alias("PricingCurrencyListUnitPrice"),
            pl.when(is_usage).then(pl.lit("Standard")).alias("PricingCategory"),
            currency.alias("PricingCurrency"),
            pl.when(pricing_quantity.is_not_null())
            .then(money("price", "effective_price"))
            .alias("PricingCurrencyContractedUnitPrice"),
            cost.alias("PricingCurrencyEffectiveCost"),
            region.alias("RegionId"),
            pl.when(region.is_not_null()).then(region_name).alias("RegionName"),
            resource_id.alias("ResourceId"),
            _stext(schema, "resource", "name").alias("ResourceName"),
            _resource_type(resource_id).alias("ResourceType"),
            pl.when(category != "Tax").then(sku).alias("SkuId"),
            pl.when((category != "Tax") & sku.is_not_null())
            .then(_stext(schema, "sku", "description"))
            .alias("SkuMeter"),
            pl.when(is_usage & sku.is_not_null()).then(sku).alias("SkuPriceId"),
            project.alias("SubAccountId"),
            pl.coalesce(_stext(schema, "project", "name"), project).alias("SubAccountName"),
            pl.when(project.is_not_null()).then(pl.lit("Project")).alias("SubAccountType"),
            tags_json(tag_list).alias("Tags"),
            tag_list.alias("x_TagList"),
            _stext(schema, "invoice", "month").alias("x_InvoiceMonth"),
            cost_type.alias("x_CostType"),
            _field(schema, "export_time", dtype=TIMESTAMP).alias("x_ExportTime"),
            _stext(schema, "service", "id").alias("x_ServiceId"),
            _stext(schema, "project", "number").alias("x_ProjectNumber"),
            _stext(schema, "location", "location").alias("x_Location"),
            adjustment.alias("x_AdjustmentId"),
            _stext(schema, "adjustment_info", "type").alias("x_AdjustmentType"),
            _stext(schema, "adjustment_info", "mode").alias("x_AdjustmentMode"),
            _stext(schema, "transaction_type").alias("x_TransactionType"),
            _stext(schema, "usage", "pricing_unit").alias("x_PricingUnit"),
            _stext(schema, "usage", "unit").alias("x_ConsumedUnit"),
            money("currency_conversion_rate", limit=None).alias("x_CurrencyConversionRate"),
            pl.lit(None, dtype=pl.String).alias("x_CreditId"),
            pl.lit(None, dtype=pl.String).alias("x_CreditType"),
            *[pl.col(c) for c in schema if c.startswith("x_")],
            pl.when(bad != "").then(bad).alias("_bad_reason"),
            pl.struct(delivered).alias("_gcp_row"),
            pl.lit(0, dtype=pl.Int32).alias("_gcp_part"),
            credits.alias("_gcp_credits"),
            pl.int_ranges(1, credits.list.len().fill_null(0) + 1, dtype=pl.Int32).alias("_gcp_index"),
        )
        credit = pl.col("_gcp_credits")
        amount = parse_money(credit.struct.field("amount"), pl.Float64, MONEY_LIMIT)
        types = charge.collect_schema()
        nulls = (
            "PricingQuantity",
            "PricingUnit",
            "ConsumedQuantity",
            "ConsumedUnit",
            "ContractedUnitPrice",
            "PricingCategory",
            "PricingCurrencyContractedUnitPrice",
            "SkuPriceId",
            "ListUnitPrice",
            "PricingCurrencyListUnitPrice",
        )
        credit_rows = (
            charge.filter(pl.col("_gcp_credits").list.len() > 0)
            .explode(["_gcp_credits", "_gcp_index"])
            .with_columns(
                *[
                    amount.alias(c)
                    for c in (
                        "BilledCost",
                        "EffectiveCost",
                        "ListCost",
                        "ContractedCost",
                        "PricingCurrencyEffectiveCost",
                    )
                ],
                pl.lit("Credit").alias("ChargeCategory"),
                pl.coalesce(credit.struct.field("full_name"), credit.struct.field("name")).alias("ChargeDescription"),
                *[pl.lit(None, dtype=types[c]).alias(c) for c in nulls],
                credit.struct.field("id").alias("x_CreditId"),
                credit.struct.field("type").alias("x_CreditType"),
                pl.col("_gcp_index").alias("_gcp_part"),  # which credit of the row (no window: streams)
                # a bad row is quarantined through its charge row; its credit rows never dedup
                pl.when(pl.col("_bad_reason").is_null()).then(pl.col("_gcp_row")).alias("_gcp_row"),
                pl.lit(None, dtype=pl.String).alias("_bad_reason"),
            )
        )
        helpers = ("_gcp_credits", "_gcp_index")
        return pl.concat([charge.drop(helpers), credit_rows.drop(helpers)], how="vertical")
