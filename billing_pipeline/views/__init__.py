"""What people read: reporting-currency conversion, monthly chargeback statements and unit costs.

Plain functions over the lake (no Dagster); `billing_pipeline/defs/views_assets.py` is their shell.
"""
