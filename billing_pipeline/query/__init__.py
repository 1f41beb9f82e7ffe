"""`python -m billing_pipeline.query "SELECT ..."`: the lake's DuckDB views from a shell (logic in
`billing_pipeline.platform.catalogue`)."""
