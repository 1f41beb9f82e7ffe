"""A month of GCP billing export appends, as files exported from the BigQuery export table.

Append-only, like the real table: every usage day is exported in a main batch the next morning
and a late batch a day later (10 % of its rows), each batch with a strictly later `export_time`.
Batches alternate between newline-delimited JSON (gzip) and Parquet, under
`gcp/billing-export/export_date=YYYY-MM-DD/`. Rows carry nested `service`, `sku`, `project`
(with labels), resource `labels`, `location`, `usage`, `resource`, `credits[]` (sustained-use,
committed-use and promotion credits, negative), `invoice.month` and `export_time`; `cost` is a
float with at most 6 decimals (micros, as Google's own examples sum money). On top:

- corrections: a later batch negates three rows of day 2 (`adjustment_info`, cost_type
  `adjustment`) and restates them at a new cost; both the negation and the restatement are kept;
- late rows at month end: part of the last day's late batch is exported next month and invoiced
  on next month's invoice (`invoice.month`), so the month's invoice excludes them;
- a re-pulled window: the last batch's file is exported a second time under another name; its
  rows are duplicates the pipeline must count and drop.

Ground truth (exact, from the integer micros): per usage day, account and currency, BilledCost =
EffectiveCost = cost + credits over every kept row, `rows` = FOCUS rows (one per charge plus one per
credit), `duplicate_rows` = the FOCUS rows of the re-pulled file. The invoice is the sum over rows
whose `invoice.month` is the month.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from billing_pipeline.adapters.gcp import SCHEMA
from billing_pipeline.tools.generator._util import Month, Piece, constant_strings, rng_for, stable_int, take_strings
from billing_pipeline.tools.generator.gcp_samples import write_ndjson
from billing_pipeline.tools.generator.landing import Delivery, _Plan, _set_mtime, _SourceWriter, _Totals

ACCOUNT = "01A2B3-C4D5E6-F7A8B9"
CURRENCY = "USD"
EXPORT_DIR = "billing-export"
TABLE = f"gcp_billing_export_resource_v1_{ACCOUNT.replace('-', '_')}"
LATE_SHARE = 0.1
TO_1E8 = 100  # micros -> the 1e-8 units of the landing zone's ground truth

# (project id, number, name, labels)
PROJECTS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("acme-web-prod", "310000000001", "Acme Web Prod", [("team", "web"), ("env", "prod")]),
    ("acme-search-prod", "310000000002", "Acme Search Prod", [("team", "search"), ("environment", "production")]),
    ("acme-data-lake", "310000000003", "Acme Data Lake", [("cost_center", "CC-1003")]),
    ("acme-ml-sandbox", "310000000004", "Acme ML Sandbox", [("env", "dev")]),
]
# (service id, service, sku id, sku, usage unit, pricing unit, usage per pricing unit, micros per pricing unit,
#  resource collection or "", regional)
SKUS: list[tuple[str, str, str, str, str, str, float, int, str, bool]] = [
    (
        "6F81-5844-456A",
        "Compute Engine",
        "CP-N2-CORE",
        "N2 Instance Core running in Americas",
        "seconds",
        "hour",
        3600.0,
        31_611,
        "instances",
        True,
    ),
    (
        "6F81-5844-456A",
        "Compute Engine",
        "CP-N2-RAM",
        "N2 Instance Ram running in Americas",
        "byte-seconds",
        "gibibyte hour",
        3600.0 * 2**30,
        4_237,
        "instances",
        True,
    ),
    (
        "6F81-5844-456A",
        "Compute Engine",
        "CP-PD-SSD",
        "SSD backed PD Capacity",
        "byte-seconds",
        "gibibyte month",
        2.6784e15,
        170_000,
        "disks",
        True,
    ),
    (
        "95FF-2EF5-5EA1",
        "Cloud Storage",
        "GCS-STD",
        "Standard Storage US Multi-region",
        "byte-seconds",
        "gibibyte month",
        2.6784e15,
        26_000,
        "buckets",
        False,
    ),
    ("24E6-581D-38E5", "BigQuery", "BQ-ANALYSIS", "Analysis", "bytes", "tebibyte", 2.0**40, 6_250_000, "", False),
    (
        "9662-B51E-5089",
        "Cloud SQL",
        "SQL-PG-CPU",
        "Cloud SQL for PostgreSQL: Zonal - vCPU",
        "seconds",
        "hour",
        3600.0,
        41_300,
        "instances",
        True,
    ),
    (
        "E505-1604-58F8",
        "Networking",
        "NET-EGRESS",
        "Network Internet Egress from Americas to EMEA",
        "bytes",
        "gibibyte",
        2.0**30,
        120_000,
        "",
        True,
    ),
    ("5490-F7B7-8DF6", "Cloud Logging", "LOG-VOLUME", "Log Volume", "bytes", "gibibyte", 2.0**30, 500_000, "", False),
]
REGIONS = [
    ("us-central1", "US", "us-central1-a"),
    ("us-east1", "US", "us-east1-b"),
    ("europe-west1", "BE", "europe-west1-b"),
]
CREDIT_TYPES = [
    ("SUSTAINED_USAGE_DISCOUNT", "Sustained Usage Discount"),
    ("COMMITTED_USAGE_DISCOUNT", "Committed use discount: CPU"),
    ("PROMOTION", "Free trial credit"),
]


def _micros_to_float(values: np.ndarray) -> np.ndarray:
    """Integer micros as the float BigQuery holds (the nearest double to the short decimal).

    IEEE division of an exact integer by 1e6 is correctly rounded, so it is that nearest double
    (the same as parsing the 6-decimal text, for any |micros| < 2**53).
    """
    return np.asarray(values, dtype=np.int64) / 1e6


def _formatted_floats(values: np.ndarray, spec: str) -> np.ndarray:
    """`float(format(v, spec))` for every value, for `spec` `.6f` or `.6e`, without a loop per row.

    The value is rounded to its decimal digits by numpy (`k = rint(v / step)`, then `k * step` or
    `k / (1 / step)`, both correctly rounded); the few values whose scaled fraction lies near a half,
    where numpy's rounding of `v / step` could pick the other neighbour, are formatted by Python.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    if not values.size:
        return out
    magnitude = np.abs(values)
    nonzero = magnitude > 0
    if spec == ".6f":
        exponent = np.full(values.shape, -6)
        scaled = values * 1e6
    elif spec == ".6e":
        exponent = np.where(nonzero, np.floor(np.log10(np.where(nonzero, magnitude, 1.0))), 0).astype(np.int64) - 6
        scaled = values / 10.0 ** exponent.astype(np.float64)
    else:
        raise ValueError(f"unsupported float format {spec!r}")
    digits = np.rint(scaled)
    negative_exponent = exponent < 0
    rounded = np.where(
        negative_exponent,
        digits / 10.0 ** np.where(negative_exponent, -exponent, 0).astype(np.float64),
        digits * 10.0 ** np.where(negative_exponent, 0, exponent).astype(np.float64),
    )
    unsure = (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) < 1e-3) | (np.abs(scaled) >= 2**52)
    if spec == ".6e":
        unsure |= nonzero & ((np.abs(digits) < 1e6) | (np.abs(digits) >= 1e7))
    out[:] = np.where(nonzero, rounded, 0.0)
    for index in np.flatnonzero(unsure):
        out[index] = float(format(float(values[index]), spec))
    return out


def _lookup(values: list[object], dtype: pl.DataType, idx: np.ndarray) -> pl.Series:
    """Gather from a small table of (nested) values by an index array, already in the export's type."""
    return pl.Series(values, dtype=dtype).gather(pl.Series(idx, dtype=pl.UInt32))


def _resource_name(sku: tuple, project: tuple, region: tuple | None, k: int) -> str | None:  # type: ignore[type-arg]
    """The resource's global name, from its SKU's collection (None for SKUs without resources)."""
    if not sku[8]:
        return None
    service = "compute" if sku[1] == "Compute Engine" else sku[1].lower().replace(" ", "")
    return (
        f"//{service}.googleapis.com/projects/{project[0]}/zones/{(region or REGIONS[0])[2]}/{sku[8]}/{sku[8][:-1]}-{k}"
    )


class GcpModel:
    """Draws a usage day's export rows; everything keyed by (seed, day, batch) for determinism."""

    def __init__(self, month: Month, seed: int, rows_per_day: int) -> None:
        self.month = month
        self.seed = seed
        self.rows_per_day = max(2, rows_per_day)

    def day_rows(self, day: int) -> pl.DataFrame:
        """The day's charges (without export_time/invoice), plus `_micros`/`_credit_micros` helpers.

        Built column by column: the nested values that depend on a few choices (SKU, project,
        region, label spelling) are gathered from small tables, the amounts computed by numpy.
        """
        rng = rng_for(self.seed, stable_int("gcp"), day)
        n = self.rows_per_day
        sku = rng.integers(0, len(SKUS), n)
        project = rng.integers(0, len(PROJECTS), n)
        region = rng.integers(0, len(REGIONS), n)
        hour = rng.integers(0, 24, n)
        pricing_qty = np.round(rng.gamma(2.0, 1.5, n), 6)
        price = np.array([SKUS[i][7] for i in range(len(SKUS))])[sku]
        micros = np.round(pricing_qty * price).astype(np.int64)
        per_unit = np.array([SKUS[i][6] for i in range(len(SKUS))])[sku]
        has_credit = rng.random(n) < 0.2
        credit_type = rng.integers(0, len(CREDIT_TYPES), n)
        credit_micros = np.where(has_credit, -np.round(micros * rng.uniform(0.05, 0.3, n)).astype(np.int64), 0)
        tagged = rng.random(n) < 0.7
        row = np.arange(n)
        regional = np.array([s[9] for s in SKUS])[sku]
        # region index, or len(REGIONS) for a SKU without a region
        row_region = np.where(regional, region, len(REGIONS))
        regions_or_none: list[tuple[str, str, str] | None] = [*REGIONS, None]

        starts = pl.select(
            (pl.lit(self.month.day_start(day)) + pl.duration(hours=pl.Series(hour))).cast(SCHEMA["usage_start_time"])
        ).to_series()
        locations = [
            {
                "location": (r[0] if r else "us"),
                "country": (r[1] if r else "US"),
                "region": (r[0] if r else None),
                "zone": (r[2] if r and s[8] == "instances" else None),
            }
            for s in SKUS
            for r in regions_or_none
        ]
        resources = [
            _resource_name(s, p, r, k) for s in SKUS for p in PROJECTS for r in regions_or_none for k in range(7)
        ]
        resource_idx = ((sku * len(PROJECTS) + project) * len(regions_or_none) + row_region) * 7 + row % 7
        # label table: 0 = no labels, then per project the spelling `Team` (row % 3 == 0) or `team`
        label_table: list[list[dict[str, str]]] = [[]] + [
            [{"key": key, "value": p[0].split("-")[1]}] for p in PROJECTS for key in ("Team", "team")
        ]
        label_idx = np.where(tagged, 1 + project * 2 + (row % 3 != 0), 0)
        usage_amount = pricing_qty * per_unit
        small = per_unit < 1e12
        usage_amount[small] = _formatted_floats(usage_amount[small], ".6f")
        usage_amount[~small] = _formatted_floats(usage_amount[~small], ".6e")
        credit = pl.struct(
            pl.col("_credit_name").alias("name"),
            pl.col("_credit_amount").alias("amount"),
            pl.col("_credit_name").alias("full_name"),
            pl.col("_credit_id").alias("id"),
            pl.col("_credit_kind").alias("type"),
        )
        frame = pl.DataFrame(
            {
                "billing_account_id": constant_strings(ACCOUNT, n),
                "service": _lookup([{"id": s[0], "description": s[1]} for s in SKUS], SCHEMA["service"], sku),
                "sku": _lookup([{"id": s[2], "description": s[3]} for s in SKUS], SCHEMA["sku"], sku),
                "usage_start_time": starts,
                "usage_end_time": pl.select(starts + pl.duration(hours=1)).to_series(),
                "project": _lookup(
                    [
                        {
                            "id": p[0],
                            "number": p[1],
                            "name": p[2],
                            "labels": [{"key": k, "value": v} for k, v in p[3]],
                            "ancestry_numbers": f"/1000/{p[1]}/",
                            "ancestors": [],
                        }
                        for p in PROJECTS
                    ],
                    SCHEMA["project"],
                    project,
                ),
                "labels": _lookup(label_table, SCHEMA["labels"], label_idx),
                "system_labels": _lookup([[]], SCHEMA["system_labels"], np.zeros(n, dtype=np.int64)),
                "location": _lookup(locations, SCHEMA["location"], sku * len(regions_or_none) + row_region),
                "resource": _lookup(
                    [{"name": (g.rsplit("/", 1)[-1] if g else None), "global_name": g} for g in resources],
                    SCHEMA["resource"],
                    resource_idx,
                ),
                "price": _lookup(
                    [
                        {
                            "effective_price": float(f"{s[7] / 1e6:.6f}"),
                            "tier_start_amount": 0.0,
                            "unit": s[5],
                            "pricing_unit_quantity": 1.0,
                        }
                        for s in SKUS
                    ],
                    SCHEMA["price"],
                    sku,
                ),
                "cost": _micros_to_float(micros),
                "currency": constant_strings(CURRENCY, n),
                "currency_conversion_rate": np.ones(n),
                "_usage_amount": usage_amount,
                "_usage_unit": take_strings([s[4] for s in SKUS], sku),
                "_usage_pricing_qty": pricing_qty.astype(np.float64),
                "_usage_pricing_unit": take_strings([s[5] for s in SKUS], sku),
                "_credit_name": take_strings([t[1] for t in CREDIT_TYPES], credit_type),
                "_credit_kind": take_strings([t[0] for t in CREDIT_TYPES], credit_type),
                "_credit_amount": _micros_to_float(credit_micros),
                "_credit_id": take_strings([t[0].lower() + "-" for t in CREDIT_TYPES], credit_type)
                + take_strings([p[0] for p in PROJECTS], project),
                "_micros": micros,
                "_credit_micros": credit_micros,
            }
        )
        frame = frame.with_columns(
            pl.struct(
                pl.col("_usage_amount").alias("amount"),
                pl.col("_usage_unit").alias("unit"),
                pl.col("_usage_pricing_qty").alias("amount_in_pricing_units"),
                pl.col("_usage_pricing_unit").alias("pricing_unit"),
            ).alias("usage"),
            pl.concat_list(credit)
            .list.head(pl.when(pl.col("_credit_micros") != 0).then(1).otherwise(0))
            .alias("credits"),
            pl.lit("regular").alias("cost_type"),
        ).select(
            "billing_account_id",
            "service",
            "sku",
            "usage_start_time",
            "usage_end_time",
            "project",
            "labels",
            "system_labels",
            "location",
            "resource",
            "price",
            "cost",
            "currency",
            "currency_conversion_rate",
            "usage",
            "credits",
            "cost_type",
            "_micros",
            "_credit_micros",
        )
        frame = frame.with_columns(pl.col(c).cast(SCHEMA[c]) for c in frame.columns if c in SCHEMA)
        # GCP aggregates per hour, SKU, project and resource: two rows never agree on every column
        return frame.unique(
            subset=[c for c in frame.columns if not c.startswith("_")], keep="first", maintain_order=True
        )


class GcpWriter(_SourceWriter):
    """GCP export files: one file per append batch, JSON and Parquet alternating, plus a re-pull."""

    source = "gcp"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.model = GcpModel(month, seed, rows_per_day)
        self.root = out / self.source / EXPORT_DIR
        self.invoice_month = f"{month.year}{month.month:02d}"
        following = month.end
        self.next_invoice_month = f"{following.year}{following.month:02d}"
        self.invoice_totals: dict[tuple[str, str, str], int] = {}

    def invoice_ids(self) -> dict[str, str]:
        return {ACCOUNT: f"GCP-{self.invoice_month}-{stable_int(ACCOUNT + self.month.label) % 1_000_000:06d}"}

    def invoice_rows(self) -> list[dict[str, object]]:
        """Invoices by `invoice.month`: only the month's own (next month's is not final yet)."""
        from billing_pipeline.tools.generator.landing import _money

        return [
            {
                "invoice_id": self.invoice_ids()[acct],
                "billing_account_id": acct,
                "billing_period": self.month.label,
                "currency": cur,
                "amount": _money(units * TO_1E8),
                "issuer": "Google Cloud",
            }
            for (acct, cur, invoice_month), units in sorted(self.invoice_totals.items())
            if invoice_month == self.invoice_month
        ]

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        raise NotImplementedError("GCP appends are built per batch, see run()")

    def run(self, plans: list[_Plan]) -> None:
        """Every day's main and late batch, then the corrections, then the re-pulled file."""
        batches: list[tuple[datetime, int, pl.DataFrame]] = []
        days = list(range(1, self.month.days + 1))
        full_month = self.month.days == self.month.days_in_month
        for day in days:
            rows = self.model.day_rows(day)
            late = np.random.default_rng([self.seed, day, 99]).random(rows.height) < LATE_SHARE
            main_at = self.month.day_start(day) + timedelta(days=1, hours=3, minutes=day % 50)
            late_at = self.month.day_start(day) + timedelta(days=2, hours=2, minutes=day % 50, seconds=7)
            month_end = full_month and day == days[-1]
            invoice = pl.struct(
                pl.when(pl.lit(month_end) & pl.Series(late))
                .then(pl.lit(self.next_invoice_month))
                .otherwise(pl.lit(self.invoice_month))
                .alias("month"),
                pl.lit(None, dtype=pl.String).alias("publisher_type"),
            )
            rows = rows.with_columns(invoice.alias("invoice"))
            batches.append((main_at, day, rows.filter(~pl.Series(late))))
            if late.any():
                batches.append((late_at, day, rows.filter(pl.Series(late))))
        if len(days) >= 2:
            batches.append(self._corrections(days))
        batches.sort(key=lambda b: b[0])
        last_file: Path | None = None
        for number, (when, _, rows) in enumerate(batches, start=1):
            last_file = self._write_batch(number, when, rows, duplicate=False)
        if last_file is not None:
            self._repull(len(batches) + 1, batches[-1][0], last_file, batches[-1][2])

    def _corrections(self, days: list[int]) -> tuple[datetime, int, pl.DataFrame]:
        """Three rows of day 2 negated, and restated at 110 % of their cost, a day after the last export."""
        original = (
            self.model.day_rows(2)
            .with_columns(
                pl.struct(
                    pl.lit(self.invoice_month).alias("month"), pl.lit(None, dtype=pl.String).alias("publisher_type")
                ).alias("invoice")
            )
            .head(3)
        )

        def adjusted(frame: pl.DataFrame, factor: float, mode: str) -> pl.DataFrame:
            micros = (frame["_micros"].to_numpy() * factor).round().astype(np.int64)
            credit_micros = (frame["_credit_micros"].to_numpy() * factor).round().astype(np.int64)
            return frame.with_columns(
                pl.Series("cost", _micros_to_float(micros)),
                pl.Series("_micros", micros),
                pl.Series("_credit_micros", credit_micros),
                pl.col("credits").list.eval(
                    pl.element().struct.with_fields(
                        (pl.element().struct.field("amount") * factor).round(6).alias("amount")
                    )
                ),
                pl.col("usage").struct.with_fields(
                    (pl.col("usage").struct.field("amount") * (1 if factor > 0 else -1)).alias("amount"),
                    (pl.col("usage").struct.field("amount_in_pricing_units") * (1 if factor > 0 else -1)).alias(
                        "amount_in_pricing_units"
                    ),
                ),
                pl.lit("adjustment").alias("cost_type"),
                pl.struct(
                    pl.lit(f"adj-{self.month.label}-2").alias("id"),
                    pl.lit("Correction of day 2 pricing").alias("description"),
                    pl.lit(mode).alias("mode"),
                    pl.lit("USAGE_CORRECTION").alias("type"),
                )
                .cast(SCHEMA["adjustment_info"])
                .alias("adjustment_info"),
            )

        negation = adjusted(original, -1.0, "COMPLETE_NEGATION")
        restated = adjusted(original, 1.1, "PARTIAL_CORRECTION")
        # the credits' rounded float must equal the integer micros the truth uses
        fixed = []
        for frame in (negation, restated):
            credit_floats = frame["credits"].list.eval(pl.element().struct.field("amount")).list.sum().fill_null(0)
            fixed.append(frame.with_columns(pl.Series("_credit_micros", (credit_floats * 1e6).round().cast(pl.Int64))))
        when = self.month.day_start(days[-1]) + timedelta(days=3, hours=5)
        return when, 2, pl.concat(fixed)

    def _path(self, number: int, when: datetime, suffix: str) -> Path:
        return self.root / f"export_date={when:%Y-%m-%d}" / f"{TABLE}-{when:%Y%m%dT%H%M%S}-{number:05d}{suffix}"

    def _write_batch(self, number: int, when: datetime, rows: pl.DataFrame, duplicate: bool) -> Path:
        rows = rows.with_columns(pl.lit(when.astimezone(UTC)).cast(SCHEMA["export_time"]).alias("export_time"))
        payload = rows.select([c for c in SCHEMA if c in rows.columns])
        suffix = ".json.gz" if number % 2 else ".parquet"
        path = self._path(number, when, suffix)
        if suffix == ".parquet":
            path.parent.mkdir(parents=True, exist_ok=True)
            payload.write_parquet(path)
        else:
            write_ndjson(payload, path)
        self._account(number, when, rows, [path], duplicate)
        return path

    def _repull(self, number: int, when: datetime, source_file: Path, rows: pl.DataFrame) -> None:
        """The last window pulled again: the same rows in a second file."""
        copy = source_file.with_name(source_file.name.replace(f"-{number - 1:05d}", f"-{number - 1:05d}-repull"))
        shutil.copyfile(source_file, copy)
        later = when + timedelta(minutes=30)
        self._account(
            number,
            later,
            rows.with_columns(pl.lit(when).cast(SCHEMA["export_time"]).alias("export_time")),
            [copy],
            duplicate=True,
        )

    def _account(self, number: int, when: datetime, rows: pl.DataFrame, files: list[Path], duplicate: bool) -> None:
        totals = _Totals()
        focus_rows = rows.select(
            pl.col("usage_start_time").dt.day().alias("day"),
            (pl.col("_micros") + pl.col("_credit_micros")).alias("units"),
            (1 + pl.col("credits").list.len()).alias("rows"),
            pl.col("invoice").struct.field("month").alias("invoice_month"),
        )
        for day, units, n in focus_rows.group_by("day").agg(pl.col("units").sum(), pl.col("rows").sum()).iter_rows():
            slot = totals.data.setdefault((day, ACCOUNT, CURRENCY), [0, 0, 0, 0])
            if duplicate:
                slot[3] += n
            else:
                slot[0] += units * TO_1E8
                slot[1] += units * TO_1E8
                slot[2] += n
            final = self.final_totals.data.setdefault((day, ACCOUNT, CURRENCY), [0, 0, 0, 0])
            for i in range(4):
                final[i] += slot[i]
        if not duplicate:
            for month, units in focus_rows.group_by("invoice_month").agg(pl.col("units").sum()).iter_rows():
                key = (ACCOUNT, CURRENCY, month)
                self.invoice_totals[key] = self.invoice_totals.get(key, 0) + units
        _set_mtime(files, when)
        self.paths += files
        self.delivery_totals.append((number, totals))
        days = tuple(sorted(self.month.day(d) for d in focus_rows["day"].unique().to_list()))
        self.deliveries.append(
            Delivery(
                source=self.source,
                number=number,
                delivery_id=files[0].name,
                export_time=when,
                days=days,
                restated_days=(),
                final=False,
                manifest=None,
                data_files=tuple(files),
                rows=rows.height,
                duplicate_rows=rows.height if duplicate else 0,
            )
        )
