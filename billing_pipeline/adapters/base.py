"""What every provider adapter shares: deliveries, file problems, and reading one export file.

An adapter is two pure steps: `discover` (which deliveries of a billing period exist, and which
files each one lists) and `to_focus` (raw rows as delivered -> FOCUS columns). Everything with side
effects (staging, writing, quarantining) lives in `billing_pipeline.spine.ingest`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Protocol

import polars as pl

from billing_pipeline.platform.storage import FileInfo, Store, join

NULL_LITERALS = ("", "None", "NULL", "null", "NaN", "nan")
# No amount at all in a money cell. Not `NaN`: a delivered NaN is not a number, and is quarantined.
MONEY_NULLS = ("", "None", "NULL", "null")
# |amount| at or above this, in the billing currency, is a corrupt cell, not a charge (quarantined);
# it also keeps the arithmetic between a row's amounts inside what Decimal(38, 18) holds (20 digits).
MONEY_LIMIT = 10**15
# Timestamp spellings of every provider, as (format, has a zone, shape). `%+` is RFC 3339 / ISO 8601
# with a zone: `T`, `t` or space between date and time, 0-9 decimals, `Z`, `z`, ` UTC`, `+hh:mm`,
# `+hhmm` (any offset, converted to UTC); it reads nearly every cell of real exports. A space around
# the other formats accepts surrounding whitespace. Each format other than `%+` is tried only on the
# cells of its shape (`_datetime_shape`: byte tests, far cheaper than a parse), so a day written in
# one spelling is parsed about once per cell, not once per format. Cells without a zone are UTC.
DATETIME_FORMATS: tuple[tuple[str, bool, str], ...] = (
    ("%+", True, "any"),
    (" %Y-%m-%dT%H:%M:%S%.f ", False, "unzoned"),
    (" %Y-%m-%d %H:%M:%S%.f ", False, "unzoned"),
    (" %Y-%m-%dT%H:%M%#z ", True, "minutes"),  # 2026-10-01T00:00Z, ...T00:00+05:30
    (" %Y-%m-%dT%H:%M ", False, "minutes"),
    (" %Y-%m-%d ", False, "date"),
    (" %Y%m%dT%H%M%S%.f%#z ", True, "compact"),  # AWS manifests: 20261001T000000.000Z
    (" %m/%d/%Y ", False, "slashed"),  # Azure EA: 09/21/2023, 9/2/2023
    (" %m/%d/%Y %H:%M:%S ", False, "slashed"),
    (" %m/%d/%Y %I:%M:%S %p ", False, "slashed"),
    (" %d.%m.%Y ", False, "dotted"),  # localized Azure: 21.09.2023
)


class EmptyExportFileError(ValueError):
    """A delivered file with no bytes at all (an interrupted upload, or an empty export)."""


@dataclass(frozen=True)
class FileProblem:
    """A file of a delivery that cannot be used, and why (named in errors and in quarantine)."""

    file_uri: str
    reason: str
    kind: str  # missing | outside_prefix | unreadable | empty | bad_manifest

    def describe(self, source: str) -> str:
        return f"source {source!r}: file {self.file_uri}: {self.reason}"


@dataclass(frozen=True)
class Delivery:
    """One delivered version of a billing period: the files to read together, and its problems."""

    source: str
    billing_period: str  # YYYY-MM
    version: str
    delivered_at: dt.datetime
    files: tuple[str, ...]
    manifest_uri: str | None = None
    problems: tuple[FileProblem, ...] = ()
    file_format: str = "auto"
    fingerprint: str = ""
    # The provider's own pointer names this delivery as the period's current one (legacy CUR: the
    # period-level manifest's `assemblyId`). It then outranks every delivery time (`choose_current`).
    named_current: bool = False

    @property
    def incomplete(self) -> bool:
        """A delivery with a missing file or unreadable manifest must never be published."""
        return any(p.kind in ("missing", "bad_manifest") for p in self.problems)

    @property
    def empty(self) -> bool:
        return not self.files and not self.incomplete


@dataclass
class DeliveryChoice:
    """The current version of a billing period, and what was passed over on the way.

    `ambiguous` holds the candidates of a tie (`choose_current`): then `current` is None, the choice
    is held back, and each candidate is also in `passed_over` with an `ambiguous` problem naming
    the others, so callers that report passed-over problems report the tie too.
    """

    current: Delivery | None
    passed_over: list[Delivery] = field(default_factory=list)
    ambiguous: list[Delivery] = field(default_factory=list)

    @property
    def held_back(self) -> bool:
        """True when deliveries exist but none can be published: none is complete, or two tie."""
        return self.current is None and (bool(self.ambiguous) or any(d.incomplete for d in self.passed_over))

    @property
    def problem(self) -> str | None:
        """Why nothing is current although deliveries exist (None when a delivery is current)."""
        if self.current is not None:
            return None
        if self.ambiguous:
            return describe_tie(self.ambiguous)
        reasons = [p.reason for d in self.passed_over for p in d.problems if d.incomplete]
        return "; ".join(reasons) or None


def _same_content(a: Delivery, b: Delivery) -> bool:
    return a.files == b.files and a.fingerprint == b.fingerprint


def describe_tie(candidates: list[Delivery]) -> str:
    """`delivery 'a' ties as current with 'b' (manifest ...), ...`: the first candidate against the others."""
    first, others = candidates[0], candidates[1:]
    named = ", ".join(f"{d.version!r} (manifest {d.manifest_uri or 'none'})" for d in others)
    return (
        f"delivery {first.version!r} of billing period {first.billing_period} ties as current with {named}: "
        f"delivered at the same time ({first.delivered_at.isoformat()}) with other files, and no manifest "
        "says which one is current; held back until one does"
    )


def choose_current(deliveries: list[Delivery]) -> DeliveryChoice:
    """The delivery the provider names current, else the latest; incomplete or empty ones are passed over.

    Order: deliveries the provider names current (`named_current`) first, then by `delivered_at`,
    newest first (the export/run time the manifest states; the object's modification time only
    where the provider writes none). The first complete, non-empty delivery is current, and the
    incomplete or empty ones before it are passed over. A tie is never broken by a guess: when
    another complete delivery has the same rank and time but other files, nothing is current and
    the candidates are `ambiguous` (`held_back`); the version only orders identical content.
    """
    ordered = sorted(deliveries, key=lambda d: (d.named_current, d.delivered_at, d.version), reverse=True)
    passed: list[Delivery] = []
    for index, delivery in enumerate(ordered):
        if delivery.incomplete or delivery.empty:
            passed.append(delivery)
            continue
        tied = [delivery]
        for other in ordered[index + 1 :]:
            if (other.named_current, other.delivered_at) != (delivery.named_current, delivery.delivered_at):
                break
            if not (other.incomplete or other.empty) and not any(_same_content(other, t) for t in tied):
                tied.append(other)
        if len(tied) == 1:
            return DeliveryChoice(current=delivery, passed_over=passed)
        marked = [
            replace(
                d,
                problems=(
                    *d.problems,
                    FileProblem(
                        d.manifest_uri or d.version, describe_tie([d, *(t for t in tied if t is not d)]), "ambiguous"
                    ),
                ),
            )
            for d in tied
        ]
        return DeliveryChoice(current=None, passed_over=passed + marked, ambiguous=tied)
    return DeliveryChoice(current=None, passed_over=passed)


class Adapter(Protocol):
    """One export format. `discover` lists deliveries; `read`/`usage_start`/`to_focus` are pure."""

    provider: str

    def discover(
        self, store: Store, source: str, root: str, billing_period: str, file_format: str
    ) -> list[Delivery]: ...

    def read(self, local_file: Path, file_format: str) -> pl.LazyFrame: ...

    def usage_start(self, schema: pl.Schema) -> pl.Expr: ...

    def to_focus(self, raw: pl.LazyFrame) -> pl.LazyFrame: ...

    def dedup_key(self, schema: pl.Schema) -> list[str]: ...

    def raw_totals(self, raw: pl.LazyFrame) -> pl.LazyFrame: ...


def listing_fingerprint(files: list[FileInfo]) -> str:
    """A delivery's fingerprint from its file listing (cheap; the content fingerprints are per day)."""
    return "|".join(f.identity for f in files)


def files_delivery(
    source: str, billing_period: str, files: list[FileInfo], file_format: str, mode: str
) -> list[Delivery]:
    """A manifest-less delivery (overwrite mode, appends, plain folders): every listed file, versioned
    by a hash of the listing; `mode` names the kind of version (`overwrite`, `append`, `files`)."""
    if not files:
        return []
    fingerprint = listing_fingerprint(files)
    return [
        Delivery(
            source=source,
            billing_period=billing_period,
            version=f"{mode}-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
            delivered_at=max(modified_at(f.modified) for f in files),
            files=tuple(f.url for f in files),
            file_format=file_format,
            fingerprint=fingerprint,
        )
    ]


def detect_format(uri: str, configured: str = "auto") -> str:
    if configured != "auto":
        return configured
    name = uri.lower()
    if name.endswith((".parquet", ".snappy.parquet", ".gz.parquet")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.zip", ".gz")):
        return "csv"
    raise ValueError(f"cannot tell the format of {uri} from its name (set `format` on the source)")


def read_export_file(local_file: Path, file_format: str) -> pl.LazyFrame:
    """Scan one delivered file as it is: CSV with every column as text, Parquet with its own types.

    CSV is read as text on purpose: real exports carry empty strings and literals like `None` in
    numeric columns, and a value must never change on the way into `raw_line_items`.
    """
    if local_file.stat().st_size == 0:
        raise EmptyExportFileError("the file is empty (0 bytes)")
    if detect_format(local_file.name, file_format) == "parquet":
        pl.read_parquet_schema(local_file)  # fails fast on a truncated file (no footer)
        return pl.scan_parquet(local_file)
    return pl.scan_csv(local_file, infer_schema=False, encoding="utf8-lossy")


def text(name: str) -> pl.Expr:
    """A text column with the placeholder literals of real exports turned into nulls."""
    value = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(value.is_in(NULL_LITERALS)).then(None).otherwise(value)


def parse_datetime(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """UTC datetime from a text or temporal column; unparseable text becomes null (and is quarantined)."""
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return expr.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        return expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    value = expr.cast(pl.String)
    zoned: list[pl.Expr] = []
    unzoned: list[pl.Expr] = []
    for fmt, has_zone, shape in DATETIME_FORMATS:
        cells = _datetime_shape(value, shape)
        parsed = cells.str.to_datetime(fmt, strict=False, time_unit="us")
        (zoned if has_zone else unzoned).append(parsed)
    # `%+` takes no surrounding whitespace: padded cells are stripped first (only those: stripping
    # every cell would cost more than the parse)
    padded = pl.when(value.str.starts_with(" ") | value.str.ends_with(" ")).then(value).str.strip_chars()
    zoned.append(padded.str.to_datetime("%+", strict=False, time_unit="us"))
    return pl.coalesce([*zoned, pl.coalesce(unzoned).dt.replace_time_zone("UTC")])


def _datetime_shape(value: pl.Expr, shape: str) -> pl.Expr:
    """The cells of `value` a format of this shape might read, others null (a superset, by byte tests)."""
    colons = value.str.count_matches(":", literal=True)
    zulu = value.str.ends_with("Z")
    has_colon = value.str.contains(":", literal=True)
    might = {
        "any": None,
        "unzoned": ~zulu,  # an offset is only told apart by the parse
        "minutes": (colons == 1) | ((colons == 2) & ~zulu),  # hh:mm, plus an offset's colon
        "date": ~has_colon,
        "compact": value.str.slice(4, 1) != "-",
        "slashed": value.str.contains("/", literal=True),
        "dotted": value.str.contains(".", literal=True) & ~has_colon,
    }[shape]
    return value if might is None else pl.when(might).then(value)


def parse_money(expr: pl.Expr, dtype: pl.DataType, limit: int | None = None) -> pl.Expr:
    """Decimal from text or float, converted once; placeholders become null.

    A float goes through its shortest round-trip text (`0.1`, not 0.1000000000000000055...), which
    is the number the provider meant; casting the binary value directly would invent digits. Text
    or floats that are not a finite number MONEY can hold (`NaN`, `inf`, `1e30`) become null, never
    an error. With `limit` (money columns: `MONEY_LIMIT`), so does |x| >= limit, so that no arithmetic
    between a row's amounts can overflow; `money_problem` says why, and the row is quarantined.
    """
    from billing_pipeline.platform.focus import MONEY

    if dtype == pl.String:
        value = expr.str.strip_chars()
        value = pl.when(value.is_in(MONEY_NULLS)).then(None).otherwise(value)
        value = value.cast(MONEY, strict=False)
    elif dtype.is_float():
        value = expr.cast(pl.String).cast(MONEY, strict=False)
    else:
        value = expr.cast(MONEY, strict=False)
    return value if limit is None else pl.when(value.abs() < limit).then(value)


def money_problem(expr: pl.Expr, dtype: pl.DataType, column: str, limit: int | None = MONEY_LIMIT) -> pl.Expr:
    """Why a numeric cell cannot be used, as quarantine reason text naming `column` and the value;
    null where it can (a number, or no value at all: null or a placeholder like `""`, `NULL`).

    - text that is not a number: `unparseable number 12,5O in <column>`;
    - not a finite number MONEY can hold (NaN, +-inf as floats or as text, `1e30`), or |x| >= `limit`
      (money columns: `MONEY_LIMIT`; `limit=None` for quantities): `non-finite or out-of-range money
      inf in <column>`. A delivered `NaN` is not a placeholder: it is quarantined, not made null.
    """
    from billing_pipeline.platform.focus import MONEY

    if dtype == pl.String:
        shown = expr.str.strip_chars()
        present = shown.is_not_null() & ~shown.is_in(MONEY_NULLS)
        number = shown.cast(pl.Float64, strict=False)
        amount = shown.cast(MONEY, strict=False)
    elif dtype.is_float():
        shown, present, number = expr.cast(pl.String), expr.is_not_null(), expr
        amount = shown.cast(MONEY, strict=False)
    elif dtype.is_numeric():  # integers, decimals: a value MONEY cannot hold becomes null, never an error
        shown, present, number = expr.cast(pl.String), expr.is_not_null(), expr
        amount = expr.cast(MONEY, strict=False)
    else:
        return pl.lit(None, dtype=pl.String)
    unparseable = present & number.is_null() & amount.is_null()
    unusable = amount.is_null()
    if limit is not None:
        unusable = unusable | (amount >= limit) | (amount <= -limit)
    return (
        pl.when(unparseable)
        .then(pl.format("unparseable number {} in {}", shown, pl.lit(column)))
        .when(present & unusable)
        .then(pl.format("non-finite or out-of-range money {} in {}", shown, pl.lit(column)))
    )


def money_is_missing(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """True where a money cell holds no value at all: null, or a placeholder (`""`, `None`, `NULL`)."""
    if dtype == pl.String:
        value = expr.str.strip_chars()
        return value.is_null() | value.is_in(MONEY_NULLS)
    return expr.is_null()


def column_or_null(schema: pl.Schema, name: str, dtype: pl.DataType = pl.String) -> pl.Expr:
    return pl.col(name) if name in schema else pl.lit(None, dtype=dtype)


def relative_to_anchor(uri: str, anchor_pattern: str) -> str | None:
    """The part of `uri` from the first match of `anchor_pattern` on (None if it never matches).

    Manifests name files by the bucket AWS wrote to; replicated or mirrored exports must be resolved
    against the configured root instead, by their path below a known anchor.
    """
    match = re.search(anchor_pattern, uri)
    return uri[match.start() :] if match else None


def is_inside(relative: str, prefix: str) -> bool:
    """True when `relative` stays inside `prefix` (no `..` escapes, no absolute paths)."""
    parts = PurePosixPath(relative).parts
    if ".." in parts or relative.startswith("/"):
        return False
    return relative.startswith(prefix.rstrip("/") + "/")


def load_manifest(store: Store, url: str) -> tuple[dict | None, FileProblem | None]:
    try:
        document = json.loads(store.read_bytes(url))
    except Exception as error:  # noqa: BLE001 - any unreadable manifest is reported, not raised
        return None, FileProblem(url, f"manifest is not readable JSON ({error})", "bad_manifest")
    if not isinstance(document, dict):
        return None, FileProblem(url, "manifest is not a JSON object", "bad_manifest")
    return document, None


def parse_timestamp(value: str | None, fallback: dt.datetime) -> dt.datetime:
    """A manifest or listing time as an aware UTC datetime, in any spelling `parse_datetime` reads
    (no zone: UTC); `fallback` when there is none or it cannot be read."""
    if not value or not value.strip():
        return fallback
    try:
        parsed = dt.datetime.fromisoformat(value.strip())  # the usual ISO spellings, without polars
    except ValueError:
        parsed = pl.select(parse_datetime(pl.lit(value, dtype=pl.String), pl.String)).item()
        if parsed is None:
            return fallback
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def modified_at(modified: str) -> dt.datetime:
    """A listing's modification time (ISO string or epoch seconds) as an aware UTC datetime."""
    try:
        return dt.datetime.fromtimestamp(float(modified), tz=dt.UTC)
    except ValueError:
        return parse_timestamp(modified, dt.datetime(1970, 1, 1, tzinfo=dt.UTC))


def check_listed_file(
    name: str,
    anchor: str,
    folder: str,
    root: str,
    present: dict[str, FileInfo],
    accepted: list[str],
    manifest_url: str,
    outside_reason: str,
) -> str | FileProblem:
    """A file a manifest lists, resolved below `root`: its URL, or why it is not read.

    Outside the manifest's `folder` (`outside_prefix`), absent from the listing `present` (`missing`)
    or already in `accepted` (`listed_twice`): what every manifest-driven delivery must refuse.
    """
    relative = relative_to_anchor(name, anchor)
    if relative is None or not is_inside(relative, folder):
        return FileProblem(name, outside_reason, "outside_prefix")
    local = join(root, relative)
    if local not in present:
        return FileProblem(local, f"listed in manifest {manifest_url} but not delivered", "missing")
    if local in accepted:
        return FileProblem(local, f"listed twice in manifest {manifest_url}; read once", "listed_twice")
    return local


def discover_data_exports(
    store: Store, source: str, root: str, billing_period: str, file_format: str
) -> list[Delivery]:
    """Deliveries of an AWS Data Exports layout (CUR 2.0, FOCUS): one per manifest.

    `<root>/metadata/BILLING_PERIOD=YYYY-MM/[<executionId>/]<export>-Manifest.json` lists `dataFiles`
    as full URIs; each is resolved below `<root>/data/BILLING_PERIOD=YYYY-MM/` and refused if it
    points anywhere else. A delivery is dated by the manifest's `exportTime` (when the refresh ran),
    the manifest object's LastModified only when it states none: a copied or replicated export
    keeps its export times, not its object times.
    """
    period_dir = f"BILLING_PERIOD={billing_period}"
    metadata = join(root, "metadata", period_dir)
    manifests = [f for f in store.find(metadata) if f.url.endswith("Manifest.json")]
    present = {f.url: f for f in store.find(join(root, "data", period_dir))}
    deliveries: list[Delivery] = []
    for manifest in manifests:
        document, problem = load_manifest(store, manifest.url)
        fallback_time = modified_at(manifest.modified)
        if document is None:
            deliveries.append(
                Delivery(source, billing_period, manifest.url, fallback_time, (), manifest.url, (problem,))
            )
            continue
        version = str(document.get("executionId") or manifest.url)
        problems: list[FileProblem] = []
        files: list[str] = []
        for uri in document.get("dataFiles") or []:
            listed = check_listed_file(
                str(uri),
                r"data/BILLING_PERIOD=",
                f"data/{period_dir}",
                root,
                present,
                files,
                manifest.url,
                f"manifest {manifest.url} lists a file outside its export's data/{period_dir}/ prefix",
            )
            if isinstance(listed, FileProblem):
                problems.append(listed)
                continue
            files.append(listed)
        fingerprint = listing_fingerprint([present[u] for u in files])
        deliveries.append(
            Delivery(
                source=source,
                billing_period=billing_period,
                version=version,
                delivered_at=parse_timestamp(document.get("exportTime"), fallback_time),
                files=tuple(files),
                manifest_uri=manifest.url,
                problems=tuple(problems),
                file_format=file_format,
                fingerprint=fingerprint,
            )
        )
    return deliveries
