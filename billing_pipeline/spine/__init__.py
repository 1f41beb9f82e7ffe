"""The data path, no Dagster: raw -> normalized -> allocated -> reconciled slices of one (day, source),
and the state that decides what to rebuild."""
