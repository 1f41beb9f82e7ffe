"""A month of Azure Cost Management exports: partitioned ActualCost runs with EA headers.

Each run of the month-to-date export writes `azure/cost-exports/actual-daily/<YYYYMMDD-YYYYMMDD>/
<runId>/part_0_000N.csv.gz` and a `manifest.json` (`runInfo.runId`, `blobs[]` with `byteCount` and
`dataRowCount`, total `dataRowCount`), as Cost Management does in create-new mode. The three runs
follow `plan_deliveries`: month to date, then restatements of the previous run's last two days
(new costs for the same rows), then the final run, submitted on the 2nd of the next month (the
early-month re-export of the previous month). EA headers (`Cost`, `BillingCurrency`, `MM/DD/YYYY`
dates, Tags without braces) as in Microsoft's samples.

Rows: usage of virtual machines, storage, databases, networking across three subscriptions; a
reservation bought on day 1 (a Purchase row) whose covered usage is priced 0 in the actual view;
two *legitimately identical* usage rows every day (same meter, resource, quantity and cost: Azure
has no row id), which must be kept; and in the final run the last blob is delivered twice (listed
twice under two names), whose rows must be counted as duplicates and dropped.

Ground truth (exact, 1e-8 units): BilledCost = Cost; EffectiveCost = Cost except the reservation
purchase (0, amortized onto usage per FOCUS; the actual view has no amortized amounts); `rows`
includes the legitimate repeats; `duplicate_rows` the repeated blob's rows.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from billing_pipeline.adapters.azure import manifest_document
from billing_pipeline.tools.generator._util import (
    Month,
    Piece,
    constant_strings,
    decimal_str,
    rng_for,
    stable_int,
    stable_uuid,
    take_strings,
)
from billing_pipeline.tools.generator.landing import _export_time, _Plan, _set_mtime, _SourceWriter, _Totals
from billing_pipeline.tools.generator.writers import write_csv_gz

ENROLLMENT = "87654321"
ENROLLMENT_NAME = "Acme Corp EA"
CURRENCY = "EUR"
EXPORT = "actual-daily"
CONTAINER_DIR = "cost-exports"
RESERVATION_ORDER = "5c9e2f4a-1b7d-4e3a-9f6c-0a1b2c3d4e5f"
RESERVATION = (
    f"/providers/Microsoft.Capacity/reservationOrders/{RESERVATION_ORDER}/reservations/"
    "7d1e9a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
)
SUBSCRIPTIONS = [
    ("1c2d3e4f-0000-4000-8000-000000000001", "acme-prod", {"team": "payments", "env": "prod"}),
    ("1c2d3e4f-0000-4000-8000-000000000002", "acme-data", {"CostCenter": "CC-1003", "Team": "data-platform"}),
    ("1c2d3e4f-0000-4000-8000-000000000003", "acme-dev", {"Environment": "dev", "owner": "web"}),
]
# (MeterCategory, MeterSubCategory, MeterName, UnitOfMeasure, unit price (1e-8), ConsumedService, resource type,
#  ServiceFamily, Product)
METERS = [
    (
        "Virtual Machines",
        "Dv5 Series",
        "D4s v5",
        "1 Hour",
        19_200_000,
        "Microsoft.Compute",
        "virtualMachines",
        "Compute",
        "Virtual Machines Dv5 Series - D4s v5 - EU West",
    ),
    (
        "Storage",
        "Premium SSD Managed Disks",
        "P10 LRS Disk",
        "1/Month",
        58_000_000,
        "Microsoft.Compute",
        "disks",
        "Storage",
        "Premium SSD Managed Disks - P10 LRS - EU West",
    ),
    (
        "Storage",
        "Tables",
        "Hot LRS Data Stored",
        "1 GB/Month",
        4_500_000,
        "Microsoft.Storage",
        "storageAccounts",
        "Storage",
        "Blob Storage - Hot LRS - EU West",
    ),
    (
        "SQL Database",
        "General Purpose - Compute Gen5",
        "vCore",
        "1 Hour",
        14_870_000,
        "Microsoft.Sql",
        "servers",
        "Databases",
        "SQL Database Single General Purpose - Compute Gen5 - EU West",
    ),
    (
        "Bandwidth",
        "Rtn Preference: MGN",
        "Standard Data Transfer Out",
        "1 GB",
        8_000_000,
        "Microsoft.Network",
        "publicIPAddresses",
        "Networking",
        "Rtn Preference: MGN - Data Transfer Out - Zone 1",
    ),
    (
        "Log Analytics",
        "Analytics Logs",
        "Data Ingestion",
        "1 GB",
        229_000_000,
        "Microsoft.OperationalInsights",
        "workspaces",
        "Management and Governance",
        "Log Analytics - Analytics Logs - EU West",
    ),
]
HEADER = [
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStartDate",
    "BillingPeriodEndDate",
    "BillingProfileId",
    "BillingProfileName",
    "AccountOwnerId",
    "AccountName",
    "SubscriptionId",
    "SubscriptionName",
    "Date",
    "Product",
    "PartNumber",
    "MeterId",
    "ServiceFamily",
    "MeterCategory",
    "MeterSubCategory",
    "MeterRegion",
    "MeterName",
    "Quantity",
    "EffectivePrice",
    "Cost",
    "UnitPrice",
    "BillingCurrency",
    "ResourceLocation",
    "AvailabilityZone",
    "ConsumedService",
    "ResourceId",
    "ResourceName",
    "ServiceInfo1",
    "ServiceInfo2",
    "AdditionalInfo",
    "Tags",
    "InvoiceSectionId",
    "InvoiceSection",
    "CostCenter",
    "UnitOfMeasure",
    "ResourceGroup",
    "ReservationId",
    "ReservationName",
    "ProductOrderId",
    "ProductOrderName",
    "OfferId",
    "IsAzureCreditEligible",
    "Term",
    "PublisherName",
    "PlanName",
    "ChargeType",
    "Frequency",
    "PublisherType",
    "PayGPrice",
    "PricingModel",
    "CostAllocationRuleName",
    "benefitId",
    "benefitName",
]
REPEATED_ROWS = 2
DUPLICATED_BLOB_ROWS = 5


def _tags(tags: dict[str, str]) -> str:
    """EA's Tags cell: JSON pairs without the braces (as Microsoft's EA exports write them)."""
    return ",".join(f'"{k}": "{v}"' for k, v in tags.items())


class AzureModel:
    """A usage day's rows, as integer 1e-8 amounts; `rev` restates a day's costs."""

    def __init__(self, month: Month, seed: int, rows_per_day: int) -> None:
        self.month = month
        self.seed = seed
        self.rows_per_day = max(4, rows_per_day)

    def day_frame(self, day: int, rev: int) -> pl.DataFrame:
        rng = rng_for(self.seed, stable_int("azure"), day)
        n = self.rows_per_day - REPEATED_ROWS
        meter = rng.integers(0, len(METERS), n)
        sub = rng.integers(0, len(SUBSCRIPTIONS), n)
        quantity_milli = rng.integers(100, 6_000, n)  # 0.1 .. 6 units, 3 decimals
        factor = 1.0 + 0.05 * rev
        price = (np.array([m[4] for m in METERS])[meter] * factor).astype(np.int64)
        cost = (quantity_milli * price) // 1000
        covered = (meter == 0) & (rng.random(n) < 0.3)  # reservation-covered VM hours: priced 0
        cost = np.where(covered, 0, cost)
        resource_no = rng.integers(0, 6, n)
        frame = self._usage_rows(self.month.day(day), meter, sub, resource_no, quantity_milli, price, cost, covered)
        if day == 1:
            purchase = pl.DataFrame([self._purchase(self.month.day(day))], schema=frame.schema, orient="row")
            frame = pl.concat([frame, purchase])
        repeat = frame.filter(pl.col("ChargeType") == "Usage").head(1)
        return pl.concat([frame, *([repeat] * REPEATED_ROWS)])

    def _usage_rows(
        self,
        when: date,
        meter: np.ndarray,
        sub: np.ndarray,
        resource_no: np.ndarray,
        quantity_milli: np.ndarray,
        price: np.ndarray,
        cost: np.ndarray,
        covered: np.ndarray,
    ) -> pl.DataFrame:
        """The usage rows, column by column: meter and subscription fields gathered from their tables,
        amounts formatted as exact decimals by polars (no per-row Python, so 10M rows take seconds)."""
        month = self.month
        n = len(meter)

        def by_meter(values: list[str]) -> pl.Series:
            return take_strings(values, meter)

        def by_sub(values: list[str]) -> pl.Series:
            return take_strings(values, sub)

        covered_rows = pl.Series(covered, dtype=pl.Boolean)

        def if_covered(value: str, otherwise: str = "") -> pl.Series:
            return pl.select(pl.when(covered_rows).then(pl.lit(value)).otherwise(pl.lit(otherwise))).to_series()

        numbers = pl.DataFrame(
            {
                "q": pl.Series(quantity_milli, dtype=pl.Int64),
                "price": pl.Series(price, dtype=pl.Int64),
                "cost": pl.Series(cost, dtype=pl.Int64),
                "covered": pl.Series(covered, dtype=pl.Boolean),
            }
        ).select(
            pl.concat_str(
                (pl.col("q") // 1000).cast(pl.String), pl.lit("."), (pl.col("q") % 1000).cast(pl.String).str.zfill(3)
            ).alias("quantity"),
            decimal_str(pl.col("price"), 8).alias("price"),
            pl.when(pl.col("covered")).then(pl.lit("0")).otherwise(decimal_str(pl.col("price"), 8)).alias("effective"),
            decimal_str(pl.col("cost"), 8).alias("cost"),
        )
        group = by_sub([f"rg-{s[1]}" for s in SUBSCRIPTIONS])
        name = by_meter([f"{m[6][:-1].lower()}-" for m in METERS]) + pl.Series(resource_no).cast(pl.String)
        resource = (
            by_sub([f"/subscriptions/{s[0]}/resourceGroups/rg-{s[1]}/providers/" for s in SUBSCRIPTIONS])
            + by_meter([f"{m[5]}/{m[6]}/" for m in METERS])
            + name
        )
        values: list[str | pl.Series] = [
            ENROLLMENT,
            ENROLLMENT_NAME,
            f"{month.start:%m/%d/%Y}",
            f"{month.end - timedelta(days=1):%m/%d/%Y}",
            ENROLLMENT,
            ENROLLMENT_NAME,
            "finops@acme.example",
            "Acme Cloud",
            by_sub([s[0] for s in SUBSCRIPTIONS]),
            by_sub([s[1] for s in SUBSCRIPTIONS]),
            f"{when:%m/%d/%Y}",
            by_meter([m[8] for m in METERS]),
            by_meter([f"AAA-{stable_int(m[2]) % 100000:05d}" for m in METERS]),
            by_meter([stable_uuid("meter", m[2]) for m in METERS]),
            by_meter([m[7] for m in METERS]),
            by_meter([m[0] for m in METERS]),
            by_meter([m[1] for m in METERS]),
            "EU West",
            by_meter([m[2] for m in METERS]),
            numbers["quantity"],
            numbers["effective"],
            numbers["cost"],
            numbers["price"],
            CURRENCY,
            "westeurope",
            "",
            by_meter([m[5] for m in METERS]),
            resource,
            name,
            "",
            "",
            "",
            by_sub([_tags(s[2]) for s in SUBSCRIPTIONS]),
            "",
            "",
            "",
            by_meter([m[3] for m in METERS]),
            group,
            if_covered(RESERVATION.rsplit("/", 1)[-1]),
            if_covered("acme-vm-ri"),
            if_covered(RESERVATION_ORDER),
            if_covered("Reserved VM Instance, D4s v5"),
            "MS-AZR-0017P",
            "True",
            "",
            "Microsoft",
            "",
            "Usage",
            "UsageBased",
            "Azure",
            numbers["price"],
            if_covered("Reservation", "OnDemand"),
            "",
            if_covered(RESERVATION),
            if_covered("acme-vm-ri"),
        ]
        columns = {
            header: (value if isinstance(value, pl.Series) else constant_strings(value, n)).alias(header)
            for header, value in zip(HEADER, values, strict=True)
        }
        return pl.DataFrame({**columns, "_cost": pl.Series(cost, dtype=pl.Int64)})

    def _purchase(self, when) -> list[object]:  # noqa: ANN001
        month = self.month
        cost = 250_000_000_000  # 2,500.00
        return [
            ENROLLMENT,
            ENROLLMENT_NAME,
            f"{month.start:%m/%d/%Y}",
            f"{month.end - timedelta(days=1):%m/%d/%Y}",
            ENROLLMENT,
            ENROLLMENT_NAME,
            "finops@acme.example",
            "Acme Cloud",
            SUBSCRIPTIONS[0][0],
            SUBSCRIPTIONS[0][1],
            f"{when:%m/%d/%Y}",
            "Virtual Machines Dv5 Series - D4s v5 - EU West",
            "AAA-00001",
            stable_uuid("meter", "reservation"),
            "Compute",
            "Virtual Machines",
            "Dv5 Series",
            "EU West",
            "D4s v5",
            "1",
            _dec(cost),
            _dec(cost),
            _dec(cost),
            CURRENCY,
            "westeurope",
            "",
            "Microsoft.Capacity",
            RESERVATION,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "1 Hour",
            "",
            RESERVATION.rsplit("/", 1)[-1],
            "acme-vm-ri",
            RESERVATION_ORDER,
            "Reserved VM Instance, D4s v5",
            "MS-AZR-0017P",
            "True",
            "12",
            "Microsoft",
            "",
            "Purchase",
            "OneTime",
            "Azure",
            "0",
            "Reservation",
            "",
            RESERVATION,
            "acme-vm-ri",
            cost,
        ]


def _dec(units: int) -> str:
    return pl.select(decimal_str(pl.lit(int(units), dtype=pl.Int64), 8)).item()


class AzureWriter(_SourceWriter):
    """Partitioned ActualCost runs with manifest.json, create-new mode."""

    source = "azure"

    def __init__(self, out: Path, month: Month, seed: int, rows_per_file: int, rows_per_day: int) -> None:
        super().__init__(out, month, seed, rows_per_file)
        self.model = AzureModel(month, seed, rows_per_day)
        self.root = out / self.source / CONTAINER_DIR / EXPORT
        self.range_name = f"{month.start:%Y%m%d}-{month.end - timedelta(days=1):%Y%m%d}"

    def invoice_ids(self) -> dict[str, str]:
        return {ENROLLMENT: f"E{self.month.year}{self.month.month:02d}{stable_int(ENROLLMENT) % 100000:05d}"}

    def invoice_rows(self) -> list[dict[str, object]]:
        from billing_pipeline.tools.generator.landing import _money

        total = sum(v[0] for v in self.final_totals.data.values())
        return [
            {
                "invoice_id": self.invoice_ids()[ENROLLMENT],
                "billing_account_id": ENROLLMENT,
                "billing_period": self.month.label,
                "currency": CURRENCY,
                "amount": _money(total),
                "issuer": "Microsoft",
            }
        ]

    def day_pieces(self, day: int, rev: int, final: bool) -> Iterator[Piece]:
        frame = self.model.day_frame(day, rev)
        billed = int(frame["_cost"].sum())
        effective = billed - int(frame.filter(pl.col("ChargeType") == "Purchase")["_cost"].sum())
        key = (ENROLLMENT, CURRENCY)
        yield Piece(day, frame.drop("_cost"), {key: billed}, {key: effective}, {key: frame.height}, {})

    def deliver(self, plan: _Plan) -> None:
        run_id = stable_uuid(self.seed, self.source, self.month.label, plan.number)
        folder = self.root / self.range_name / run_id
        folder.mkdir(parents=True, exist_ok=True)
        totals = _Totals()
        frames: list[pl.DataFrame] = []
        for day in plan.days:
            for piece in self.day_pieces(day, plan.revisions[day], plan.final):
                totals.add(piece)
                frames.append(piece.frame)
        data = pl.concat(frames)
        # the final run ends with a small partition, which is then delivered a second time
        tail = DUPLICATED_BLOB_ROWS if plan.final and data.height > DUPLICATED_BLOB_ROWS else 0
        chunks = [
            data.slice(start, min(self.rows_per_file, data.height - tail - start))
            for start in range(0, data.height - tail, self.rows_per_file)
        ]
        chunks += [data.tail(tail)] if tail else []
        files: list[Path] = []
        for index, chunk in enumerate(chunks, start=1):
            path = folder / f"part_0_{index:04d}.csv.gz"
            write_csv_gz(chunk, path)
            files.append(path)
        if tail:
            copy = folder / f"part_0_{len(files) + 1:04d}.csv.gz"
            copy.write_bytes(files[-1].read_bytes())
            counts = chunks[-1].select(pl.col("Date").str.slice(3, 2).cast(pl.Int64).alias("day")).group_by("day").len()
            totals.add_duplicates({(day, ENROLLMENT, CURRENCY): n for day, n in counts.iter_rows()})
            files.append(copy)
        when = _export_time(self.month, plan, "aws_cur2") + timedelta(minutes=47)
        blobs = []
        for path in files:
            rows = pl.read_csv(io.BytesIO(gzip.decompress(path.read_bytes())), infer_schema=False).height
            blobs.append(
                {
                    "blobName": f"{CONTAINER_DIR}/{EXPORT}/{self.range_name}/{run_id}/{path.name}",
                    "byteCount": path.stat().st_size,
                    "dataRowCount": rows,
                }
            )
        manifest = manifest_document(
            run_id,
            blobs,
            "ActualCost",
            when,
            self.month.start.date(),
            (self.month.end - timedelta(days=1)).date(),
            EXPORT,
        )
        manifest_path = folder / "manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        _set_mtime(files, when - timedelta(seconds=40))
        _set_mtime([manifest_path], when)
        self.paths += files + [manifest_path]
        self._record(plan, run_id, when, manifest_path, files, totals)
