"""Names of the assets, their lake tables, the job and the asset groups: one place, so a rename is one edit.

An asset's lake table has the asset's name (`<lake>/<name>/date=D/...`), so each constant is both.
"""

RAW = "raw_line_items"
NORMALIZED = "normalized_line_items"
ENRICHED = "tag_enriched_costs"
RECONCILED = "reconciliation_deltas"
SPINE = (RAW, NORMALIZED, ENRICHED, RECONCILED)  # in build order
COST_ANOMALIES = "cost_anomalies"
SLO_BUDGETS = "slo_error_budgets"
DAY_ASSETS = (*SPINE, COST_ANOMALIES, SLO_BUDGETS)  # what `billing_daily` materializes for a day, in order

JOB = "billing_daily"
LAKE_POOL = "billing_lake"  # the concurrency pool of the step that writes a day's slices: one at a time
SPINE_GROUP = "billing_spine"
SLO_GROUP = "billing_slos"
