"""billing-pipeline: cloud billing exports -> FOCUS cost data, as Dagster assets."""

import os

# polars 2.1's Parquet source reads row groups ahead of the sink; on wide billing files (CUR 2.0:
# 135 columns, map columns) the read-ahead alone held gigabytes. One row group ahead keeps the same
# speed: a plain scan -> sink copy of a 3M-row raw slice peaked at 2.7 GiB by default, 0.85 GiB with
# 1 (README, "Performance"). Read by polars at query time; a value the user set wins.
os.environ.setdefault("POLARS_ROW_GROUP_PREFETCH_SIZE", "1")
