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

Split by job: `reading` (both file formats to one typed shape, `SCHEMA`), `catalog` (lookup tables),
`fields` (typed reads of nested fields), `columns` (one function per FOCUS column group, credit
rows), `adapter` (discovery and `to_focus`).
"""

from __future__ import annotations

from billing_pipeline.adapters.gcp.adapter import GcpAdapter
from billing_pipeline.adapters.gcp.catalog import OTHER, REGIONS, SERVICES, UNITS, focus_unit_name
from billing_pipeline.adapters.gcp.columns import PROVIDER
from billing_pipeline.adapters.gcp.reading import (
    CREDIT,
    JSON_SUFFIXES,
    PARQUET_SUFFIXES,
    SCHEMA,
    TIME_COLUMNS,
    conform_expr,
    is_json,
    read_gcp_file,
)

__all__ = [
    "CREDIT",
    "JSON_SUFFIXES",
    "OTHER",
    "PARQUET_SUFFIXES",
    "PROVIDER",
    "REGIONS",
    "SCHEMA",
    "SERVICES",
    "TIME_COLUMNS",
    "UNITS",
    "GcpAdapter",
    "conform_expr",
    "focus_unit_name",
    "is_json",
    "read_gcp_file",
]
