"""Schema drift: what each delivery's columns are, how they moved, and which moves stop a source.

Every delivery's schema is recorded once, by the raw step, at
`<lake>/_state/schemas/source=S/<delivered_at>-<version>.json`: the columns of each file (nested fields flattened
as `a.b` and `a[].b`), the keys of its tag maps (CUR 2.0 `resource_tags`, GCP `labels`), and the
changes against the source's previous recorded delivery.

- Additive changes (a new column, a new nested field, a new tag or map key, a column the adapter
  does not need going away) flow through: they are logged as a warning and recorded as a
  quarantine record of kind `schema_change` (reason `additive: ...`).
- Breaking changes (a column the adapter needs is missing, renamed, or retyped to something it
  cannot read, or, in sparse formats like GCP's JSON where a missing key reads as null, holds
  no value at all) stop the source's day: the raw step records a `schema_change` record (reason
  `breaking: ...`) and raises `SchemaDriftError` naming the column and the delivery. Other sources of
  the day are built as usual.

What each adapter needs is declared here (`REQUIREMENTS`), beside the adapters rather than inside
them, so one table says what can break ingestion.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from billing_pipeline.adapters.base import Delivery
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.storage import Store, join

log = logging.getLogger(__name__)

SCHEMAS_DIR = ("_state", "schemas")
MAX_KEYS_REPORTED = 20


@dataclass(frozen=True)
class Requirement:
    """A column the adapter needs: any of `names` (header spellings), of one of the `kinds`."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    case_insensitive: bool = False


def _r(*names: str, kinds: tuple[str, ...], ci: bool = False) -> Requirement:
    return Requirement(names, kinds, ci)


TIME, NUMBER, TEXT, LIST = ("time",), ("number",), ("text",), ("list",)
_AWS = [
    _r("line_item_usage_start_date", "lineItem/UsageStartDate", kinds=TIME),
    _r("line_item_unblended_cost", "lineItem/UnblendedCost", kinds=NUMBER),
    _r("bill_payer_account_id", "bill/PayerAccountId", kinds=TEXT),
    _r("line_item_currency_code", "lineItem/CurrencyCode", kinds=TEXT),
]
_FOCUS = [
    _r("ChargePeriodStart", kinds=TIME),
    _r("BilledCost", kinds=NUMBER),
    _r("BillingAccountId", kinds=TEXT),
    _r("BillingCurrency", kinds=TEXT),
]
REQUIREMENTS: dict[str, list[Requirement]] = {
    "aws_cur2": _AWS,
    "aws_cur": _AWS,
    "focus": _FOCUS,
    "gcp": [
        _r("usage_start_time", kinds=TIME),
        _r("usage_end_time", kinds=TIME),
        _r("export_time", kinds=TIME),
        _r("cost", kinds=NUMBER),
        _r("currency", kinds=TEXT),
        _r("billing_account_id", kinds=TEXT),
        _r("credits", kinds=LIST),
    ],
    "azure": [
        _r("Date", "UsageDateTime", "ChargePeriodStart", kinds=TIME, ci=True),
        _r("CostInBillingCurrency", "Cost", "PreTaxCost", "BilledCost", kinds=NUMBER, ci=True),
        _r("BillingCurrency", "BillingCurrencyCode", "Currency", kinds=TEXT, ci=True),
        _r("BillingAccountId", "SubscriptionId", "SubscriptionGuid", kinds=TEXT, ci=True),
    ],
}
# Providers whose files read a missing key as a null column (the requirement then is "has a value").
SPARSE_PROVIDERS = ("gcp",)


def kind_of(dtype: pl.DataType) -> set[str]:
    """What a delivered type can serve as (text columns can be parsed as anything)."""
    if dtype == pl.String:
        return {"time", "number", "text", "list"}
    if isinstance(dtype, (pl.Datetime, pl.Date)):
        return {"time"}
    if dtype.is_numeric():
        return {"number", "text"}
    if isinstance(dtype, pl.List):
        return {"list"}
    if isinstance(dtype, pl.Null):
        return {"time", "number", "text", "list"}
    return set()


def flatten(schema: pl.Schema | dict[str, pl.DataType]) -> dict[str, str]:
    """`{column: type}` with struct fields as `a.b` and fields of lists of structs as `a[].b`."""
    out: dict[str, str] = {}

    def visit(name: str, dtype: pl.DataType) -> None:
        if isinstance(dtype, pl.Struct):
            out[name] = "Struct"
            for item in dtype.fields:
                visit(f"{name}.{item.name}", item.dtype)
        elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            out[name] = "List(Struct)"
            for item in dtype.inner.fields:
                visit(f"{name}[].{item.name}", item.dtype)
        else:
            out[name] = str(dtype)

    for name, dtype in schema.items():
        if not name.startswith("x_"):
            visit(name, dtype)
    return out


def _key_columns(schema: pl.Schema) -> list[str]:
    """Map columns and `[{key, value}]` lists: where tag keys live."""
    out = []
    for name, dtype in schema.items():
        if isinstance(dtype, pl.Map):
            out.append(name)
        elif (
            isinstance(dtype, pl.List)
            and isinstance(dtype.inner, pl.Struct)
            and {f.name for f in dtype.inner.fields} >= {"key", "value"}
        ):
            out.append(name)
    return out


def _keys_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    keys = (
        pl.col(name).map.keys()
        if isinstance(dtype, pl.Map)
        else pl.col(name).list.eval(pl.element().struct.field("key"))
    )
    return keys.explode().drop_nulls().unique().implode().alias(name)


def schema_name(delivery: Delivery) -> str:
    """`<delivered_at>-<version>.json`: names sort by delivery time, so the previous one is found by listing."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in delivery.version)[-120:]
    return f"{delivery.delivered_at.astimezone(dt.UTC):%Y%m%dT%H%M%S%f}-{safe}.json"


def schema_url(lake_url: str, source: str, delivery: Delivery) -> str:
    return join(lake_url, *SCHEMAS_DIR, f"source={source}", schema_name(delivery))


@dataclass(frozen=True)
class FileObservation:
    """What observing one file found on a delivery's first read: its columns, the adapter's unmet
    requirements, the keys of its tag maps."""

    columns: dict[str, str]
    unmet: tuple[str, ...]
    tag_keys: dict[str, frozenset[str]]


# A delivery's first read observes every one of its files; an append-only export (GCP) shares its files
# between the deliveries of later periods, so a backfill's new period observed each of the rest of the table's
# files again (a year's table: 683 files, ~15 s on the first day of each month). The same bytes (the file's
# identity: path, size, ETag or mtime) under the same adapter give the same observation, so it is kept here for
# the process, keyed by (provider, file format, identity); a rewritten file has another identity and is observed
# again.
_OBSERVED: KeptByIdentity[tuple[str, str, str], FileObservation] = KeptByIdentity(limit=100_000)


@dataclass
class SchemaObserver:
    """Collects the schema of each file of a delivery as the raw step reads it, then judges the drift."""

    provider: str
    source: str
    delivery: Delivery
    store: Store
    lake_url: str
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    tag_keys: dict[str, set[str]] = field(default_factory=dict)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (file, message)
    _known: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        url = schema_url(self.lake_url, self.source, self.delivery)
        try:
            self._known = json.loads(self.store.read_bytes(url)) if self.store.exists(url) else None
        except (OSError, ValueError):
            self._known = None
        if self._known and self._known.get("fingerprint") != self.delivery.fingerprint:
            self._known = None  # same version, other files (overwrite mode): observe again

    @property
    def settled(self) -> bool:
        """The delivery's schema is recorded, with no breaking change: observing more of its files
        changes neither the record nor the verdict (a reader may then skip files it does not need)."""
        return self._known is not None and not self._known.get("breaking")

    def observe(self, file_uri: str, schema: pl.Schema, frame: pl.LazyFrame) -> FileObservation | None:
        """Record one file's schema and check the adapter's requirements on it. Never raises.

        Returns what was found on the delivery's first read (the observation `remember` keeps), else None."""
        try:
            columns = self.files[file_uri] = flatten(schema)
            unmet = tuple(self._unmet(schema, frame))
            self.broken += [(file_uri, m) for m in unmet]
            if self._known is not None:
                return None
            tag_keys: dict[str, frozenset[str]] = {}
            key_columns = _key_columns(schema)
            if key_columns:
                found = frame.select([_keys_expr(c, schema[c]) for c in key_columns]).collect().row(0, named=True)
                tag_keys = {column: frozenset(k for k in keys or [] if k is not None) for column, keys in found.items()}
            self._add_tag_keys(tag_keys)
            return FileObservation(columns, unmet, tag_keys)
        except Exception as error:  # noqa: BLE001 - drift bookkeeping never fails a read
            log.warning("schema of %s not recorded: %s", file_uri, error)
            return None

    def remember(self, identity: str, observation: FileObservation) -> None:
        """Keep a file's first-read observation for the next delivery that holds the same file (the caller
        calls this once the file passed every check of the read, so a recalled file needs none again)."""
        _OBSERVED.keep(self._memo_key(identity), observation)

    def recall(self, file_uri: str, identity: str) -> bool:
        """Record the file as observed from a kept observation of the same bytes, on a delivery's first read
        (the only read that observes files it does not otherwise need); False when there is none to use."""
        observation = _OBSERVED.get(self._memo_key(identity)) if self._known is None else None
        if observation is None:
            return False
        self.files[file_uri] = observation.columns
        self.broken += [(file_uri, m) for m in observation.unmet]
        self._add_tag_keys(observation.tag_keys)
        return True

    def _memo_key(self, identity: str) -> tuple[str, str, str]:
        """The same bytes read by the same adapter the same way."""
        return (self.provider, self.delivery.file_format, identity)

    def _add_tag_keys(self, tag_keys: dict[str, frozenset[str]]) -> None:
        for column, keys in tag_keys.items():
            self.tag_keys.setdefault(column, set()).update(keys)

    def _unmet(self, schema: pl.Schema, frame: pl.LazyFrame) -> list[str]:
        messages = []
        sparse: list[str] = []
        for requirement in REQUIREMENTS.get(self.provider, []):
            match = _find(schema, requirement)
            if match is None:
                messages.append(
                    f"column {requirement.names[0]!r} the adapter needs is missing"
                    + (f" (nor any of {list(requirement.names[1:])})" if len(requirement.names) > 1 else "")
                    + _renamed_hint(schema, requirement)
                )
            elif not kind_of(schema[match]) & set(requirement.kinds):
                messages.append(
                    f"column {match!r} changed type to {schema[match]}, which the adapter cannot read "
                    f"as {requirement.kinds[0]}"
                )
            elif self.provider in SPARSE_PROVIDERS:
                sparse.append(match)
        if sparse and (self._known is None or self._known.get("breaking")):  # scanned once per delivery
            counts = (
                frame.select(pl.len().alias("_rows"), *[pl.col(c).is_not_null().sum().alias(c) for c in sparse])
                .collect()
                .row(0, named=True)
            )
            if counts["_rows"]:
                messages += [
                    f"column {c!r} the adapter needs holds no value in any row (missing from the file)"
                    for c in sparse
                    if not counts[c]
                ]
        return messages

    def finish(self, day: dt.date, detected_at: dt.datetime) -> tuple[list[dict[str, Any]], str | None]:
        """Quarantine records of kind `schema_change` for the day, and the breaking message (or None)."""
        document = self._known or self._document()
        document.setdefault("breaking", [f"{message} (file {file})" for file, message in self.broken])
        if self._known is None and self.files:
            self.store.write_bytes(
                schema_url(self.lake_url, self.source, self.delivery),
                json.dumps(document, indent=1, sort_keys=True).encode(),
            )
        records = []
        first_file = next(iter(self.files), self.delivery.manifest_uri or self.delivery.version)
        additive = document.get("additive") or []
        if additive:
            reason = "additive: " + "; ".join(additive)
            log.warning("source %r, delivery %s: %s", self.source, self.delivery.version, reason)
            records.append(self._record(day, detected_at, first_file, reason))
        error = None
        if self.broken:
            details = "; ".join(f"{message} (file {file})" for file, message in self.broken)
            error = f"source {self.source!r}: delivery {self.delivery.version}: breaking schema change: {details}"
            records.append(self._record(day, detected_at, self.broken[0][0], "breaking: " + details))
        return records, error

    def _record(self, day: dt.date, detected_at: dt.datetime, file_uri: str, reason: str) -> dict[str, Any]:
        return {
            "source": self.source,
            "usage_date": day,
            "stage": "raw",
            "kind": "schema_change",
            "file_uri": file_uri,
            "export_version": self.delivery.version,
            "reason": reason[:2000],
            "rows": 0,
            "quarantined_copy": None,
            "detected_at": detected_at,
        }

    def _document(self) -> dict[str, Any]:
        columns: dict[str, str] = {}
        for flat in self.files.values():
            columns.update(flat)
        previous = previous_schema(self.store, self.lake_url, self.source, self.delivery)
        document: dict[str, Any] = {
            "source": self.source,
            "version": self.delivery.version,
            "fingerprint": self.delivery.fingerprint,
            "delivered_at": self.delivery.delivered_at.isoformat(),
            "columns": columns,
            "files": self.files,
            "tag_keys": {k: sorted(v) for k, v in self.tag_keys.items()},
            "previous_version": previous.get("version") if previous else None,
            "additive": [],
            "removed": [],
        }
        if previous:
            before, after = previous.get("columns") or {}, columns
            added = sorted(set(after) - set(before))
            removed = sorted(set(before) - set(after))
            retyped = sorted(c for c in set(after) & set(before) if after[c] != before[c])
            notes = []
            if added:
                notes.append(f"new columns {_short(added)}")
            if removed:
                notes.append(f"columns no longer delivered {_short(removed)}")
            if retyped:
                notes.append("types changed " + _short([f"{c}: {before[c]} -> {after[c]}" for c in retyped]))
            for column, keys in sorted(self.tag_keys.items()):
                new_keys = sorted(keys - set((previous.get("tag_keys") or {}).get(column, [])))
                if new_keys and column in (previous.get("tag_keys") or {}):
                    notes.append(f"new keys in {column}: {_short(new_keys)}")
            document["additive"] = notes
            document["removed"] = removed
        return document


def _short(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_KEYS_REPORTED])
    return f"[{shown}{', ...' if len(items) > MAX_KEYS_REPORTED else ''}]"


def _find(schema: pl.Schema, requirement: Requirement) -> str | None:
    if not requirement.case_insensitive:
        return next((n for n in requirement.names if n in schema), None)
    from billing_pipeline.adapters.azure import canonical_header

    by_key = {canonical_header(c): c for c in reversed(list(schema))}
    return next((by_key[n.lower()] for n in requirement.names if n.lower() in by_key), None)


def _renamed_hint(schema: pl.Schema, requirement: Requirement) -> str:
    """Name the delivered columns that look like the missing one (a rename is the usual cause)."""

    def norm(name: str) -> str:
        return name.split("/")[-1].replace("_", "").replace(" ", "").lower()

    stems = {norm(n) for n in requirement.names}
    similar = [c for c in schema if any(stem in norm(c) or norm(c) in stem for stem in stems if len(norm(c)) > 3)]
    if not similar:
        similar = difflib.get_close_matches(requirement.names[0], list(schema), n=3, cutoff=0.75)
    return f"; renamed? similar delivered columns: {similar[:5]}" if similar else ""


def previous_schema(store: Store, lake_url: str, source: str, delivery: Delivery) -> dict[str, Any] | None:
    """The recorded schema of the source's latest delivery before this one (one file read, by name order)."""
    folder = join(lake_url, *SCHEMAS_DIR, f"source={source}")
    own = schema_name(delivery)
    earlier = sorted(
        info.url
        for info in store.find(folder)
        if info.url.endswith(".json") and info.url.rsplit("/", 1)[-1][:21] < own[:21]
    )
    for url in reversed(earlier):
        try:
            return json.loads(store.read_bytes(url))
        except (OSError, ValueError):
            continue
    return None


def text_cells(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Every column as text, nested ones as JSON (quarantine files keep rows whatever their shape)."""
    schema = frame.collect_schema()

    def as_text(name: str, dtype: pl.DataType) -> pl.Expr:
        if not dtype.is_nested():
            return pl.col(name).cast(pl.String)
        encoded = pl.struct(pl.col(name).alias("v")).struct.json_encode()
        return pl.when(pl.col(name).is_not_null()).then(encoded.str.slice(5, encoded.str.len_chars() - 6)).alias(name)

    return frame.select(as_text(name, dtype) for name, dtype in schema.items())
