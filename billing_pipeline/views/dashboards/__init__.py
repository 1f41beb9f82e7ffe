"""Dashboards: self-contained HTML pages (plotly.js inline, so they open offline, from a laptop or from S3
static hosting) written to `<lake>/reports/YYYY-MM/`: `executive.html`, `oncall.html` and `debug.html`.

`reader.py` gathers a month's data from the lake; `executive.py`, `oncall.py` and `debug.py` turn that
already-read data into HTML strings (pure functions); `layout.py` holds what the pages share (escaping,
figures, tables, key figures); `publish.py` writes the pages through the Store.
"""
