"""Timestamps: one parser (`adapters.base.parse_datetime`, and `parse_timestamp` for manifest times)
reads every ISO 8601 / RFC 3339 spelling exports and re-export tools write, plus the provider ones
(AWS `20261001T000000Z`, Azure `MM/DD/YYYY` and `DD.MM.YYYY`), all to the UTC instant. Property
tests render random instants in each spelling; end-to-end, a CUR export whose usage dates are
respelled publishes the same BilledCost as the original."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.adapters.azure import AzureAdapter
from billing_pipeline.adapters.base import parse_datetime, parse_timestamp
from billing_pipeline.adapters.focus_native import FocusAdapter
from billing_pipeline.adapters.gcp import conform_expr
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.focus import TIMESTAMP
from billing_pipeline.platform.lake import slice_url

from ..conftest import AWS_SAMPLE, legacy_cur_landing, run_spine, write_config

UTC = dt.UTC
FALLBACK = dt.datetime(1999, 1, 1, tzinfo=UTC)


def _parse(cells: list[str | None]) -> list[dt.datetime | None]:
    frame = pl.DataFrame({"v": cells}, schema={"v": pl.String})
    parsed = frame.select(parse_datetime(pl.col("v"), pl.String)).to_series()
    assert parsed.dtype == pl.Datetime("us", "UTC")
    return parsed.to_list()


def _zone(minutes: int, colon: bool) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _fraction(micro: int, digits: int, extra: str) -> tuple[str, int]:
    """`.ddd` with 1-9 digits for `micro` microseconds, and the microseconds that spelling means
    (fewer than 6 digits drop the rest; digits beyond the 6th are below a microsecond)."""
    six = f"{micro:06d}"
    if digits <= 6:
        return "." + six[:digits], int(six[:digits].ljust(6, "0"))
    return "." + six + extra[: digits - 6], micro


instants = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2099, 12, 31))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60)  # whole minutes, as exports write them


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """(text, the UTC instant it means) in one of the spellings exports write."""
    naive = draw(instants)
    offset = draw(offsets)
    local = naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    utc = local.astimezone(UTC)
    digits = draw(st.integers(min_value=0, max_value=9))
    extra = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    fraction, micro = _fraction(naive.microsecond, digits, extra) if digits else ("", 0)
    separator = draw(st.sampled_from(["T", " ", "t"]))
    kind = draw(
        st.sampled_from(
            [
                "offset",
                "offset-no-colon",
                "Z",
                "z",
                "+00:00",
                "+0000",
                " UTC",
                "naive",
                "minutes",
                "date",
                "aws-compact",
                "us-date",
                "dotted-date",
                "us-datetime",
                "us-datetime-12h",
            ]
        )
    )
    if kind in ("offset", "offset-no-colon"):  # -05:00, +0530: converted to UTC
        zone = _zone(offset, colon=kind == "offset")
        text = f"{local:%Y-%m-%d}{separator}{local:%H:%M:%S}{fraction}{zone}"
        return text, local.replace(microsecond=micro).astimezone(UTC)
    if kind in ("Z", "z", "+00:00", "+0000", " UTC", "naive"):  # no zone: UTC
        zone = "" if kind == "naive" else kind
        separator = "T" if kind == "naive" and separator == "t" else separator
        return f"{utc:%Y-%m-%d}{separator}{utc:%H:%M:%S}{fraction}{zone}", utc.replace(microsecond=micro)
    if kind == "minutes":  # 2026-10-01T00:00Z, or with an offset
        zone = draw(st.sampled_from(["Z", _zone(offset, colon=True), _zone(offset, colon=False)]))
        base = utc if zone == "Z" else local
        return f"{base:%Y-%m-%dT%H:%M}{zone}", base.replace(second=0, microsecond=0).astimezone(UTC)
    if kind == "aws-compact":  # AWS manifests: 20261001T000000.000Z
        return f"{utc:%Y%m%dT%H%M%S}{fraction}Z", utc.replace(microsecond=micro)
    midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "date":
        return f"{utc:%Y-%m-%d}", midnight
    if kind == "us-date":  # Azure EA: 09/21/2023
        return f"{utc:%m/%d/%Y}", midnight
    if kind == "dotted-date":  # localized Azure: 21.09.2023
        return f"{utc:%d.%m.%Y}", midnight
    if kind == "us-datetime-12h":
        return f"{utc:%m/%d/%Y %I:%M:%S %p}", utc.replace(microsecond=0)
    return f"{utc:%m/%d/%Y %H:%M:%S}", utc.replace(microsecond=0)


@settings(max_examples=400, deadline=None)
@given(st.lists(spelled(), min_size=1, max_size=20), st.sampled_from(["", " ", "  "]))
def test_every_spelling_parses_to_its_utc_instant(cells: list[tuple[str, dt.datetime]], padding: str) -> None:
    texts = [padding + text + padding for text, _ in cells]
    assert _parse(texts) == [expected for _, expected in cells]  # one column may mix spellings


@settings(max_examples=100, deadline=None)
@given(st.lists(spelled(), min_size=1, max_size=20))
def test_a_columns_parse_is_built_once_and_reads_what_an_expression_of_it_reads(
    cells: list[tuple[str, dt.datetime]],
) -> None:
    """A plain column's parse is built once per (name, type) and reused; the same parse of any other expression
    (here the column cast to text, which is not a plain column) gives the same instants."""
    assert parse_datetime(pl.col("t"), pl.String) is parse_datetime(pl.col("t"), pl.String())
    assert parse_datetime(pl.col("t"), pl.String) is not parse_datetime(pl.col("u"), pl.String)
    frame = pl.DataFrame({"t": [text for text, _ in cells]}, schema={"t": pl.String})
    out = frame.select(
        parse_datetime(pl.col("t"), pl.String).alias("column"),
        parse_datetime(pl.col("t").cast(pl.String), pl.String).alias("expression"),
    )
    assert out["column"].to_list() == out["expression"].to_list() == [expected for _, expected in cells]


@settings(max_examples=300, deadline=None)
@given(spelled())
def test_manifest_times_read_the_same_spellings(cell: tuple[str, dt.datetime]) -> None:
    text, expected = cell
    parsed = parse_timestamp(text, FALLBACK)
    assert parsed == expected and parsed.utcoffset() == dt.timedelta(0)


no_digits = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=30)


TIMED = (
    "{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:00Z",
    "{y:04d}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:00+00:00",
    "{y:04d}{m:02d}{d:02d}T{h:02d}{mi:02d}00Z",
    "{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}Z",
    "{m:02d}/{d:02d}/{y:04d} {h:02d}:{mi:02d}:00",
)
DATED = ("{y:04d}-{m:02d}-{d:02d}", "{m:02d}/{d:02d}/{y:04d}", "{d:02d}.{m:02d}.{y:04d}")


@st.composite
def impossible(draw: st.DrawFn) -> str:
    """A timestamp-looking text with a field out of range (month 13, day 32, Feb 30, hour 25, minute 60)."""
    fields = {"y": draw(st.integers(min_value=1971, max_value=2099)), "m": 1, "d": 1, "h": 0, "mi": 0}
    broken = draw(st.sampled_from(["m", "d", "feb", "h", "mi"]))
    if broken == "feb":
        fields |= {"m": 2, "d": 30}
    else:
        fields[broken] = draw(st.integers(min_value={"m": 13, "d": 32, "h": 25, "mi": 60}[broken], max_value=99))
    spellings = TIMED if broken in ("h", "mi") else TIMED + DATED
    return draw(st.sampled_from(spellings)).format(**fields)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(no_digits, impossible()), min_size=1, max_size=10))
def test_garbage_is_null_and_manifest_times_fall_back(texts: list[str]) -> None:
    assert _parse(texts) == [None] * len(texts)
    assert all(parse_timestamp(text, FALLBACK) == FALLBACK for text in texts)


def test_nulls_and_placeholders_stay_null() -> None:
    assert _parse([None, "", "   ", "None", "NULL", "NaN", "inf", "1e30", "2026-10-01T"]) == [None] * 9


@pytest.mark.parametrize(
    "dtype", [pl.Datetime("ns"), pl.Datetime("ms", "UTC"), pl.Datetime("us", "Europe/Paris"), pl.Date()]
)
def test_typed_columns_become_utc_microseconds(dtype: pl.DataType) -> None:
    instant = dt.datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    value = instant.date() if dtype == pl.Date() else instant
    series = pl.Series("v", [value])
    if isinstance(dtype, pl.Datetime):
        series = series.dt.convert_time_zone(dtype.time_zone) if dtype.time_zone else series.dt.replace_time_zone(None)
    frame = pl.DataFrame({"v": series.cast(dtype)})
    parsed = frame.select(parse_datetime(pl.col("v"), dtype)).to_series()
    assert parsed.dtype == TIMESTAMP and parsed.to_list() == [instant]


SPELLINGS = [
    "2026-10-01T00:00:00Z",
    "2026-10-01 00:00:00+00:00",
    "2026-10-01T00:00:00+0000",
    "2026-10-01T00:00:00.5Z",
    "2026-10-01",
    "2026-10-01T00:00Z",
    "2026-09-30T19:00:00-05:00",
    "2026-10-01T05:30:00+0530",
    "20261001T000000Z",
    "10/01/2026",
    "01.10.2026",
    "2026-10-01 00:00:00 UTC",
]
EXPECTED = [dt.datetime(2026, 10, 1, tzinfo=UTC)] * len(SPELLINGS)
EXPECTED[3] = dt.datetime(2026, 10, 1, 0, 0, 0, 500000, tzinfo=UTC)


def test_every_adapter_reads_usage_dates_with_the_shared_parser() -> None:
    """AWS and FOCUS through `usage_start`, Azure through its header map, GCP when reading text timestamps."""
    from billing_pipeline.adapters.aws import AwsCur2Adapter, AwsLegacyCurAdapter

    cells = pl.Series(SPELLINGS, dtype=pl.String)
    for adapter, column in [
        (AwsLegacyCurAdapter(), "lineItem/UsageStartDate"),
        (AwsCur2Adapter(), "line_item_usage_start_date"),
        (FocusAdapter(), "ChargePeriodStart"),
        (AzureAdapter(), "UsageDateTime"),
    ]:
        frame = pl.DataFrame({column: cells})
        got = frame.select(adapter.usage_start(frame.schema)).to_series().to_list()
        assert got == EXPECTED, type(adapter).__name__
    gcp = pl.DataFrame({"usage_start_time": cells}).select(
        conform_expr(pl.col("usage_start_time"), pl.String, TIMESTAMP)
    )
    assert gcp.to_series().to_list() == EXPECTED


# ---- end to end: a CUR export respelled publishes the same day ------------------------------------------

DATE_COLUMNS = (
    "lineItem/UsageStartDate",
    "lineItem/UsageEndDate",
    "bill/BillingPeriodStartDate",
    "bill/BillingPeriodEndDate",
)
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
RESPELL: dict[str, Callable[[dt.datetime], str]] = {
    "T-Z": lambda d: f"{d:%Y-%m-%dT%H:%M:%S}Z",
    "space-+00:00": lambda d: f"{d:%Y-%m-%d %H:%M:%S}+00:00",
    "T-+0000": lambda d: f"{d:%Y-%m-%dT%H:%M:%S}+0000",
    "space-naive": lambda d: f"{d:%Y-%m-%d %H:%M:%S}",
    "fraction-9": lambda d: f"{d:%Y-%m-%dT%H:%M:%S}.{d.microsecond:06d}000Z",
    "fraction-1": lambda d: f"{d:%Y-%m-%dT%H:%M:%S}.0Z",
    "offset--05:00": lambda d: d.astimezone(MINUS_5).isoformat(),
    "offset-+0530": lambda d: f"{d.astimezone(PLUS_0530):%Y-%m-%dT%H:%M:%S}+0530",
    "minutes": lambda d: f"{d:%Y-%m-%dT%H:%M}Z",
    "date": lambda d: f"{d:%Y-%m-%d}",
    "aws-compact": lambda d: f"{d:%Y%m%dT%H%M%S}Z",
    "space-UTC": lambda d: f"{d:%Y-%m-%d %H:%M:%S} UTC",
    "us-date": lambda d: f"{d:%m/%d/%Y}",
    "dotted-date": lambda d: f"{d:%d.%m.%Y}",
}
DAYS = (dt.date(2023, 11, 1), dt.date(2023, 11, 4))


def _respelled_sample(target: Path, spell: Callable[[dt.datetime], str]) -> None:
    with open(AWS_SAMPLE, newline="") as source, open(target, "w", newline="") as out:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            for column in DATE_COLUMNS:
                if row[column]:
                    row[column] = spell(dt.datetime.fromisoformat(row[column]).astimezone(UTC))
            writer.writerow(row)


def _expected_billed(day: dt.date) -> Decimal:
    """The day's unblended cost, summed with Decimal over the original sample's cells."""
    with open(AWS_SAMPLE, newline="") as handle:
        return sum(
            (
                Decimal(row["lineItem/UnblendedCost"])
                for row in csv.DictReader(handle)
                if row["lineItem/UsageStartDate"][:10] == day.isoformat()
            ),
            Decimal(0),
        )


@pytest.mark.parametrize("spelling", list(RESPELL))
def test_a_respelled_cur_export_publishes_the_same_billed_cost(tmp_path: Path, spelling: str) -> None:
    sample = tmp_path / "respelled.csv"
    _respelled_sample(sample, RESPELL[spelling])
    report = legacy_cur_landing(tmp_path / "landing", sample)
    config = load_config(
        write_config(tmp_path, [{"name": "cur", "provider": "aws_cur", "url": str(report)}], start_date="2023-11-01")
    )
    for day in DAYS:
        run = run_spine(config, day)
        assert run.raw[0].bad_date_rows == 0 and run.normalized[0].quarantined_rows == 0
        normalized = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, "cur"))
        assert sum((Decimal(str(v)) for v in normalized["BilledCost"]), Decimal(0)) == _expected_billed(day)
        assert normalized["ChargePeriodStart"].dt.date().unique().to_list() == [day]
        assert normalized["BillingPeriodStart"].unique().to_list() == [dt.datetime(2023, 11, 1, tzinfo=UTC)]
        assert (run.reconciliation["conservation_delta"] == 0).all()
