"""Write a landing zone: a month of deliveries per export source, invoices and the ground truth.

Each source gets three month-to-date deliveries (the last one final, with invoice ids), written in
order with increasing ``exportTime`` and file mtimes, in the exact folder layout of AWS Data Exports
(create-new mode), legacy CUR (create-new-version mode) or CUR's Athena flavour. The ground truth
is what the generator *meant*, recorded from its own model, so the pipeline can be checked against
it to the last 1e-8.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.tools.generator._util import Month, Piece, iso_z, stable_int, stable_uuid
from billing_pipeline.tools.generator.aws import SPIKE_FACTOR, AwsModel
from billing_pipeline.tools.generator.catalog import AWS_ORGS, FOCUS_VENDORS
from billing_pipeline.tools.generator.focus import FocusModel
from billing_pipeline.tools.generator.writers import (
    CUR2_SCHEMA,
    RollingWriter,
    WrittenFile,
    athena_table,
    cur2_manifest_type,
    cur2_table,
    focus_frame,
    focus_manifest_columns,
    legacy_frame,
    legacy_manifest_columns,
    write_csv_gz,
    write_parquet,
)

SOURCES: tuple[str, ...] = ("aws_cur2", "aws_cur", "aws_cur_parquet", "focus", "gcp", "azure")
DEFAULT_PROVIDERS: tuple[str, ...] = ("aws_cur2", "aws_cur", "focus", "gcp", "azure")
# Rows per data file. Small CSV files make a demo month span several files, as a big real export would.
DEFAULT_ROWS_PER_FILE: dict[str, int] = {
    "gcp": 100_000,
    "azure": 5_000,
    "aws_cur2": 100_000,
    "aws_cur": 5_000,
    "aws_cur_parquet": 100_000,
    "focus": 5_000,
}
MAX_PIECE_ROWS = 500_000
CUR2_DUPLICATE_ROWS = 5

CUR2_EXPORT = "cur2-daily"
CUR2_BUCKET = "aws-billing-exports-111111111111"
CUR2_PREFIX = "billing"
CUR2_ARN_ACCOUNT = "111111111111"
LEGACY_REPORT = "legacy-cur"
LEGACY_PREFIX = "cur"
LEGACY_BUCKET = "legacy-cur-bucket"
FOCUS_EXPORT = "focus-export"
FOCUS_BUCKET = "acme-focus-exports"
FOCUS_PREFIX = "exports"
AWS_ISSUER = "Amazon Web Services, Inc."

# Hours after the covered day at which each source delivers: sources never deliver at the same instant.
_DELIVERY_OFFSET: dict[str, timedelta] = {
    "aws_cur2": timedelta(hours=6, minutes=12, seconds=41),
    "aws_cur": timedelta(hours=7, minutes=53, seconds=7),
    "aws_cur_parquet": timedelta(hours=7, minutes=58, seconds=30),
    "focus": timedelta(hours=9, minutes=4, seconds=19),
}

GROUND_TRUTH_COLUMNS = [
    "source",
    "date",
    "billing_account_id",
    "currency",
    "billed_cost",
    "effective_cost",
    "rows",
    "duplicate_rows",
]
INVOICE_COLUMNS = ["invoice_id", "billing_account_id", "billing_period", "currency", "amount", "issuer"]


@dataclass(frozen=True)
class Delivery:
    """One refresh of one source as written: the unit a sensor sees arrive."""

    source: str
    number: int
    delivery_id: str
    export_time: datetime
    days: tuple[date, ...]
    restated_days: tuple[date, ...]
    final: bool
    manifest: Path | None
    data_files: tuple[Path, ...]
    rows: int
    duplicate_rows: int


@dataclass
class GroundTruth:
    """What the landing zone contains by construction, for checking the pipeline against.

    ``frame`` is ``ground_truth.csv`` (final deliveries; costs as ``Decimal(38, 8)``),
    ``delivery_totals`` the same per delivery (to check restatement handling), ``invoices`` is
    ``invoices.csv``, ``anomalies`` the injected spend spikes.
    """

    out: Path
    month: str
    frame: pl.DataFrame
    invoices: pl.DataFrame
    delivery_totals: pl.DataFrame
    anomalies: pl.DataFrame
    deliveries: list[Delivery] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    number: int
    days: tuple[int, ...]
    restated: tuple[int, ...]
    revisions: dict[int, int]
    final: bool


def plan_deliveries(n_days: int) -> list[_Plan]:
    """Three month-to-date deliveries: 1..D-3, then 1..D-1 restating the previous last 2 days,
    then the final 1..D restating the previous last 2 days. Empty ones (short months) are skipped."""
    d1 = tuple(range(1, n_days - 2))
    d2 = tuple(range(1, n_days))
    d3 = tuple(range(1, n_days + 1))
    restated2 = tuple(d for d in d1[-2:])
    restated3 = tuple(d for d in d2[-2:])
    revisions: dict[int, int] = {}
    plans = []
    for number, days, restated, final in ((1, d1, (), False), (2, d2, restated2, False), (3, d3, restated3, True)):
        if not days:
            continue
        for d in restated:
            revisions[d] = revisions.get(d, 0) + 1
        plans.append(_Plan(number, days, restated, {d: revisions.get(d, 0) for d in days}, final))
    return plans


def _export_time(month: Month, plan: _Plan, source: str) -> datetime:
    if plan.final:
        base = month.end + timedelta(days=2)
    else:
        base = month.day_start(plan.days[-1]) + timedelta(days=1)
    return base + _DELIVERY_OFFSET[source]


def _set_mtime(paths: Sequence[Path], when: datetime) -> None:
    ts = when.timestamp()
    for p in paths:
        os.utime(p, (ts, ts))


def _money(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


def _money_str(units: int) -> str:
    return format(_money(units), "f")


class _Totals:
    """Exact integer sums per (day, billing account, currency) of one delivery."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, str, str], list[int]] = {}

    def add(self, piece: Piece) -> None:
        for key, billed in piece.billed.items():
            slot = self.data.setdefault((piece.day, *key), [0, 0, 0, 0])
            slot[0] += billed
            slot[1] += piece.effective[key]
            slot[2] += piece.rows[key]
            slot[3] += piece.duplicates.get(key, 0)

    def add_duplicates(self, counts: dict[tuple[int, str, str], int]) -> None:
        for key, n in counts.items():
            self.data.setdefault(key, [0, 0, 0, 0])[3] += n

    def records(self, source: str, month: Month) -> list[dict[str, object]]:
        return [
            {
                "source": source,
                "date": month.day(day),
                "billing_account_id": acct,
                "currency": cur,
                "billed_cost": _money(v[0]),
                "effective_cost": _money(v[1]),
                "rows": v[2],
                "duplicate_rows": v[3],
            }
            for (day, acct, cur), v in sorted(self.data.items())
        ]


def _truth_frame(records: list[dict[str, object]], extra: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = dict(extra or {}) | {
        "source": pl.String(),
        "date": pl.Date(),
        "billing_account_id": pl.String(),
        "currency": pl.String(),
        "billed_cost": pl.Decimal(38, 8),
        "effective_cost": pl.Decimal(38, 8),
        "rows": pl.Int64(),
        "duplicate_rows": pl.Int64(),
    }
    return pl.DataFrame(records, schema=schema, orient="row") if records else pl.DataFrame(schema=schema)


class _SourceWriter:
    """Shared delivery loop: generate each day's pieces, roll them into files, write a manifest."""

    source: str = ""

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int) -> None:
        self.out = out
        self.month = month
        self.seed = seed
        self.rows_per_file = rows_per_file
        self.deliveries: list[Delivery] = []
        self.paths: list[Path] = []
        self.final_totals = _Totals()
        self.delivery_totals: list[tuple[int, _Totals]] = []

    def invoice_ids(self) -> dict[str, str]:
        raise NotImplementedError

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        raise NotImplementedError

    def run(self, plans: list[_Plan]) -> None:
        for plan in plans:
            self.deliver(plan)

    def _generate(self, plan: _Plan, writer: RollingWriter, totals: _Totals) -> list[WrittenFile]:
        for day in plan.days:
            for piece in self.day_pieces(day, plan.revisions[day], plan.final):
                totals.add(piece)
                writer.add(piece)
        return writer.close()

    def deliver(self, plan: _Plan) -> None:
        raise NotImplementedError

    def _record(
        self,
        plan: _Plan,
        delivery_id: str,
        when: datetime,
        manifest: Path | None,
        files: list[Path],
        totals: _Totals,
    ) -> None:
        self.delivery_totals.append((plan.number, totals))
        if plan.final:
            self.final_totals = totals
        rows = sum(v[2] + v[3] for v in totals.data.values())
        dups = sum(v[3] for v in totals.data.values())
        self.deliveries.append(
            Delivery(
                source=self.source,
                number=plan.number,
                delivery_id=delivery_id,
                export_time=when,
                days=tuple(self.month.day(d) for d in plan.days),
                restated_days=tuple(self.month.day(d) for d in plan.restated),
                final=plan.final,
                manifest=manifest,
                data_files=tuple(files),
                rows=rows,
                duplicate_rows=dups,
            )
        )


class _DataExportsWriter(_SourceWriter):
    """AWS Data Exports layout (create-new mode), shared by CUR 2.0 and the FOCUS vendor export."""

    export_name = ""
    bucket = ""
    prefix = ""
    extension = ""

    def export_arn(self) -> str:
        raise NotImplementedError

    def manifest_columns(self) -> list[dict[str, str]]:
        raise NotImplementedError

    def make_writer(self, path_for: Callable[[int], Path]) -> RollingWriter:
        raise NotImplementedError

    @property
    def root(self) -> Path:
        return self.out / self.source / self.export_name

    def deliver(self, plan: _Plan) -> None:
        month = self.month
        execution_id = stable_uuid(self.seed, self.source, month.label, plan.number)
        period = f"BILLING_PERIOD={month.label}"
        data_dir = self.root / "data" / period / execution_id
        totals = _Totals()
        writer = self.make_writer(lambda i: data_dir / f"{self.export_name}-{i:05d}.{self.extension}")
        files = self._generate(plan, writer, totals)
        when = _export_time(month, plan, self.source)
        manifest_path = self.root / "metadata" / period / execution_id / f"{self.export_name}-Manifest.json"
        manifest = {
            "executionId": execution_id,
            "exportArn": self.export_arn(),
            "exportTime": iso_z(when, millis=True),
            "billingPeriod": {"start": iso_z(month.start, millis=True), "end": iso_z(month.end, millis=True)},
            "columns": self.manifest_columns(),
            "dataFiles": [
                f"s3://{self.bucket}/{self.prefix}/{self.export_name}/data/{period}/{execution_id}/{f.path.name}"
                for f in files
            ],
            "additionalOutputFiles": [],
        }
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        data_paths = [f.path for f in files]
        _set_mtime(data_paths, when - timedelta(seconds=30))
        _set_mtime([manifest_path], when)
        self.paths += data_paths + [manifest_path]
        self._record(plan, execution_id, when, manifest_path, data_paths, totals)


class Cur2Writer(_DataExportsWriter):
    """AWS CUR 2.0 Parquet export ``cur2-daily``."""

    source = "aws_cur2"
    export_name = CUR2_EXPORT
    bucket = CUR2_BUCKET
    prefix = CUR2_PREFIX
    extension = "snappy.parquet"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.org = AWS_ORGS[self.source]
        self.model = AwsModel(self.org, month, seed, rows_per_day, min(rows_per_file, MAX_PIECE_ROWS))
        days = month.days
        self.duplicate_day = max(1, days - 1)

    def invoice_ids(self) -> dict[str, str]:
        return {self.org.payer_id: _aws_invoice_id(self.org.payer_id, self.month)}

    def export_arn(self) -> str:
        return (
            f"arn:aws:bcm-data-exports:us-east-1:{CUR2_ARN_ACCOUNT}:export/{CUR2_EXPORT}-"
            f"{stable_uuid('export', CUR2_EXPORT)}"
        )

    def manifest_columns(self) -> list[dict[str, str]]:
        return [{"name": f.name, "type": cur2_manifest_type(f.type)} for f in CUR2_SCHEMA]

    def make_writer(self, path_for: Callable[[int], Path]) -> RollingWriter:
        return RollingWriter(path_for, self.rows_per_file, cur2_table, write_parquet)

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        invoice = self.invoice_ids()[self.org.payer_id] if final else None
        dups = CUR2_DUPLICATE_ROWS if final and day == self.duplicate_day else 0
        return self.model.day_pieces(day, rev, invoice, dups)


class FocusExportWriter(_DataExportsWriter):
    """The FOCUS 1.2 vendor export ``focus-export`` (gzip CSV, Data Exports layout)."""

    source = "focus"
    export_name = FOCUS_EXPORT
    bucket = FOCUS_BUCKET
    prefix = FOCUS_PREFIX
    extension = "csv.gz"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.model = FocusModel(month, seed, rows_per_day, min(rows_per_file, MAX_PIECE_ROWS))

    def invoice_ids(self) -> dict[str, str]:
        return {
            v.billing_account_id: f"{v.invoice_prefix}-{self.month.year}{self.month.month:02d}-"
            f"{stable_int(v.billing_account_id + self.month.label) % 1_000_000:06d}"
            for v in FOCUS_VENDORS
        }

    def export_arn(self) -> str:
        return f"arn:focus:data-exports::acme:export/{FOCUS_EXPORT}-{stable_uuid('export', FOCUS_EXPORT)}"

    def manifest_columns(self) -> list[dict[str, str]]:
        return focus_manifest_columns()

    def make_writer(self, path_for: Callable[[int], Path]) -> RollingWriter:
        return RollingWriter(path_for, self.rows_per_file, focus_frame, write_csv_gz)

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        return self.model.day_pieces(day, rev, self.invoice_ids() if final else None)


class LegacyCurWriter(_SourceWriter):
    """Legacy CUR, gzip CSV, create-new-version mode: report ``legacy-cur`` under prefix ``cur``.

    The final assembly ships its last data file twice (a second key with identical bytes), the
    way a re-sent file looks; those rows are counted as duplicates in the ground truth.
    """

    source = "aws_cur"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.org = AWS_ORGS[self.source]
        self.model = AwsModel(self.org, month, seed, rows_per_day, min(rows_per_file, MAX_PIECE_ROWS))
        self.root = out / self.source / LEGACY_PREFIX / LEGACY_REPORT
        self.period = f"{month.start:%Y%m%d}-{month.end:%Y%m%d}"

    def invoice_ids(self) -> dict[str, str]:
        return {self.org.payer_id: _aws_invoice_id(self.org.payer_id, self.month)}

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        invoice = self.invoice_ids()[self.org.payer_id] if final else None
        return self.model.day_pieces(day, rev, invoice)

    def deliver(self, plan: _Plan) -> None:
        month = self.month
        assembly_id = stable_uuid(self.seed, self.source, month.label, plan.number)
        folder = self.root / self.period / assembly_id
        totals = _Totals()
        writer = RollingWriter(
            lambda i: folder / f"{LEGACY_REPORT}-{i}.csv.gz", self.rows_per_file, legacy_frame, write_csv_gz
        )
        files = self._generate(plan, writer, totals)
        data_paths = [f.path for f in files]
        if plan.final and files:
            last = files[-1]
            copy = folder / f"{LEGACY_REPORT}-{len(files) + 1}.csv.gz"
            shutil.copyfile(last.path, copy)
            totals.add_duplicates(last.row_counts)
            data_paths.append(copy)
        when = _export_time(month, plan, self.source)
        manifest = {
            "assemblyId": assembly_id,
            "account": self.org.payer_id,
            "columns": legacy_manifest_columns(),
            "charset": "UTF-8",
            "compression": "GZIP",
            "contentType": "text/csv",
            "reportId": hashlib.sha256(f"{self.org.payer_id}/{LEGACY_REPORT}".encode()).hexdigest(),
            "reportName": LEGACY_REPORT,
            "billingPeriod": {"start": f"{month.start:%Y%m%dT%H%M%S}.000Z", "end": f"{month.end:%Y%m%dT%H%M%S}.000Z"},
            "bucket": LEGACY_BUCKET,
            "reportKeys": [f"{LEGACY_PREFIX}/{LEGACY_REPORT}/{self.period}/{assembly_id}/{p.name}" for p in data_paths],
            "additionalArtifactKeys": [],
        }
        text = json.dumps(manifest, indent=2) + "\n"
        assembly_manifest = folder / f"{LEGACY_REPORT}-Manifest.json"
        period_manifest = self.root / self.period / f"{LEGACY_REPORT}-Manifest.json"
        folder.mkdir(parents=True, exist_ok=True)
        assembly_manifest.write_text(text)
        period_manifest.write_text(text)
        _set_mtime(data_paths, when - timedelta(seconds=30))
        _set_mtime([assembly_manifest, period_manifest], when)
        self.paths += data_paths + [assembly_manifest]
        if period_manifest not in self.paths:
            self.paths.append(period_manifest)
        self._record(plan, assembly_id, when, assembly_manifest, data_paths, totals)


class AthenaCurWriter(_SourceWriter):
    """Legacy CUR's Athena-integration flavour: snake_case Parquet, overwrite mode, no manifest.

    Overwrite mode keeps only the latest refresh, so only the final delivery is written, plus the
    ``cost_and_usage_data_status`` file Athena integration maintains.
    """

    source = "aws_cur_parquet"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.org = AWS_ORGS[self.source]
        self.model = AwsModel(self.org, month, seed, rows_per_day, min(rows_per_file, MAX_PIECE_ROWS))
        self.root = out / self.source / LEGACY_PREFIX / LEGACY_REPORT

    def run(self, plans: list[_Plan]) -> None:
        self.deliver(plans[-1])

    def invoice_ids(self) -> dict[str, str]:
        return {self.org.payer_id: _aws_invoice_id(self.org.payer_id, self.month)}

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        invoice = self.invoice_ids()[self.org.payer_id] if final else None
        return self.model.day_pieces(day, rev, invoice)

    def deliver(self, plan: _Plan) -> None:
        month = self.month
        folder = self.root / LEGACY_REPORT / f"year={month.year}" / f"month={month.month}"
        totals = _Totals()
        writer = RollingWriter(
            lambda i: folder / f"{LEGACY_REPORT}-{i:05d}.snappy.parquet",
            self.rows_per_file,
            athena_table,
            write_parquet,
        )
        files = self._generate(plan, writer, totals)
        status = self.root / "cost_and_usage_data_status" / "cost_and_usage_data_status.parquet"
        status.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"status": ["READY"]}).write_parquet(status)
        when = _export_time(month, plan, self.source)
        data_paths = [f.path for f in files]
        _set_mtime(data_paths, when - timedelta(seconds=30))
        _set_mtime([status], when)
        self.paths += data_paths + [status]
        self._record(plan, "overwrite", when, None, data_paths, totals)


_WRITERS: dict[str, Callable[[Path, Month, int, int, int], _SourceWriter]] = {
    "aws_cur2": Cur2Writer,
    "aws_cur": LegacyCurWriter,
    "aws_cur_parquet": AthenaCurWriter,
    "focus": FocusExportWriter,
}


def _cloud_writers() -> dict[str, Callable[[Path, Month, int, int, int], _SourceWriter]]:
    """GCP and Azure writers (imported late: their modules build on this one)."""
    from billing_pipeline.tools.generator.azure import AzureWriter
    from billing_pipeline.tools.generator.gcp import GcpWriter

    return {"gcp": GcpWriter, "azure": AzureWriter}


def _aws_invoice_id(payer_id: str, month: Month) -> str:
    return str(1_000_000_000 + stable_int(f"{payer_id}|{month.label}") % 9_000_000_000)


def generate_landing_zone(
    out: str | Path,
    month: str = "2026-10",
    seed: int = 7,
    rows_per_day: int = 400,
    days: int | None = None,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    *,
    rows_per_file: int | None = None,
) -> GroundTruth:
    """Write a month of sample billing exports under ``out`` and return what they contain.

    ``rows_per_day`` is the number of distinct line items per usage day and source (at least the
    day's fee/tax/credit rows); ``days`` truncates the month; ``providers`` picks sources among
    ``aws_cur2``, ``aws_cur``, ``aws_cur_parquet`` and ``focus``; ``rows_per_file`` overrides the
    per-source data file size. The same arguments always produce the same files; each generated
    source's folder ``out/<source>`` is replaced, other content of ``out`` is left alone.
    """
    unknown = [p for p in providers if p not in SOURCES]
    if unknown:
        raise ValueError(f"unknown provider(s) {unknown}; choose from {list(SOURCES)}")
    if rows_per_day < 1:
        raise ValueError("rows_per_day must be at least 1")
    period = Month.parse(month, days)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    plans = plan_deliveries(period.days)
    writers: list[_SourceWriter] = []
    for source in dict.fromkeys(providers):
        # The generator owns <out>/<source>: stale files of an earlier run would sit beside the
        # new deliveries without any manifest naming them.
        shutil.rmtree(root / source, ignore_errors=True)
        per_file = rows_per_file or DEFAULT_ROWS_PER_FILE[source]
        writer = (_WRITERS | _cloud_writers())[source](root, period, seed, per_file, rows_per_day)
        writer.run(plans)
        writers.append(writer)

    truth_records = [r for w in writers for r in w.final_totals.records(w.source, period)]
    truth = _truth_frame(truth_records)
    delivery_records = [
        {"delivery": number} | r
        for w in writers
        for number, totals in w.delivery_totals
        for r in totals.records(w.source, period)
    ]
    delivery_totals = _truth_frame(delivery_records, {"delivery": pl.Int64()}).select(
        "source", "delivery", *GROUND_TRUTH_COLUMNS[1:]
    )
    invoices = _invoices(writers, period)
    paths = [p for w in writers for p in w.paths]
    truth_path = root / "ground_truth.csv"
    truth.with_columns(
        pl.col("date").dt.strftime("%Y-%m-%d"),
        pl.col("billed_cost").cast(pl.String),
        pl.col("effective_cost").cast(pl.String),
    ).select(GROUND_TRUTH_COLUMNS).write_csv(truth_path)
    invoice_path = root / "invoices" / "invoices.csv"
    invoice_path.parent.mkdir(parents=True, exist_ok=True)
    invoices.with_columns(pl.col("amount").cast(pl.String)).write_csv(invoice_path)
    anomalies = _anomalies(writers, period)
    return GroundTruth(
        out=root,
        month=period.label,
        frame=truth,
        invoices=invoices,
        delivery_totals=delivery_totals,
        anomalies=anomalies,
        deliveries=[d for w in writers for d in w.deliveries],
        paths=paths + [truth_path, invoice_path],
    )


def _invoices(writers: list[_SourceWriter], month: Month) -> pl.DataFrame:
    """One invoice per source billing account and currency: the final delivery's month total."""
    rows = []
    for w in writers:
        if hasattr(w, "invoice_rows"):  # GCP (by invoice.month) and Azure build their own
            rows += w.invoice_rows()
            continue
        ids = w.invoice_ids()
        sums: dict[tuple[str, str], int] = {}
        for (_, acct, cur), v in w.final_totals.data.items():
            sums[(acct, cur)] = sums.get((acct, cur), 0) + v[0]
        issuers = {v.billing_account_id: v.provider for v in FOCUS_VENDORS}
        for (acct, cur), total in sorted(sums.items()):
            rows.append(
                {
                    "invoice_id": ids[acct],
                    "billing_account_id": acct,
                    "billing_period": month.label,
                    "currency": cur,
                    "amount": _money(total),
                    "issuer": issuers.get(acct, AWS_ISSUER),
                }
            )
    schema = {
        "invoice_id": pl.String(),
        "billing_account_id": pl.String(),
        "billing_period": pl.String(),
        "currency": pl.String(),
        "amount": pl.Decimal(38, 8),
        "issuer": pl.String(),
    }
    # Two flavours of one legacy report share a payer and an invoice: list it once.
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.unique(subset=["invoice_id", "billing_account_id", "currency"], keep="first", maintain_order=True)


def _anomalies(writers: list[_SourceWriter], month: Month) -> pl.DataFrame:
    rows = []
    for w in writers:
        model = getattr(w, "model", None)
        if isinstance(model, AwsModel):
            rows.append(
                {
                    "source": w.source,
                    "date": month.day(model.spike_day),
                    "billing_account_id": model.org.payer_id,
                    "service": model.org.spike_product_code,
                    "factor": SPIKE_FACTOR,
                }
            )
        elif isinstance(model, FocusModel):
            for vm in model.vendors:
                if vm.v.spike_service:
                    rows.append(
                        {
                            "source": w.source,
                            "date": month.day(vm.spike_day),
                            "billing_account_id": vm.v.billing_account_id,
                            "service": vm.v.spike_service,
                            "factor": SPIKE_FACTOR,
                        }
                    )
    schema = {
        "source": pl.String(),
        "date": pl.Date(),
        "billing_account_id": pl.String(),
        "service": pl.String(),
        "factor": pl.Float64(),
    }
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
