"""The lake's data lifecycle, no Dagster: which table belongs to which retention family, the retention
pass with its append-only audit log, S3 lifecycle rules and least-privilege IAM policies."""
