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

Split by job: `headers` (header aliases, typed field access, billed cost), `catalog` (lookup
tables), `discover` (runs, files and row counts), `manifest` (writing manifests as Cost Management
does), `columns` and `dimensions` (one function per FOCUS column group), `adapter`.
"""

from __future__ import annotations

from billing_pipeline.adapters.azure.adapter import AzureAdapter
from billing_pipeline.adapters.azure.catalog import focus_unit_name
from billing_pipeline.adapters.azure.columns import PROVIDER
from billing_pipeline.adapters.azure.discover import DATA_SUFFIXES, count_rows
from billing_pipeline.adapters.azure.headers import (
    AMORTIZED_CHARGE_TYPES,
    COMMITTED_MODELS,
    DATASETS,
    FIELDS,
    MONEY_FIELDS,
    canonical_header,
    dataset_of,
    header_map,
    is_focus_export,
)
from billing_pipeline.adapters.azure.manifest import blob_entry, digest, manifest_document
from billing_pipeline.adapters.cells import DATETIME_FORMATS

__all__ = [
    "AMORTIZED_CHARGE_TYPES",
    "COMMITTED_MODELS",
    "DATASETS",
    "DATA_SUFFIXES",
    "DATETIME_FORMATS",
    "FIELDS",
    "MONEY_FIELDS",
    "PROVIDER",
    "AzureAdapter",
    "blob_entry",
    "canonical_header",
    "count_rows",
    "dataset_of",
    "digest",
    "focus_unit_name",
    "header_map",
    "is_focus_export",
    "manifest_document",
]
