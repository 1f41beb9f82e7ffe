"""Plain functions that judge the pipeline (no Dagster): SLIs, error budgets, anomalies, audit trails,
ingestion cost and alert routing."""
