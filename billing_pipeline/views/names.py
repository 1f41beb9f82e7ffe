"""Names of the views' assets, lake tables, job, schedule and group (the spine's are in `platform/names.py`)."""

CHARGEBACK = "monthly_chargeback"
UNIT_COSTS = "unit_costs"
MONTHLY_JOB = "billing_monthly"
MONTHLY_SCHEDULE = "billing_monthly_refresh"
VIEWS_GROUP = "billing_views"
REPORTS = "reports"  # `<lake>/reports/YYYY-MM/`: files for people (the chargeback CSV)
DASHBOARDS = "dashboards"  # `<lake>/reports/YYYY-MM/{executive,oncall,debug}.html`
