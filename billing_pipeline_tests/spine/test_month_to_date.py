"""A day's month to date (`spine/reconcile.py`): each normalized slice of the month is read once for the month's
later days, again when it is rebuilt, and the totals are the exact sums of the slices' rows."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.names import NORMALIZED
from billing_pipeline.platform.storage import Store
from billing_pipeline.spine import reconcile

SOURCE = "alpha"
ACCOUNTS = [("111", "USD"), ("222", "USD"), ("222", "EUR"), (None, "USD")]
amounts = st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
rows = st.lists(st.tuples(st.integers(0, len(ACCOUNTS) - 1), amounts), max_size=8)


def _write_slice(lake: Path, day: dt.date, day_rows: list[tuple[int, Decimal]], period: dt.date) -> None:
    path = Path(slice_url(str(lake), NORMALIZED, day, SOURCE))
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "BillingAccountId": [ACCOUNTS[a][0] for a, _ in day_rows],
            "BillingCurrency": [ACCOUNTS[a][1] for a, _ in day_rows],
            "BilledCost": [str(amount) for _, amount in day_rows],
            "BillingPeriodStart": [dt.datetime.combine(period, dt.time(), tzinfo=dt.UTC)] * len(day_rows),
        },
        # typed as a published slice is (`conform`): a day whose every account id is null is still String
        schema_overrides={
            "BillingAccountId": pl.String,
            "BillingCurrency": pl.String,
            "BillingPeriodStart": pl.Datetime("us", "UTC"),
        },
    ).with_columns(pl.col("BilledCost").cast(MONEY)).write_parquet(path)


def _expected(month: dict[dt.date, list[tuple[int, Decimal]]], day: dt.date) -> dict[tuple, Decimal]:
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for current, day_rows in month.items():
        if current <= day:
            for account, amount in day_rows:
                totals[ACCOUNTS[account]] += amount
    return dict(totals)


def _month_to_date(store: Store, lake: Path, day: dt.date, workdir: Path) -> dict[tuple, Decimal]:
    frame = reconcile.month_to_date(store, str(lake), SOURCE, day, workdir)
    if frame is None:
        return {}
    return {(r[0], r[1]): r[2] for r in frame.collect().iter_rows()}


@settings(max_examples=25, deadline=None)
@given(st.lists(rows, min_size=1, max_size=6))
def test_each_slice_is_read_once_for_the_month_and_the_totals_are_exact(
    tmp_path_factory: pytest.TempPathFactory, days: list[list[tuple[int, Decimal]]]
) -> None:
    lake, workdir = tmp_path_factory.mktemp("lake"), tmp_path_factory.mktemp("work")
    store = Store()
    first = dt.date(2024, 3, 1)
    month = {first + dt.timedelta(days=k): day_rows for k, day_rows in enumerate(days) if day_rows}
    for current, day_rows in month.items():
        _write_slice(lake, current, day_rows, first)
    kept, reconcile._SLICE_SUMS = reconcile._SLICE_SUMS, KeptByIdentity(limit=100_000)
    staged: list[str] = []
    stage = Store.stage

    def counting(self: Store, url: str, into: Path) -> Path:
        staged.append(url)
        return stage(self, url, into)

    Store.stage = counting  # type: ignore[method-assign]
    try:
        for k in range(len(days)):
            day = first + dt.timedelta(days=k)
            assert _month_to_date(store, lake, day, workdir) == _expected(month, day)
    finally:
        Store.stage = stage  # type: ignore[method-assign]
        reconcile._SLICE_SUMS = kept
    assert sorted(staged) == sorted(slice_url(str(lake), NORMALIZED, current, SOURCE) for current in month)


def test_a_rebuilt_slice_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "_SLICE_SUMS", KeptByIdentity(limit=100_000))
    store, first = Store(), dt.date(2024, 3, 1)
    month = {first: [(0, Decimal("1.5"))], first + dt.timedelta(days=1): [(0, Decimal("2.25")), (1, Decimal("7"))]}
    for current, day_rows in month.items():
        _write_slice(tmp_path, current, day_rows, first)
    second = first + dt.timedelta(days=1)
    assert _month_to_date(store, tmp_path, second, tmp_path) == _expected(month, second)
    month[first] = [(0, Decimal("10.125")), (2, Decimal("-3"))]  # the first day restated, rebuilt
    _write_slice(tmp_path, first, month[first], first)
    assert _month_to_date(store, tmp_path, second, tmp_path) == _expected(month, second)
    assert _month_to_date(store, tmp_path, second, tmp_path) == {
        ("111", "USD"): Decimal("12.375"),
        ("222", "USD"): Decimal("7"),
        ("222", "EUR"): Decimal("-3"),
    }


def test_gcp_counts_the_rows_invoiced_in_the_month_from_the_month_before(tmp_path: Path) -> None:
    """By invoice month: a late row of the previous month's usage invoiced this month counts, one invoiced last
    month does not (the same slice read for two months is kept once per month)."""
    store = Store()
    _write_slice(tmp_path, dt.date(2024, 2, 29), [(0, Decimal("4"))], dt.date(2024, 3, 1))  # late: March invoice
    _write_slice(tmp_path, dt.date(2024, 2, 28), [(0, Decimal("100"))], dt.date(2024, 2, 1))
    _write_slice(tmp_path, dt.date(2024, 3, 1), [(0, Decimal("1"))], dt.date(2024, 3, 1))
    march = reconcile.month_to_date(store, str(tmp_path), SOURCE, dt.date(2024, 3, 1), tmp_path, by_invoice_month=True)
    february = reconcile.month_to_date(
        store, str(tmp_path), SOURCE, dt.date(2024, 2, 29), tmp_path, by_invoice_month=True
    )
    assert march is not None and february is not None
    assert march.collect().rows() == [("111", "USD", Decimal("5"))]
    assert february.collect().rows() == [("111", "USD", Decimal("100"))]
