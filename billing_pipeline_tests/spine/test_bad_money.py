"""Rows, not days: a money cell that is not a finite number in range (NaN, +-inf, |x| >= 1e15, as a
float or as text) sends its row to `quarantine/rows` with a reason naming the column and the value;
the other rows of the day are normalized, and the step never fails. For CUR 2.0 (Parquet and CSV),
legacy CUR, native FOCUS, GCP and Azure; expected totals are summed with Decimal over the cells."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.adapters.aws import MONEY_INPUTS
from billing_pipeline.adapters.base import MONEY_LIMIT, money_problem, parse_money
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.focus import MONEY_COLUMNS
from billing_pipeline.platform.lake import quarantine_url, slice_url
from billing_pipeline.tools.generator.gcp_samples import koku_csv_to_nested, write_parquet

from ..adapters.test_azure import write_run
from ..conftest import (
    AWS_SAMPLE,
    FOCUS_SAMPLE,
    SAMPLES,
    legacy_cur_landing,
    run_spine,
    sample_as_cur2_frame,
    write_config,
    write_data_export,
)

CUR_DAY = dt.date(2023, 11, 1)
BAD_FLOATS = [math.inf, -math.inf, math.nan, 1e30, 1e15, -2.5e16]
BAD_TEXTS = ["inf", "-inf", "NaN", "nan", "Infinity", "1e30", "1E15", "-1000000000000000", "99999999999999999999.5"]
REASON = "non-finite or out-of-range money {} in {}"


def _config(tmp_path: Path, provider: str, url: Path, start: str) -> BillingConfig:
    return load_config(
        write_config(tmp_path, [{"name": "src", "provider": provider, "url": str(url)}], start_date=start)
    )


def _decimal(cell: object) -> Decimal:
    """A cell as the number it spells: text as written, a float through its shortest repr."""
    return Decimal(repr(cell)) if isinstance(cell, float) else Decimal(str(cell))


def _published(config: BillingConfig, day: dt.date) -> Decimal:
    normalized = pl.read_parquet(slice_url(config.lake_url, "normalized_line_items", day, "src"))
    return sum((Decimal(str(v)) for v in normalized["BilledCost"]), Decimal(0))


def _quarantined(config: BillingConfig, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(quarantine_url(config.lake_url, "rows", day, "src"))


def _names_value(reason: str, column: str, value: object) -> bool:
    """The reason is the out-of-range one, for `column`, and spells `value` (any float spelling)."""
    prefix, suffix = "non-finite or out-of-range money ", f" in {column}"
    if not (reason.startswith(prefix) and reason.endswith(suffix)):
        return False
    shown = reason[len(prefix) : -len(suffix)]
    if isinstance(value, float):
        return math.isnan(value) and math.isnan(float(shown)) or float(shown) == value
    return shown == value


def _check_run(config: BillingConfig, day: dt.date, bad: int, good_total: Decimal) -> pl.DataFrame:
    """Run the day (it must not raise); `bad` rows quarantined, the rest published; the quarantined rows."""
    run = run_spine(config, day)
    normalized = run.normalized[0]
    assert normalized.quarantined_rows == bad
    assert normalized.raw_rows == normalized.rows + normalized.quarantined_rows + normalized.duplicate_rows
    assert _published(config, day) == good_total
    assert (run.reconciliation["conservation_delta"] == 0).all()
    if not bad:
        assert not Path(quarantine_url(config.lake_url, "rows", day, "src")).exists()
        return pl.DataFrame()
    rows = _quarantined(config, day)
    assert rows.height == bad
    return rows


# ---- the helper itself -------------------------------------------------------------------------------------


def test_money_problem_names_the_column_and_the_value() -> None:
    texts = pl.DataFrame(
        {"c": ["1.5", "-0.000005", "999999999999999.99", "", "None", "NULL", None, "12,5O", *BAD_TEXTS]}
    )
    got = texts.select(money_problem(pl.col("c"), pl.String, "cost")).to_series().to_list()
    assert got[:7] == [None] * 7  # numbers in range, and no value at all (missing is reported elsewhere)
    assert got[7] == "unparseable number 12,5O in cost"
    assert got[8:] == [REASON.format(v, "cost") for v in BAD_TEXTS]
    floats = pl.DataFrame({"c": [1.5, None, 999999999999999.9, *BAD_FLOATS]})
    got = floats.select(money_problem(pl.col("c"), pl.Float64, "cost")).to_series().to_list()
    assert got[:3] == [None] * 3
    assert all(_names_value(r, "cost", v) for r, v in zip(got[3:], BAD_FLOATS, strict=True))
    # a quantity may be large, but never NaN or beyond what Decimal(38, 18) holds
    got = floats.select(money_problem(pl.col("c"), pl.Float64, "q", limit=None)).to_series().to_list()
    assert [r is not None for r in got] == [False, False, False, True, True, True, True, False, False]


def test_parse_money_never_raises_and_nulls_what_it_cannot_hold() -> None:
    floats = pl.DataFrame({"c": [1.5, *BAD_FLOATS, 1e19, 1e25]})
    assert (
        floats.select(parse_money(pl.col("c"), pl.Float64, MONEY_LIMIT)).to_series().to_list()
        == [Decimal("1.5")] + [None] * 8
    )
    unlimited = floats.select(parse_money(pl.col("c"), pl.Float64)).to_series().to_list()
    assert unlimited[0] == Decimal("1.5") and unlimited[5] == Decimal(10**15) and unlimited[7] == Decimal(10**19)
    assert unlimited[1:5] == [None] * 4 and unlimited[8] is None  # inf, -inf, NaN, 1e30; 1e25 does not fit
    wide = pl.DataFrame({"c": pl.Series(["1e25", "2"]).cast(pl.Decimal(38, 4))})
    assert wide.select(parse_money(pl.col("c"), wide.schema["c"])).to_series().to_list() == [None, Decimal(2)]


# ---- AWS CUR 2.0: Parquet with float money, CSV with text ------------------------------------------------


def _cur2_float_frame() -> pl.DataFrame:
    """The public sample in CUR 2.0 shape, money as doubles (as Data Exports' Parquet types them)."""
    sample = sample_as_cur2_frame()
    return sample.with_columns(pl.col(c).cast(pl.Float64, strict=False) for c in MONEY_INPUTS if c in sample.columns)


def _on_day(frame: pl.DataFrame, column: str, day: dt.date) -> list[int]:
    return (
        frame.with_row_index("i")
        .filter(pl.col(column).cast(pl.String).str.slice(0, 10) == day.isoformat())["i"]
        .to_list()
    )


def _good_total(frame: pl.DataFrame, cost: str, date: str, day: dt.date, bad: list[int]) -> Decimal:
    rows = frame.with_row_index("i").filter(
        pl.col(date).cast(pl.String).str.slice(0, 10) == day.isoformat(), ~pl.col("i").is_in(bad)
    )
    return sum((_decimal(v) for v in rows[cost].to_list() if v not in (None, "")), Decimal(0))


def _set(frame: pl.DataFrame, column: str, rows: list[int], value: object) -> pl.DataFrame:
    dtype = frame.schema[column]
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(rows))
        .then(pl.lit(value, dtype=dtype))
        .otherwise(pl.col(column))
        .alias(column)
    )


@pytest.mark.parametrize("value", BAD_FLOATS, ids=["inf", "-inf", "nan", "1e30", "1e15", "-2.5e16"])
def test_cur2_parquet_float_money_quarantines_the_row_not_the_day(tmp_path: Path, value: float) -> None:
    frame = _cur2_float_frame()
    day_rows = _on_day(frame, "line_item_usage_start_date", CUR_DAY)
    cost_bad, list_bad = day_rows[:2], day_rows[2:3]
    broken = _set(
        _set(frame, "line_item_unblended_cost", cost_bad, value), "pricing_public_on_demand_cost", list_bad, value
    )  # ListCost's source
    root = tmp_path / "landing" / "cur2"
    write_data_export(root, "exec-1", {"part-1.snappy.parquet": broken})
    config = _config(tmp_path, "aws_cur2", root, "2023-11-01")
    good = _good_total(frame, "line_item_unblended_cost", "line_item_usage_start_date", CUR_DAY, cost_bad + list_bad)
    rows = _check_run(config, CUR_DAY, 3, good)
    reasons = rows["reason"].to_list()
    assert sum(_names_value(r, "line_item_unblended_cost", value) for r in reasons) == 2
    assert sum(_names_value(r, "pricing_public_on_demand_cost", value) for r in reasons) == 1


@pytest.mark.parametrize("value", BAD_TEXTS)
def test_cur2_csv_text_money_quarantines_the_row(tmp_path: Path, value: str) -> None:
    sample = sample_as_cur2_frame()
    bad = _on_day(sample, "line_item_usage_start_date", CUR_DAY)[:2]
    root = tmp_path / "landing" / "cur2"
    write_data_export(
        root, "exec-1", {"part-1.csv.gz": _set(sample, "line_item_unblended_cost", bad, value)}, file_format="csv"
    )
    config = _config(tmp_path, "aws_cur2", root, "2023-11-01")
    good = _good_total(sample, "line_item_unblended_cost", "line_item_usage_start_date", CUR_DAY, bad)
    rows = _check_run(config, CUR_DAY, 2, good)
    assert set(rows["reason"]) == {REASON.format(value, "line_item_unblended_cost")}
    assert set(rows["line_item_unblended_cost"]) == {value}  # the row as delivered


def test_placeholders_stay_missing_cost_and_are_not_reported_twice(tmp_path: Path) -> None:
    sample = sample_as_cur2_frame()
    day_rows = _on_day(sample, "line_item_usage_start_date", CUR_DAY)
    broken = _set(
        _set(sample, "line_item_unblended_cost", day_rows[:1], "NULL"), "line_item_unblended_cost", day_rows[1:2], "NaN"
    )
    root = tmp_path / "landing" / "cur2"
    write_data_export(root, "exec-1", {"part-1.csv.gz": broken}, file_format="csv")
    config = _config(tmp_path, "aws_cur2", root, "2023-11-01")
    good = _good_total(sample, "line_item_unblended_cost", "line_item_usage_start_date", CUR_DAY, day_rows[:2])
    rows = _check_run(config, CUR_DAY, 2, good)
    assert sorted(rows["reason"]) == [
        "missing cost in line_item_unblended_cost",
        REASON.format("NaN", "line_item_unblended_cost"),
    ]


# ---- legacy CUR (CSV, slash headers) ----------------------------------------------------------------------


def test_legacy_cur_text_money_quarantines_the_row(tmp_path: Path) -> None:
    with open(AWS_SAMPLE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    on_day = [i for i, r in enumerate(rows) if r["lineItem/UsageStartDate"][:10] == CUR_DAY.isoformat()]
    spoiled = dict(zip(on_day, ["inf", "-Infinity", "NaN", "1e30", "2e15"], strict=False))
    expected = sum(
        (Decimal(r["lineItem/UnblendedCost"]) for i, r in enumerate(rows) if i in on_day and i not in spoiled),
        Decimal(0),
    )
    for i, value in spoiled.items():
        rows[i]["lineItem/UnblendedCost"] = value
    sample = tmp_path / "spoiled.csv"
    with open(sample, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = _config(tmp_path, "aws_cur", legacy_cur_landing(tmp_path / "landing", sample), "2023-11-01")
    quarantined = _check_run(config, CUR_DAY, len(spoiled), expected)
    assert set(quarantined["reason"]) == {REASON.format(v, "line_item_unblended_cost") for v in spoiled.values()}


# ---- native FOCUS: CSV text and Parquet floats ---------------------------------------------------------

FOCUS_DAY = dt.date(2024, 9, 25)


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_focus_money_quarantines_the_row(tmp_path: Path, file_format: str) -> None:
    sample = pl.read_csv(FOCUS_SAMPLE, infer_schema=False)
    day_rows = _on_day(sample, "ChargePeriodStart", FOCUS_DAY)
    billed_bad = {day_rows[0]: "inf", day_rows[1]: "NaN", day_rows[2]: "-1e30"}
    effective_bad = {day_rows[3]: "1e16"}
    good = _good_total(sample, "BilledCost", "ChargePeriodStart", FOCUS_DAY, [*billed_bad, *effective_bad])
    broken = sample
    for column, spoiled in (("BilledCost", billed_bad), ("EffectiveCost", effective_bad)):
        for row, value in spoiled.items():
            broken = _set(broken, column, [row], value)
    landing = tmp_path / "landing" / "focus"
    landing.mkdir(parents=True)
    if file_format == "csv":
        broken.write_csv(landing / "focus.csv")
    else:  # money as doubles, as some FOCUS writers type it
        broken.with_columns(
            pl.col(c).cast(pl.Float64, strict=False) for c in MONEY_COLUMNS if c in broken.columns
        ).write_parquet(landing / "focus.parquet")
    config = _config(tmp_path, "focus", landing, "2024-09-01")
    if file_format == "parquet":  # the good rows as the Parquet cells spell them
        good = sum(
            (
                _decimal(float(v))
                for i, v in enumerate(sample["BilledCost"])
                if i in day_rows and i not in billed_bad and i not in effective_bad
            ),
            Decimal(0),
        )
    rows = _check_run(config, FOCUS_DAY, 4, good)
    reasons = rows["reason"].to_list()
    for value in billed_bad.values():
        assert sum(_names_value(r, "BilledCost", value if file_format == "csv" else float(value)) for r in reasons) == 1
    assert sum(_names_value(r, "EffectiveCost", "1e16" if file_format == "csv" else 1e16) for r in reasons) == 1


def test_focus_placeholders_are_null_not_quarantined(tmp_path: Path) -> None:
    """`""`, `None`, `NULL` in an optional money column are nulls (FOCUS requires null), not bad rows."""
    sample = pl.read_csv(FOCUS_SAMPLE, infer_schema=False)
    day_rows = _on_day(sample, "ChargePeriodStart", FOCUS_DAY)
    broken = sample
    for row, value in zip(day_rows[:3], ["", "None", "NULL"], strict=True):
        broken = _set(broken, "ListUnitPrice", [row], value)
    landing = tmp_path / "landing" / "focus"
    landing.mkdir(parents=True)
    broken.write_csv(landing / "focus.csv")
    config = _config(tmp_path, "focus", landing, "2024-09-01")
    _check_run(config, FOCUS_DAY, 0, _good_total(sample, "BilledCost", "ChargePeriodStart", FOCUS_DAY, []))


# ---- GCP: cost and credit amounts as doubles ---------------------------------------------------------

KOKU_2020 = SAMPLES / "koku_202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv"


@pytest.mark.parametrize("value", [math.inf, math.nan, -1e30, 3e15], ids=["inf", "nan", "-1e30", "3e15"])
def test_gcp_cost_and_credit_amounts_quarantine_the_row(tmp_path: Path, value: float) -> None:
    frame = koku_csv_to_nested(KOKU_2020).with_row_index("i")
    day = frame["usage_start_time"][0].date()
    on_day = frame.filter(pl.col("usage_start_time").dt.date() == day)
    with_credit = on_day.filter(pl.col("credits").list.len() > 0)["i"].to_list()
    cost_bad = [i for i in on_day["i"].to_list() if i not in with_credit][:1] or on_day["i"].to_list()[:1]
    credit_bad = [i for i in with_credit if i not in cost_bad][:1]
    assert credit_bad, "the sample has credits on its first day"
    amount = pl.element().struct.field("amount")
    broken = frame.with_columns(
        pl.when(pl.col("i").is_in(cost_bad)).then(pl.lit(value)).otherwise(pl.col("cost")).alias("cost"),
        pl.when(pl.col("i").is_in(credit_bad))
        .then(pl.col("credits").list.eval(pl.element().struct.with_fields(pl.lit(value).alias("amount"))))
        .otherwise(pl.col("credits"))
        .alias("credits"),
    ).drop("i")
    landing = tmp_path / "landing"
    write_parquet(broken, landing / "export.parquet")
    config = _config(tmp_path, "gcp", landing, "2020-01-01")
    good = on_day.filter(~pl.col("i").is_in(cost_bad + credit_bad))
    expected = sum((_decimal(c) for c in good["cost"]), Decimal(0)) + sum(
        (_decimal(a) for a in good.select(pl.col("credits").list.eval(amount)).to_series().explode().drop_nulls()),
        Decimal(0),
    )
    run = run_spine(config, day)
    assert run.normalized[0].quarantined_rows == 2
    assert _published(config, day) == expected
    assert (run.reconciliation["conservation_delta"] == 0).all()
    reasons = _quarantined(config, day)["reason"].to_list()
    assert sum(_names_value(r, "cost", value) for r in reasons) == 1
    assert sum(_names_value(r, "credits.amount", value) for r in reasons) == 1


# ---- Azure: text cells, and a ListCost product that would overflow ---------------------------------------

EA_ACTUAL = SAMPLES / "finops-toolkit_EA_ActualCost_Small.csv"
AZURE_DAY = dt.date(2023, 9, 4)


def _azure_rows() -> tuple[list[str], list[dict[str, str]]]:
    with open(EA_ACTUAL, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _azure_bytes(header: list[str], rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def test_azure_money_quarantines_the_row(tmp_path: Path) -> None:
    header, rows = _azure_rows()
    on_day = [i for i, r in enumerate(rows) if r["Date"] == f"{AZURE_DAY:%m/%d/%Y}"]
    usage = [i for i in on_day if rows[i]["ChargeType"] == "Usage" and rows[i]["UnitOfMeasure"] == "1 Hour"]
    spoiled_cost = {on_day[0]: "inf", on_day[1]: "NaN", on_day[2]: "1e30"}
    product_row = next(i for i in usage if i not in spoiled_cost)  # Quantity x PayGPrice >= 1e15
    expected = sum(
        (Decimal(r["Cost"]) for i, r in enumerate(rows) if i in on_day and i not in spoiled_cost and i != product_row),
        Decimal(0),
    )
    for i, value in spoiled_cost.items():
        rows[i]["Cost"] = value
    rows[product_row] |= {"Quantity": "100000000000", "PayGPrice": "100000"}
    root = tmp_path / "landing" / "actual"
    write_run(root, "20230901-20230930", "run-1", {"part_0_0001.csv": _azure_bytes(header, rows)})
    config = _config(tmp_path, "azure", root, "2023-09-01")
    quarantined = _check_run(config, AZURE_DAY, 4, expected)
    reasons = set(quarantined["reason"])
    assert {REASON.format(v, "Cost") for v in spoiled_cost.values()} <= reasons
    assert (
        REASON.format("100000000000.000000000000000000 x 100000.000000000000000000", "ListCost (Quantity x PayGPrice)")
        in reasons
    )
