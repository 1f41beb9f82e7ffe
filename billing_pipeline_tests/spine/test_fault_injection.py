"""Fault injection (invariants 5 and 6, DESIGN "Bad input"): faults against a lake that already holds good days.

One landing zone holds two usage days of every kind of source: AWS CUR 2.0 in Parquet (generated) and in
gzip CSV (built here), legacy CUR in gzip CSV, native FOCUS from Data Exports and from a plain folder,
GCP (NDJSON and Parquet, append-only) and Azure (a run with a manifest). The spine is run for both days,
the lake then holds good slices of every source. Each test then injects one fault into a new delivery of
one provider, re-runs the days, and checks:

- nothing was lost or doubled: normalized_line_items is read straight from the lake's Parquet files and
  its BilledCost summed per (day, source, billing account, currency) in Python Decimal, against totals
  that never went through the code under test (the generator's ground_truth.csv, or the delivered cells
  read with the csv / gzip / json modules);
- the fault was loud (the publish_guard check fails at ERROR naming source and file, and the builder raises
  DeliveryIncompleteError naming them), or quarantined with its reason (quarantine/records, quarantine/rows,
  quarantine/duplicates, and a byte-for-byte copy of a bad file under quarantine/files);
- the other sources of the day were built as usual (every source's totals are checked after every run);
- once the input is repaired and the days re-run, exactly the original totals are back.

Most cases run through `ops_fixtures.run_day` (the skip-aware builders the assets call); the duplicate
contract, source independence and operator acceptance run through the real `billing_daily` job on a
Dagster instance on disk.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import shutil
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, instance_for_test

from billing_pipeline.adapters.azure import manifest_document
from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.lifecycle.audit_log import read_audit_log
from billing_pipeline.observability import slis
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.platform.state import read_state
from billing_pipeline.platform.storage import Store, scratch_dir
from billing_pipeline.spine.guard import DeliveryIncompleteError, PublishHeldBackError
from billing_pipeline.spine.raw import build_raw_slice_if_changed
from billing_pipeline.tools.generator import generate_landing_zone

from ..conftest import gcp_delivered_totals, parquet_cost_totals, write_config, write_data_export
from ..ops_fixtures import cur2_month_frame, run_day

MONTH = "2026-10"
DAYS = (dt.date(2026, 10, 1), dt.date(2026, 10, 2))
BASELINE_TIME = "2026-11-03T00:00:00Z"  # the hand-built sources' delivery, like the generator's final one
FAULT_TIME = "2026-11-10T00:00:00Z"  # a newer delivery than any in the template
REPAIR_TIME = "2026-11-11T00:00:00Z"  # the provider's re-delivery after the fault
LEGACY_RANGE = "20261001-20261101"
AZURE_RANGE = "20261001-20261031"

# source name -> (provider, export root below the landing zone). Source names of generated sources are
# the generator's, so that ground_truth.csv speaks of them directly.
SOURCES: dict[str, tuple[str, str]] = {
    "aws_cur2": ("aws_cur2", "aws_cur2/cur2-daily"),  # generated, Parquet
    "cur2_csv": ("aws_cur2", "cur2-csv/cur2-csv"),  # built here (ops_fixtures rows), gzip CSV
    "aws_cur": ("aws_cur", "aws_cur/cur/legacy-cur"),  # generated legacy CUR, gzip CSV, two files
    "focus": ("focus", "focus/focus-export"),  # generated native FOCUS, Data Exports layout, gzip CSV
    "focus_plain": ("focus", "focus-plain"),  # the same FOCUS file in a plain folder (no manifest)
    "gcp": ("gcp", "gcp/billing-export"),  # generated, NDJSON + Parquet, append-only
    "azure": ("azure", "azure/cost-exports/actual-daily"),  # generated ActualCost run, three gzip CSV blobs
}
DATA_EXPORTS = ("aws_cur2", "cur2_csv", "focus")

Key = tuple[str, str]  # (billing account, currency)
Totals = dict[Key, tuple[Decimal, int]]  # -> (sum of BilledCost, rows)
Expected = dict[tuple[str, dt.date], Totals]


# ---- totals computed without the code under test --------------------------------------------------------


def ground_truth(path: Path) -> Expected:
    """`ground_truth.csv` of the generator, with the csv module: (source, day) -> account/currency totals."""
    out: Expected = defaultdict(dict)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            out[(row["source"], dt.date.fromisoformat(row["date"]))][(row["billing_account_id"], row["currency"])] = (
                Decimal(row["billed_cost"]),
                int(row["rows"]),
            )
    return dict(out)


def csv_records(data: bytes) -> list[dict[str, str]]:
    """The records of a delivered (gzip) CSV file, with the gzip and csv modules."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def cur2_csv_totals(files: dict[str, bytes]) -> Expected:
    """Per usage day of the delivered CUR 2.0 CSV cells (only `Usage` rows are built here: billed = unblended)."""
    out: Expected = defaultdict(dict)
    for data in files.values():
        for row in csv_records(data):
            slot = out[("cur2_csv", dt.date.fromisoformat(row["line_item_usage_start_date"][:10]))]
            key = (row["bill_payer_account_id"], row["line_item_currency_code"])
            billed, rows = slot.get(key, (Decimal(0), 0))
            slot[key] = (billed + Decimal(row["line_item_unblended_cost"]), rows + 1)
    return dict(out)


def plus(base: Totals, more: dict[Key, tuple[Decimal, int]]) -> Totals:
    out = dict(base)
    for key, (billed, rows) in more.items():
        old = out.get(key, (Decimal(0), 0))
        out[key] = (old[0] + billed, old[1] + rows)
    return out


def gcp_file_totals(name: str, data: bytes, workdir: Path) -> dict[dt.date, dict[Key, tuple[Decimal, int]]]:
    """(day) -> (account, currency) -> (cost + credits, FOCUS rows = charges + credits) of one GCP file."""
    path = workdir / name
    path.write_bytes(data)
    out: dict[dt.date, dict[Key, tuple[Decimal, int]]] = defaultdict(dict)
    for (day, account, currency), (cost, charges, credits) in gcp_delivered_totals(path).items():
        out[day][(account, currency)] = (cost, charges + credits)
    return dict(out)


def count_records(name: str, data: bytes) -> int:
    """Data rows of a delivered file, as its provider's manifest states them."""
    if name.endswith(".parquet"):
        return pq.read_metadata(io.BytesIO(data)).num_rows
    return len(csv_records(data))


# ---- faults ------------------------------------------------------------------------------------------------


def truncated(data: bytes) -> bytes:
    """An upload cut off half way (a Parquet file without its footer)."""
    return data[: len(data) // 2]


def flipped(data: bytes) -> bytes:
    """One byte of the deflate stream flipped (the stream ends in a decoding or CRC error)."""
    broken = bytearray(data)
    broken[len(broken) // 2] ^= 0x55
    return bytes(broken)


def bad_crc(data: bytes) -> bytes:
    """The data intact, the gzip trailer's CRC32 wrong."""
    broken = bytearray(data)
    broken[-8] ^= 0xFF
    return bytes(broken)


def header_only(name: str, data: bytes) -> bytes:
    """The same file with its header (CSV) or schema (Parquet) and no rows."""
    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
        return parquet_bytes(table.slice(0, 0))
    text = gzip.decompress(data).decode("utf-8-sig")
    return gzip.compress(text[: text.index("\n") + 1].encode())


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def csv_gz_bytes(records: list[dict[str, str]], header: list[str]) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return gzip.compress(text.getvalue().encode())


def as_parquet(files: dict[str, bytes]) -> dict[str, bytes]:
    """gzip CSV files re-delivered as Parquet (every cell as its delivered text)."""
    out = {}
    for name, data in files.items():
        frame = pl.read_csv(io.BytesIO(gzip.decompress(data)), infer_schema=False)
        out[name.removesuffix(".csv.gz") + ".parquet"] = parquet_bytes(frame.to_arrow())
    return out


# ---- the lake with good days -------------------------------------------------------------------------------


@dataclass
class Template:
    snapshot: Path  # the landing zone and lake after the good days, copied (mtimes kept)
    work: Path  # where it was built, and where each test gets its own copy (same absolute paths)
    expected: Expected
    current: dict[str, dict[str, bytes]]  # source -> the files of its current delivery
    versions: dict[tuple[str, dt.date], str]  # (source, day) -> the version each good slice was built from
    late_gcp: dict[str, bytes]  # GCP files appended after the good days (late rows, new export_time)


def _late_gcp_files(root: Path) -> dict[str, bytes]:
    """Two late GCP appends (one NDJSON, one Parquet): rows of an earlier file exported again later, i.e.
    new rows (GCP's export is append-only; export_time is part of a row), not a re-pull of old ones."""
    json_file = next(root.rglob("*-00003.json.gz"))
    lines = gzip.decompress(json_file.read_bytes()).decode().splitlines(keepends=True)
    moved = [
        line.replace('"export_time":"2026-10-03 03:02:00 UTC"', '"export_time":"2026-10-09 03:02:00 UTC"')
        for line in lines
    ]
    assert moved != lines
    parquet_file = next(p for p in root.rglob("*-00004.parquet"))
    table = pq.read_table(parquet_file)
    index = table.schema.get_field_index("export_time")
    later = pa.array([dt.datetime(2026, 10, 9, 5, tzinfo=dt.UTC)] * table.num_rows, type=table.schema[index].type)
    return {
        "gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9-20261009T030200-00009.json.gz": gzip.compress(
            "".join(moved).encode()
        ),
        "gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9-20261009T050000-00010.parquet": parquet_bytes(
            table.set_column(index, "export_time", later)
        ),
    }


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("fault-injection")
    work = base / "work"
    landing = work / "landing"
    truth = generate_landing_zone(
        landing, month=MONTH, days=len(DAYS), rows_per_day=8, providers=["aws_cur2", "aws_cur", "focus", "gcp", "azure"]
    )
    current: dict[str, dict[str, bytes]] = {}
    for source in ("aws_cur2", "aws_cur", "focus", "azure"):
        final = max((d for d in truth.deliveries if d.source == source), key=lambda d: d.number)
        current[source] = {p.name: p.read_bytes() for p in final.data_files}
    current["focus_plain"] = dict(current["focus"])
    frame = cur2_month_frame(MONTH, days=list(DAYS))
    current["cur2_csv"] = {
        f"part-{i}.csv.gz": gzip.compress(frame.gather_every(2, offset=i).write_csv().encode()) for i in range(2)
    }
    write_data_export(
        landing / SOURCES["cur2_csv"][1], "exec-1", current["cur2_csv"], period=MONTH, export_time=BASELINE_TIME
    )
    plain = landing / SOURCES["focus_plain"][1]
    plain.mkdir(parents=True)
    for name, data in current["focus_plain"].items():
        (plain / name).write_bytes(data)

    expected = ground_truth(landing / "ground_truth.csv")
    for day in DAYS:
        expected[("focus_plain", day)] = expected[("focus", day)]  # the very same file
    expected |= cur2_csv_totals(current["cur2_csv"])
    config = _write_main_config(work)
    for day in DAYS:
        run_day(config, day)
    store = Store()
    for source in SOURCES:  # the good days: every source's slices hold exactly what was delivered
        for day in DAYS:
            lake_file = Path(slice_url(config.lake_url, "normalized_line_items", day, source))
            got = {k: (billed, rows) for k, (billed, _, rows) in parquet_cost_totals(lake_file).items()}
            assert got == expected[(source, day)], (source, day)
            assert "held_back" not in read_state(store, config.lake_url, source, day)
    versions = {(s, d): read_state(store, config.lake_url, s, d)["raw"]["version"] for s in SOURCES for d in DAYS}
    late_gcp = _late_gcp_files(landing / "gcp")
    snapshot = base / "template"
    shutil.copytree(work, snapshot)  # copy2: modification times (part of a file's identity) are kept
    return Template(snapshot, work, expected, current, versions, late_gcp)


def _write_main_config(work: Path, urls: dict[str, str] | None = None, **extra: Any) -> BillingConfig:
    urls = urls or {}
    sources = [
        {"name": name, "provider": provider, "url": urls.get(name, str(work / "landing" / root))}
        for name, (provider, root) in SOURCES.items()
    ]
    return load_config(
        write_config(work, sources, invoices_url=str(work / "landing" / "invoices"), start_date=f"{MONTH}-01", **extra)
    )


class Lake:
    """One test's copy of the template: deliver into its landing zone, run days, read its lake."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.work = template.work
        self.landing = self.work / "landing"
        self.config = load_config(self.work / "billing.yaml")
        self.expected: Expected = dict(template.expected)
        self.store = Store()

    # -- landing zone ------------------------------------------------------------------------------------

    def root(self, source: str) -> Path:
        return self.landing / SOURCES[source][1]

    def current(self, source: str) -> dict[str, bytes]:
        return dict(self.template.current[source])

    def deliver(
        self,
        source: str,
        version: str,
        files: dict[str, bytes],
        when: str,
        intended: dict[str, bytes] | None = None,
        extra_uris: list[str] | None = None,
    ) -> list[Path]:
        """A new delivery of `files` as the source's provider lays it out (manifests included), dated `when`.

        `intended` is what the provider meant to write: the row counts its manifest states (Azure).
        GCP and plain folders have no versions: the files are appended to the folder.
        """
        root = self.root(source)
        when_dt = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        if source in DATA_EXPORTS:
            folder = write_data_export(root, version, files, period=MONTH, export_time=when, extra_uris=extra_uris)
            return [folder / name for name in files]
        if source == "aws_cur":
            folder = root / LEGACY_RANGE / version
        elif source == "azure":
            folder = root / AZURE_RANGE / version
        elif source == "gcp":  # appended late: a repair replaces the broken file in place
            folder = root / "export_date=2026-10-09"
        else:
            folder = root
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in files.items():
            (folder / name).write_bytes(data)
            paths.append(folder / name)
        if source == "aws_cur":  # the assembly's manifest, and the period-level one naming it current
            period_manifest = root / LEGACY_RANGE / "legacy-cur-Manifest.json"
            document = json.loads(period_manifest.read_text())
            document["assemblyId"] = version
            document["reportKeys"] = [f"cur/legacy-cur/{LEGACY_RANGE}/{version}/{name}" for name in files]
            for manifest in (folder / "legacy-cur-Manifest.json", period_manifest):
                manifest.write_text(json.dumps(document))
                os.utime(manifest, (when_dt.timestamp(), when_dt.timestamp()))
        if source == "azure":
            intended = intended or files
            blobs = [
                {
                    "blobName": f"cost-exports/actual-daily/{AZURE_RANGE}/{version}/{name}",
                    "byteCount": len(data),
                    "dataRowCount": count_records(name, intended[name]),
                }
                for name, data in files.items()
            ]
            document = manifest_document(
                version,
                blobs,
                "ActualCost",
                when_dt,
                dt.date(2026, 10, 1),
                dt.date(2026, 10, 31),
                export_name="actual-daily",
            )
            (folder / "manifest.json").write_text(json.dumps(document))
        return paths

    def set_url(self, source: str, url: str) -> None:
        self.config = _write_main_config(self.work, {source: url})

    # -- running -------------------------------------------------------------------------------------------

    def run(self, days: tuple[dt.date, ...] = DAYS) -> None:
        for day in days:
            run_day(self.config, day)

    def build_raw(self, source: str, day: dt.date) -> None:
        """The raw builder the asset calls, for one source and day (to see what it raises)."""
        with scratch_dir() as workdir:
            build_raw_slice_if_changed(self.config.source(source), day, self.store, self.config.lake_url, workdir)

    # -- reading the lake --------------------------------------------------------------------------------

    def path(self, table: str, day: dt.date, source: str) -> Path:
        return Path(slice_url(self.config.lake_url, table, day, source))

    def totals(self, source: str, day: dt.date) -> Totals:
        """normalized_line_items of (day, source), summed in Python Decimal over each cell's text."""
        path = self.path("normalized_line_items", day, source)
        if not path.exists():
            return {}
        return {key: (billed, rows) for key, (billed, _, rows) in parquet_cost_totals(path).items()}

    def assert_totals(self, expected: Expected | None = None) -> None:
        """Every source of every day holds exactly the expected totals (nothing lost, nothing doubled)."""
        expected = expected or self.expected
        for source in SOURCES:
            for day in DAYS:
                assert self.totals(source, day) == expected.get((source, day), {}), (source, day)

    def state(self, source: str, day: dt.date) -> dict[str, Any]:
        return read_state(self.store, self.config.lake_url, source, day)

    def quarantine(self, kind: str, source: str, day: dt.date) -> pl.DataFrame:
        path = Path(quarantine_url(self.config.lake_url, kind, day, source))
        return pl.read_parquet(path) if path.exists() else pl.DataFrame()

    def guard(self, day: dt.date) -> slis.SliResult:
        """What the `publish_guard` check of raw_line_items reports for the day."""
        return slis.publish_guard(self.config, self.store, day, dt.datetime.now(dt.UTC))


@pytest.fixture
def lake(template: Template) -> Lake:
    """A fresh copy of the lake holding the good days (and its landing zone), at the template's paths."""
    shutil.rmtree(template.work, ignore_errors=True)
    shutil.copytree(template.snapshot, template.work)
    return Lake(template)


def severity(result: slis.SliResult) -> str:
    return result.severity or result.target.severity


# ---- what a fault must leave behind ------------------------------------------------------------------------


def assert_file_quarantined(lake: Lake, source: str, bad: Path, kinds: tuple[str, ...]) -> None:
    """Each re-run day records the bad file (source, file, reason) and keeps a byte-for-byte copy of it."""
    for day in DAYS:
        records = lake.quarantine("records", source, day)
        assert records.height, (source, day)
        named = records.filter(
            pl.col("file_uri").str.ends_with(f"{bad.parent.name}/{bad.name}") & pl.col("kind").is_in(kinds)
        )
        assert named.height == 1, (day, records.to_dicts())
        record = named.row(0, named=True)
        assert record["source"] == source and record["reason"], record
        assert record["quarantined_copy"] and Path(record["quarantined_copy"]).read_bytes() == bad.read_bytes()


def assert_previous_delivery_used(
    lake: Lake, source: str, bad: Path, fault_version: str, kinds: tuple[str, ...] = ("unreadable",)
) -> None:
    """Invariant 5: the newer delivery with the bad file is incomplete; the previous complete one stays
    current, the bad file is quarantined with its reason, and publish_guard names it (WARN)."""
    for day in DAYS:
        raw = lake.state(source, day)["raw"]
        assert raw["version"] == lake.template.versions[(source, day)], (day, raw)
        assert any(fault_version in v for v in raw["passed_over_versions"]), (day, raw)
        assert "held_back" not in lake.state(source, day)
        guard = lake.guard(day)
        assert not guard.passed and severity(guard) == "WARN", guard
        assert source in guard.summary and bad.name in guard.summary, guard.summary
    assert_file_quarantined(lake, source, bad, kinds)


def assert_held_back(
    lake: Lake,
    source: str,
    named: list[str],
    kind: str,
    error: type[DeliveryIncompleteError] = DeliveryIncompleteError,
    days: tuple[dt.date, ...] = DAYS,
) -> None:
    """Invariant 5: the source's day is held back (published slices kept): the builder raises naming source
    and `named` (file, version or URL), the state records it, and publish_guard fails at ERROR naming them."""
    for day in days:
        with pytest.raises(error) as raised:
            lake.build_raw(source, day)
        assert f"'{source}'" in str(raised.value) and all(n in str(raised.value) for n in named), str(raised.value)
        held = lake.state(source, day).get("held_back")
        assert held and held["kind"] == kind, held
        guard = lake.guard(day)
        assert not guard.passed and severity(guard) == "ERROR", guard
        assert guard.per_source[source] == 1.0 and sum(guard.per_source.values()) == 1.0, guard.per_source
        assert f"'{source}'" in guard.summary and all(n in guard.summary for n in named), guard.summary


def assert_restored(lake: Lake, expected: Expected | None = None) -> None:
    """The original totals are back and no source is held back (publish_guard has no ERROR left)."""
    lake.assert_totals(expected)
    for day in DAYS:
        for source in SOURCES:
            assert "held_back" not in lake.state(source, day), (source, day)
        guard = lake.guard(day)
        assert guard.value == 0 and (guard.passed or severity(guard) == "WARN"), guard.summary


# ---- (a) truncated Parquet in a new delivery -------------------------------------------------------------


def parquet_delivery(lake: Lake, source: str) -> dict[str, bytes]:
    """The source's current delivery as Parquet files (GCP: a late appended Parquet file)."""
    if source == "gcp":
        return {n: d for n, d in lake.template.late_gcp.items() if n.endswith(".parquet")}
    files = lake.current(source)
    return files if source == "aws_cur2" else as_parquet(files)


def gcp_expected_with(lake: Lake, files: dict[str, bytes], tmp_path: Path) -> Expected:
    """The original totals plus a late GCP append (its delivered cells summed in Decimal)."""
    expected = dict(lake.expected)
    for name, data in files.items():
        for day, more in gcp_file_totals(name, data, tmp_path).items():
            expected[("gcp", day)] = plus(expected.get(("gcp", day), {}), more)
    return expected


def repair(lake: Lake, source: str, good: dict[str, bytes], tmp_path: Path) -> Expected:
    """The provider re-delivers the files whole (GCP: the broken append is replaced by the whole file);
    returns what the lake must then hold."""
    lake.deliver(source, "repaired-5", good, REPAIR_TIME)
    return gcp_expected_with(lake, good, tmp_path) if source == "gcp" else lake.expected


@pytest.mark.parametrize("source", ["aws_cur2", "focus", "gcp", "azure"])
def test_a_truncated_parquet_file_in_a_new_delivery(lake: Lake, source: str, tmp_path: Path) -> None:
    good = parquet_delivery(lake, source)
    name = sorted(good)[0]
    bad = lake.deliver(source, "fault-4", {**good, name: truncated(good[name])}, FAULT_TIME, intended=good)
    bad_file = next(p for p in bad if p.name == name)
    lake.run()

    lake.assert_totals()  # nothing lost, nothing doubled, no other source touched
    if source == "gcp":  # append-only: one delivery, nothing older to fall back on
        assert_held_back(lake, source, [name], "incomplete")
        assert_file_quarantined(lake, source, bad_file, ("unreadable",))
    else:
        assert_previous_delivery_used(lake, source, bad_file, "fault-4")

    expected = repair(lake, source, good, tmp_path)
    lake.run()
    assert_restored(lake, expected)


def test_a_repaired_delivery_clears_the_publish_guard_warning(lake: Lake) -> None:
    """Once the provider re-delivers the broken files whole, the current delivery is complete and read to its
    end: publish_guard passes again instead of warning about a delivery that is no longer current."""
    good = lake.current("aws_cur2")
    ((name, data),) = good.items()
    lake.deliver("aws_cur2", "fault-4", {name: truncated(data)}, FAULT_TIME)
    lake.run()
    assert all(not lake.guard(day).passed for day in DAYS)

    lake.deliver("aws_cur2", "repaired-5", good, REPAIR_TIME)
    lake.run()
    lake.assert_totals()
    for day in DAYS:
        guard = lake.guard(day)
        assert guard.passed, f"{day}: {guard.summary}"


# ---- (b) gzip CSV with flipped bytes or a bad CRC -----------------------------------------------------------


def gzip_delivery(lake: Lake, source: str) -> dict[str, bytes]:
    if source == "gcp":
        return {n: d for n, d in lake.template.late_gcp.items() if n.endswith(".json.gz")}
    return lake.current(source)


@pytest.mark.parametrize(
    ("source", "damage"),
    [
        ("cur2_csv", flipped),
        ("cur2_csv", bad_crc),
        ("aws_cur", flipped),
        ("aws_cur", bad_crc),
        ("azure", flipped),
        ("azure", bad_crc),
        ("focus", flipped),
        ("gcp", flipped),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_a_corrupt_gzip_file_in_a_new_delivery(
    lake: Lake, source: str, damage: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    good = gzip_delivery(lake, source)
    name = sorted(good)[-1]
    corrupt = damage(good[name])
    with pytest.raises((OSError, EOFError, zlib.error)):  # the damage is real: Python's gzip refuses it
        gzip.decompress(corrupt)
    paths = lake.deliver(source, "fault-4", {**good, name: corrupt}, FAULT_TIME, intended=good)
    bad_file = next(p for p in paths if p.name == name)
    lake.run()  # the issue: an Azure blob with a corrupt gzip stream crashed this, naming no source or file

    lake.assert_totals()
    if source == "gcp":
        assert_held_back(lake, source, [name], "incomplete")
        assert_file_quarantined(lake, source, bad_file, ("unreadable",))
    else:
        assert_previous_delivery_used(lake, source, bad_file, "fault-4")

    expected = repair(lake, source, good, tmp_path)
    lake.run()
    assert_restored(lake, expected)


# ---- (c) a newer delivery of zero-byte files, or of files without rows ---------------------------------------


@pytest.mark.parametrize("source", ["aws_cur2", "cur2_csv", "aws_cur", "focus", "azure", "gcp"])
def test_a_new_delivery_of_zero_byte_files_is_incomplete(lake: Lake, source: str, tmp_path: Path) -> None:
    """Zero bytes is an interrupted upload, not an empty export: the delivery is incomplete and the previous
    complete one stays current (GCP, append-only, has none: its day is held back)."""
    good = lake.template.late_gcp if source == "gcp" else lake.current(source)
    paths = lake.deliver(source, "fault-4", {name: b"" for name in good}, FAULT_TIME, intended=good)
    lake.run()

    lake.assert_totals()
    if source == "gcp":
        assert_held_back(lake, source, [paths[0].name], "incomplete")
        for path in paths:
            assert_file_quarantined(lake, source, path, ("empty", "unreadable"))
    else:
        assert_previous_delivery_used(lake, source, paths[0], "fault-4", kinds=("empty", "unreadable"))
        for path in paths[1:]:
            assert_file_quarantined(lake, source, path, ("empty", "unreadable"))

    expected = repair(lake, source, good, tmp_path)
    lake.run()
    assert_restored(lake, expected)


@pytest.mark.parametrize("source", ["aws_cur2", "cur2_csv", "aws_cur", "focus", "azure"])
def test_a_new_delivery_without_rows_is_held_back_by_the_shrink_guard(lake: Lake, source: str, tmp_path: Path) -> None:
    """Header-only CSV files / zero-row Parquet files: a complete delivery that would publish nothing where
    the lake holds the day's rows waits for an operator (PublishHeldBackError, ERROR check)."""
    good = lake.current(source)
    lake.deliver(source, "fault-4", {name: header_only(name, data) for name, data in good.items()}, FAULT_TIME)
    lake.run()

    lake.assert_totals()
    assert_held_back(lake, source, ["fault-4", "no rows"], "shrink", PublishHeldBackError)

    expected = repair(lake, source, good, tmp_path)
    lake.run()
    assert_restored(lake, expected)


def test_a_new_version_costing_far_less_is_held_back_by_the_shrink_guard(lake: Lake) -> None:
    """Same rows, a tenth of the cost on October 2: the absolute billed cost falls by more than half."""
    day = DAYS[1]
    cheaper = {}
    for name, data in lake.current("cur2_csv").items():
        records = csv_records(data)
        for row in records:
            if row["line_item_usage_start_date"].startswith(day.isoformat()):
                row["line_item_unblended_cost"] = str(Decimal(row["line_item_unblended_cost"]) / 10)
        cheaper[name] = csv_gz_bytes(records, list(records[0]))
    lake.deliver("cur2_csv", "exec-2", cheaper, FAULT_TIME)
    lake.run()

    lake.assert_totals()
    assert_held_back(lake, "cur2_csv", ["exec-2", "absolute billed cost"], "shrink", PublishHeldBackError, days=(day,))
    assert "held_back" not in lake.state("cur2_csv", DAYS[0])  # October 1 did not change

    lake.deliver("cur2_csv", "repaired-3", lake.current("cur2_csv"), REPAIR_TIME)
    lake.run()
    assert_restored(lake)


def test_gcp_files_vanishing_behind_a_zero_row_file_are_held_back(lake: Lake, tmp_path: Path) -> None:
    """GCP is append-only: its rows shrink only when files disappear. Every file gone but one without rows."""
    root = lake.root("gcp")
    saved = tmp_path / "saved"
    shutil.copytree(root, saved)
    empty = header_only("x.parquet", next(iter(parquet_delivery(lake, "gcp").values())))
    for path in [p for p in root.rglob("*") if p.is_file()]:
        path.unlink()
    lake.deliver(
        "gcp",
        "fault-4",
        {"gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9-20261010T000000-00011.parquet": empty},
        FAULT_TIME,
    )
    lake.run()

    lake.assert_totals()
    assert_held_back(lake, "gcp", ["no rows"], "shrink", PublishHeldBackError)

    shutil.copytree(saved, root, dirs_exist_ok=True)  # the files come back (the empty one stays: it adds nothing)
    lake.run()
    assert_restored(lake)


def test_a_late_gcp_file_without_rows_changes_nothing(lake: Lake) -> None:
    empty = header_only("x.parquet", next(iter(parquet_delivery(lake, "gcp").values())))
    lake.deliver(
        "gcp",
        "late",
        {"gcp_billing_export_resource_v1_01A2B3_C4D5E6_F7A8B9-20261010T000000-00011.parquet": empty},
        FAULT_TIME,
    )
    lake.run()
    assert_restored(lake)


# ---- (d) a source URL with a typo ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(SOURCES))
def test_a_source_url_with_a_typo_is_held_back_until_fixed(lake: Lake, source: str) -> None:
    """A folder that does not exist lists no delivery while the lake holds the source's days: held back, the
    slices kept, ERROR check naming the source and the URL; fixing the URL restores the source."""
    right = str(lake.root(source))
    typo = right + "-typo"
    lake.set_url(source, typo)
    lake.run()

    lake.assert_totals()
    assert_held_back(lake, source, [typo, "lists no delivery"], "shrink", PublishHeldBackError)
    for day in DAYS:
        assert lake.path("raw_line_items", day, source).exists()

    lake.set_url(source, right)
    lake.run()
    assert_restored(lake)


# ---- (e) a FOCUS file delivered twice under two names ------------------------------------------------------


def assert_duplicates_counted(lake: Lake, source: str) -> None:
    """Every row of the second copy is a counted duplicate, in quarantine/duplicates; nothing doubled."""
    for day in DAYS:
        billed = sum((b for b, _ in lake.expected[(source, day)].values()), Decimal(0))
        rows = sum(r for _, r in lake.expected[(source, day)].values())
        result = lake.state(source, day)["normalized"]["result"]
        assert result["duplicate_rows"] == rows and result["raw_rows"] == 2 * rows, result
        duplicates = lake.quarantine("duplicates", source, day)
        assert duplicates.height == rows
        assert sum((Decimal(str(v)) for v in duplicates["BilledCost"]), Decimal(0)) == billed
    lake.assert_totals()


FOCUS_DUPLICATE_CASES = ["plain-folder-copy", "manifest-two-names", "manifest-lists-one-file-twice"]


@pytest.mark.parametrize("case", FOCUS_DUPLICATE_CASES)
def test_a_focus_file_delivered_twice(lake: Lake, case: str) -> None:
    ((name, data),) = lake.current("focus").items()
    copy = name.replace(".csv.gz", "-copy.csv.gz")
    if case == "plain-folder-copy":
        source = "focus_plain"
        lake.deliver(source, "", {copy: data}, FAULT_TIME)
    elif case == "manifest-two-names":
        source = "focus"
        lake.deliver(source, "dup-4", {name: data, copy: data}, FAULT_TIME)
    else:
        source = "focus"
        uri = f"s3://aws-origin-bucket/exports/focus-export/data/BILLING_PERIOD={MONTH}/dup-4/{name}"
        lake.deliver(source, "dup-4", {name: data}, FAULT_TIME, extra_uris=[uri])
    lake.run()

    if case == "manifest-lists-one-file-twice":  # read once, and the manifest's slip recorded
        lake.assert_totals()
        for day in DAYS:
            assert lake.state(source, day)["normalized"]["result"]["duplicate_rows"] == 0
            records = lake.quarantine("records", source, day)
            assert not records.is_empty(), f"{day}: the manifest listing a file twice is recorded nowhere"
            records = records.filter(pl.col("kind") == "listed_twice")
            assert records.height == 1 and records["file_uri"].item().endswith(f"dup-4/{name}"), records
    else:
        assert_duplicates_counted(lake, source)

    if case == "plain-folder-copy":
        (lake.root(source) / copy).unlink()
    else:
        lake.deliver(source, "repaired-5", {name: data}, REPAIR_TIME)
    lake.run()
    assert_restored(lake)
    for day in DAYS:
        assert lake.quarantine("duplicates", source, day).is_empty()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def run_billing_daily(
    config_path: Path, day: dt.date, instance: DagsterInstance, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """`billing_daily` for one day on the instance; the day's check evaluations by name."""
    result = (
        build_definitions(config_path)
        .resolve_job_def(JOB_NAME)
        .execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False, tags=tags or {})
    )
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_the_duplicate_contract_is_judged_per_source(lake: Lake, instance: DagsterInstance) -> None:
    """One source at 50 % duplicates fails the blocking `contract_duplicates` check (ERROR) even though the
    day's other, clean sources bring the rate over all sources far below the contract's threshold."""
    ((name, data),) = lake.current("focus_plain").items()
    lake.deliver("focus_plain", "", {name.replace(".csv.gz", "-copy.csv.gz"): data}, FAULT_TIME)
    day = DAYS[1]
    folder = lake.work / "contract"
    folder.mkdir()
    clean = ("aws_cur2", "cur2_csv", "focus")  # no duplicate rows (the generator sends some for the others)
    config_path = write_config(
        folder,
        [{"name": name, "provider": SOURCES[name][0], "url": str(lake.root(name))} for name in ("focus_plain", *clean)],
        lake_url=lake.config.lake_url,
        invoices_url=lake.config.invoices_url,
        start_date=f"{MONTH}-01",
    )
    checks = run_billing_daily(config_path, day, instance)

    contract = checks["contract_duplicates"]
    assert not contract.passed and contract.severity == AssetCheckSeverity.ERROR
    metadata = {k: v.value for k, v in contract.metadata.items()}
    assert metadata["sli/duplicate_rate/focus_plain"] == 0.5
    assert metadata["sli/duplicate_rate_all_sources"] < metadata["slo/duplicate_rate"] < 0.5
    assert "focus_plain" in (contract.description or "")
    assert lake.totals("focus_plain", day) == lake.expected[("focus_plain", day)]  # counted, never doubled


# ---- (f) usage dates outside the delivery's billing period ----------------------------------------------------

OUT_OF_PERIOD = (dt.date(2026, 9, 15), dt.date(1999, 1, 1))
# source -> (usage start column, how the provider writes a date in it)
USAGE_START: dict[str, tuple[str, Callable[[dt.date], str]]] = {
    "aws_cur2": ("line_item_usage_start_date", dt.date.isoformat),
    "aws_cur": ("lineItem/UsageStartDate", dt.date.isoformat),
    "focus": ("ChargePeriodStart", dt.date.isoformat),
    "azure": ("Date", lambda d: d.strftime("%m/%d/%Y")),
}


def out_of_period_file(source: str, files: dict[str, bytes]) -> tuple[str, bytes]:
    """Two rows of October 2 re-dated to 2026-09-15 and 1999-01-01, as one more file of the delivery."""
    column, written = USAGE_START[source]
    name = sorted(files)[0]
    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(files[name]))
        index = table.schema.get_field_index(column)
        rows = [i for i, v in enumerate(table.column(column).to_pylist()) if v.date() == DAYS[1]][:2]
        moved = pa.array(
            [dt.datetime.combine(d, dt.time(), dt.UTC) for d in OUT_OF_PERIOD], type=table.schema[index].type
        )
        return "extra.parquet", parquet_bytes(table.take(rows).set_column(index, column, moved))
    records = csv_records(files[name])
    rows = [r for r in records if r[column].startswith(written(DAYS[1]))][:2]
    for row, day in zip(rows, OUT_OF_PERIOD, strict=True):
        row[column] = row[column].replace(written(DAYS[1]), written(day))
    return f"extra-{name}", csv_gz_bytes(rows, list(records[0]))


@pytest.mark.parametrize("source", list(USAGE_START))
def test_usage_dates_outside_the_billing_period_are_quarantined(lake: Lake, source: str) -> None:
    good = lake.current(source)
    extra_name, extra = out_of_period_file(source, good)
    assert extra_name not in good
    first = DAYS[0]
    raw_before = pl.read_parquet(lake.path("raw_line_items", first, source)).height
    rows_before = lake.quarantine("rows", source, first).height
    lake.deliver(source, "fault-4", {**good, extra_name: extra}, FAULT_TIME)
    lake.run()

    lake.assert_totals()  # the other rows publish, the two bad rows are in no day's total
    assert pl.read_parquet(lake.path("raw_line_items", first, source)).height == raw_before + 2
    quarantined = lake.quarantine("rows", source, first)
    assert quarantined.height == rows_before + 2
    column, written = USAGE_START[source]
    for day in OUT_OF_PERIOD:
        reasons = [r for r in quarantined["reason"] if written(day) in r]  # the value as delivered
        assert len(reasons) == 1 and column in reasons[0] and "outside the billing period" in reasons[0], reasons
    deltas = pl.read_parquet(lake.path("reconciliation_deltas", first, source))
    assert deltas.height and all(Decimal(str(v)) == 0 for v in deltas["conservation_delta"]), deltas
    assert lake.quarantine("rows", source, DAYS[1]).height == 0

    lake.deliver(source, "repaired-5", good, REPAIR_TIME)
    lake.run()
    assert_restored(lake)
    assert lake.quarantine("rows", source, first).height == rows_before


# ---- (g) a held-back source never stops another source of the same day -------------------------------------


@pytest.mark.parametrize("broken", ["url-typo", "corrupt-gzip"])
def test_a_broken_source_never_stops_another_through_billing_daily(
    lake: Lake, instance: DagsterInstance, broken: str
) -> None:
    """Azure breaks (its folder renamed away, or a blob with a corrupt gzip stream) while CUR 2.0 delivers a
    restatement of October 2: the restatement is published, Azure keeps its slices, and publish_guard fails
    naming Azure and what broke it (held back: ERROR; an older complete run standing in: WARN)."""
    day = DAYS[1]
    frame = cur2_month_frame(MONTH, days=list(DAYS), cost=lambda d, t, s: 20.0 + len(t) + len(s) + d.day / 8)
    restated = {
        f"part-{i}.csv.gz": gzip.compress(frame.gather_every(2, offset=i).write_csv().encode()) for i in range(2)
    }
    lake.deliver("cur2_csv", "exec-2", restated, FAULT_TIME)
    azure_url = str(lake.root("azure"))
    if broken == "url-typo":
        azure_url = named = azure_url + "-typo"
    else:
        good = lake.current("azure")
        named = sorted(good)[0]
        lake.deliver("azure", "fault-4", {**good, named: flipped(good[named])}, FAULT_TIME, intended=good)
    folder = lake.work / f"two-sources-{broken}"  # one path per config: a process caches it
    folder.mkdir()
    config_path = write_config(
        folder,
        [
            {"name": "cur2_csv", "provider": "aws_cur2", "url": str(lake.root("cur2_csv"))},
            {"name": "azure", "provider": "azure", "url": azure_url},
        ],
        lake_url=lake.config.lake_url,
        invoices_url=lake.config.invoices_url,
        start_date=f"{MONTH}-01",
    )
    checks = run_billing_daily(config_path, day, instance)

    assert lake.totals("cur2_csv", day) == cur2_csv_totals(restated)[("cur2_csv", day)]
    assert lake.totals("azure", day) == lake.expected[("azure", day)]
    guard = checks["publish_guard"]
    assert not guard.passed and "'azure'" in (guard.description or "") and named in (guard.description or "")
    assert "cur2_csv" not in (guard.description or "")
    assert guard.severity == (AssetCheckSeverity.ERROR if broken == "url-typo" else AssetCheckSeverity.WARN)
    assert checks["source_failures"].passed


# ---- (h) an operator accepts a smaller version --------------------------------------------------------------


@pytest.mark.parametrize("via", ["run-tag", "config"])
def test_a_shrunk_version_is_held_back_until_accepted(lake: Lake, instance: DagsterInstance, via: str) -> None:
    day = DAYS[1]
    records = [r for data in lake.current("cur2_csv").values() for r in csv_records(data)]
    kept = [
        r
        for r in records
        if not r["line_item_usage_start_date"].startswith(day.isoformat()) or r["line_item_product_code"] == "AmazonEC2"
    ]  # October 2 falls from 9 rows to 3
    shrunk = {"part-0.csv.gz": csv_gz_bytes(kept, list(records[0]))}
    lake.deliver("cur2_csv", "exec-2", shrunk, FAULT_TIME)
    folder = lake.work / f"one-source-{via}"
    folder.mkdir()
    source = [{"name": "cur2_csv", "provider": "aws_cur2", "url": str(lake.root("cur2_csv"))}]
    common = {"lake_url": lake.config.lake_url, "invoices_url": lake.config.invoices_url, "start_date": f"{MONTH}-01"}
    config_path = write_config(folder, source, **common)

    checks = run_billing_daily(config_path, day, instance)
    guard = checks["publish_guard"]
    assert not guard.passed and guard.severity == AssetCheckSeverity.ERROR
    assert "'cur2_csv'" in (guard.description or "") and "exec-2" in (guard.description or "")
    assert lake.totals("cur2_csv", day) == lake.expected[("cur2_csv", day)]  # the published slice is kept

    if via == "run-tag":
        checks = run_billing_daily(
            config_path, day, instance, tags={"billing/accept": f"cur2_csv:{MONTH}", "billing/accepted_by": "alice"}
        )
        who, how = "alice", "run tag billing/accept"
    else:  # a config file of its own: a process caches the configuration it loaded from a path
        accepted = lake.work / f"one-source-{via}-accepted"
        accepted.mkdir()
        config_path = write_config(
            accepted,
            source,
            **common,
            publish_guard={
                "accept": [{"source": "cur2_csv", "period": MONTH, "by": "bob", "reason": "services moved away"}]
            },
        )
        checks = run_billing_daily(config_path, day, instance)
        who, how = "bob", "billing.yaml publish_guard.accept"
    assert checks["publish_guard"].passed
    assert lake.totals("cur2_csv", day) == cur2_csv_totals(shrunk)[("cur2_csv", day)]
    state = lake.state("cur2_csv", day)
    assert "held_back" not in state
    (acceptance,) = state["acceptances"]
    assert acceptance["by"] == who and how in acceptance["via"] and acceptance["at"], acceptance
    assert acceptance["rows"] == 3 and acceptance["published_rows_before"] == 9, acceptance

    (audited,) = _accept_audit(lake, who).to_dicts()  # the acceptance taking effect is an operator action
    assert (audited["who"], audited["table"], audited["dry_run"]) == (who, "raw_line_items", False), audited
    assert audited["partition"] == f"date={day.isoformat()}/source=cur2_csv", audited
    assert how in audited["detail"] and "9 -> 3 rows" in audited["detail"], audited

    # accepted once: a later run without the acceptance keeps the accepted version, and holds nothing back
    checks = run_billing_daily(folder / "billing.yaml", day, instance)
    assert checks["publish_guard"].passed
    assert lake.totals("cur2_csv", day) == cur2_csv_totals(shrunk)[("cur2_csv", day)]
    assert _accept_audit(lake, who).height == 1  # audited once, when it took effect


def _accept_audit(lake: Lake, who: str) -> pl.DataFrame:
    """The audit log's `accept_held_back` records of one operator (read with the audit log's own reader)."""
    with scratch_dir() as workdir:
        audit = read_audit_log(Store(), lake.config.lake_url, workdir)
    return audit.filter((pl.col("action") == "accept_held_back") & (pl.col("who") == who))


# ---- (i) the raw slices are not where the guard looks ----------------------------------------------------------


def _shrunk_cur2_csv(lake: Lake, day: dt.date) -> dict[str, bytes]:
    """The cur2_csv delivery with the day's rows cut to its EC2 ones (October 2: 9 rows -> 3)."""
    records = [r for data in lake.current("cur2_csv").values() for r in csv_records(data)]
    kept = [
        r
        for r in records
        if not r["line_item_usage_start_date"].startswith(day.isoformat()) or r["line_item_product_code"] == "AmazonEC2"
    ]
    return {"part-0.csv.gz": csv_gz_bytes(kept, list(records[0]))}


@pytest.mark.parametrize("how", ["raw_lake_url moved to an empty place", "raw slice file lost"])
def test_a_shrunk_version_is_held_back_when_the_raw_slice_is_not_there(lake: Lake, how: str) -> None:
    """Invariant 5 holds on what the lake's state says was published, not only on the raw slice file: with
    the raw slices elsewhere (a new `raw_lake_url`) or one lost, a shorter re-delivery of a day the lake
    holds waits for an operator, and the normalized and enriched slices keep the good cost."""
    day = DAYS[1]
    if how.startswith("raw_lake_url"):
        lake.config = _write_main_config(lake.work, raw_lake_url=str(lake.work / "empty-raw-lake"))
    else:
        lake.path("raw_line_items", day, "cur2_csv").unlink()
    lake.deliver("cur2_csv", "exec-2", _shrunk_cur2_csv(lake, day), FAULT_TIME)
    lake.run()

    lake.assert_totals()  # nothing of the good cost was replaced by less
    assert_held_back(lake, "cur2_csv", ["exec-2", "3 rows", "9"], "shrink", PublishHeldBackError, days=(day,))

    lake.deliver("cur2_csv", "repaired-3", lake.current("cur2_csv"), REPAIR_TIME)
    lake.run()
    assert_restored(lake)
