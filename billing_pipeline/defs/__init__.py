"""The Dagster shell only: assets, asset checks, sensors, schedules and their metadata.

Thin: each definition calls plain functions of `spine/` and `observability/`.
"""
