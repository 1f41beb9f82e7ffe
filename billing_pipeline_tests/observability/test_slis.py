"""Each SLI passes on clean data and fails on the fault it exists for, against values computed here from the
fixtures' own numbers (delivery timestamps, costs, counts), never by calling the SLI twice.

The days are built with `run_day` (the builders `billing_daily` calls); the SLI functions are called
directly. Dagster-level behaviour (checks, per-source isolation) is in `test_checks.py`.
"""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.observability import anomalies, slis
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.lake import slice_url
from billing_pipeline.platform.state import read_state, write_state
from billing_pipeline.platform.storage import Store, scratch_dir

from ..conftest import write_config, write_data_export
from ..ops_fixtures import SERVICES, TEAMS, cur2_month_frame, cur2_rows, run_day

UTC = dt.UTC
PERIOD = "2023-11"
ACCOUNT = "111111111111"
DAY = dt.date(2023, 11, 3)
DAY_END = dt.datetime(2023, 11, 4, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _deliver(
    root: Path, execution_id: str, frame: pl.DataFrame, when: dt.datetime, extra: dict[str, bytes] | None = None
) -> None:
    """One CUR 2.0 delivery of `frame` (one CSV file, plus raw-byte files) made at `when`."""
    files: dict[str, object] = {"part-0.csv.gz": frame, **(extra or {})}
    write_data_export(root, execution_id, files, period=PERIOD, file_format="csv", export_time=_stamp(when))


def _config(tmp_path: Path, names: list[str], **extra) -> BillingConfig:
    sources = [{"name": name, "provider": "aws_cur2", "url": str(tmp_path / "landing" / name)} for name in names]
    for name in names:
        (tmp_path / "landing" / name).mkdir(parents=True, exist_ok=True)
    return load_config(write_config(tmp_path, sources, start_date="2023-10-01", **extra))


def _root(tmp_path: Path, name: str) -> Path:
    return tmp_path / "landing" / name


def _drifted(frame: pl.DataFrame) -> dict[str, object]:
    """A delivery whose second file lost a column the adapter needs (a breaking schema change)."""
    return {"part-0.csv.gz": frame, "part-1.csv.gz": frame.drop("line_item_usage_start_date")}


# ---- M1 export success rate ------------------------------------------------------------------------------


def test_m1_a_complete_delivery_made_after_the_day_scores_one(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    _deliver(_root(tmp_path, "alpha"), "exec-1", cur2_month_frame(PERIOD, days=[DAY]), DAY_END + 6 * HOUR)
    run_day(config, DAY)
    result = slis.export_success_rate(config, Store(), DAY, DAY_END + 30 * HOUR)
    assert result.passed and result.value == 1.0 and result.per_source == {"alpha": 1.0}
    assert result.extra["sli/export_deliveries_due"] == 1


def test_m1_missing_early_held_back_and_quarantined_deliveries_lower_it(tmp_path: Path) -> None:
    names = ["alpha", "missing", "early", "quarantined", "drifted"]
    config = _config(tmp_path, names)
    day_rows = cur2_month_frame(PERIOD, days=[DAY])
    _deliver(_root(tmp_path, "alpha"), "exec-1", day_rows, DAY_END + 6 * HOUR)
    # `missing` delivers nothing; `early` only a delivery made at noon of the day, holding the two days before
    _deliver(
        _root(tmp_path, "early"),
        "exec-1",
        cur2_month_frame(PERIOD, days=[DAY - dt.timedelta(days=k) for k in (1, 2)]),
        DAY_END - 12 * HOUR,
    )
    # `quarantined`: its newest delivery has a truncated gzip file (quarantined); an older complete one stands in
    _deliver(_root(tmp_path, "quarantined"), "exec-1", day_rows, DAY_END + 2 * HOUR)
    truncated = gzip.compress(day_rows.write_csv().encode())[:-30]
    _deliver(_root(tmp_path, "quarantined"), "exec-2", day_rows, DAY_END + 5 * HOUR, extra={"part-9.csv.gz": truncated})
    write_data_export(
        _root(tmp_path, "drifted"),
        "exec-1",
        _drifted(day_rows),
        period=PERIOD,
        file_format="csv",
        export_time=_stamp(DAY_END + 3 * HOUR),
    )
    run_day(config, DAY)
    store = Store()
    assert read_state(store, config.lake_url, "drifted", DAY)["held_back"]["kind"] == "drift"

    # before the 24 h deadline only the sources whose delivery arrived count: one complete, two failed
    early = slis.export_success_rate(config, store, DAY, DAY_END + 1 * HOUR)
    assert early.per_source == {"alpha": 1.0, "quarantined": 0.0, "drifted": 0.0}
    assert early.value == pytest.approx(1 / 3) and not early.passed
    # once due, every source is expected: 1 complete of 5
    late = slis.export_success_rate(config, store, DAY, DAY_END + 25 * HOUR)
    assert late.per_source == {"alpha": 1.0, "missing": 0.0, "early": 0.0, "quarantined": 0.0, "drifted": 0.0}
    assert late.value == pytest.approx(1 / 5) and not late.passed
    assert (late.extra["sli/export_deliveries_due"], late.extra["sli/export_deliveries_complete"]) == (5, 1)
    for name in ("missing", "early", "quarantined", "drifted"):
        assert f"source {name!r}" in late.summary
    assert "part-9.csv.gz" in late.summary and "held back (drift)" in late.summary
    assert "source 'alpha'" not in late.summary

    # M6: the unreadable newest delivery is nothing the pipeline could process (M1 counts it), no backlog
    assert slis.backfill_backlog(config, store, DAY, DAY_END).per_source["quarantined"] == 0.0

    # the provider repairs it: a newer complete delivery with the same rows confirms the day
    _deliver(_root(tmp_path, "quarantined"), "exec-3", day_rows, DAY_END + 8 * HOUR)
    run_day(config, DAY)
    repaired = slis.export_success_rate(config, store, DAY, DAY_END + 25 * HOUR)
    assert repaired.per_source["quarantined"] == 1.0 and repaired.value == pytest.approx(2 / 5)


def test_m1_a_later_delivery_with_the_same_rows_confirms_a_day_first_built_before_it_ended(tmp_path: Path) -> None:
    """The day's rows were complete in a delivery made before the day ended (no usage after it); the next
    delivery, made after the day ended, holds the same rows, so the build is skipped: it still confirms the
    day (the skip path records the confirming delivery's time)."""
    config = _config(tmp_path, ["alpha"])
    rows = cur2_month_frame(PERIOD, days=[DAY])
    _deliver(_root(tmp_path, "alpha"), "exec-1", rows, DAY_END - 2 * HOUR)
    run_day(config, DAY)
    store = Store()
    early = slis.export_success_rate(config, store, DAY, DAY_END + 30 * HOUR)
    assert early.per_source == {"alpha": 0.0}  # made before the day ended: not a delivery of the whole day
    _deliver(_root(tmp_path, "alpha"), "exec-2", rows, DAY_END + 3 * HOUR)
    run_day(config, DAY)
    raw = read_state(store, config.lake_url, "alpha", DAY)["raw"]
    assert raw["version"] == "exec-1" and raw["confirmed_version"] == "exec-2"  # not rebuilt
    assert dt.datetime.fromisoformat(raw["confirmed_delivered_at"]) == DAY_END + 3 * HOUR
    confirmed = slis.export_success_rate(config, store, DAY, DAY_END + 30 * HOUR)
    assert confirmed.per_source == {"alpha": 1.0} and confirmed.passed


# ---- M2 export latency ------------------------------------------------------------------------------------


def test_m2_is_measured_when_a_delivery_is_first_seen_and_a_backfill_is_recorded_apart(tmp_path: Path) -> None:
    config = _config(tmp_path, ["prompt", "slow", "old"])
    now = dt.datetime.now(UTC).replace(microsecond=0)
    made = {"prompt": now - dt.timedelta(minutes=20), "slow": now - 3 * HOUR, "old": now - dt.timedelta(days=30)}
    for name, when in made.items():
        _deliver(_root(tmp_path, name), "exec-1", cur2_month_frame(PERIOD, days=[DAY]), when)
    before = dt.datetime.now(UTC)
    run_day(config, DAY)
    after = dt.datetime.now(UTC)
    store = Store()
    result = slis.export_latency(config, store, DAY, after)

    def bounds(name: str) -> tuple[float, float]:
        return ((before - made[name]).total_seconds() / 3600 - 1e-6, (after - made[name]).total_seconds() / 3600)

    for name in ("prompt", "slow"):
        low, high = bounds(name)
        assert low <= result.per_source[name] <= high
    low, high = bounds("old")
    assert "old" not in result.per_source  # a backfill of a 30-day-old delivery is not judged...
    assert low <= result.extra["sli/export_latency_backfill_hours/old"] <= high  # ...but recorded apart
    assert not result.passed and result.value == result.per_source["slow"]
    assert "source 'slow'" in result.summary and "source 'prompt'" not in result.summary
    assert result.extra["slo/export_latency_hours/prompt"] == 1.0

    # a later re-build of the same delivery does not move its first sighting
    state = read_state(store, config.lake_url, "prompt", DAY)
    state["raw"]["ingested_at"] = (after + 5 * HOUR).isoformat()
    write_state(store, config.lake_url, "prompt", DAY, state)
    again = slis.export_latency(config, store, DAY, after + 6 * HOUR)
    assert again.per_source["prompt"] == pytest.approx(result.per_source["prompt"])


def test_m2_passes_when_deliveries_are_picked_up_promptly_even_beside_a_backfill(tmp_path: Path) -> None:
    config = _config(tmp_path, ["prompt", "old"])
    now = dt.datetime.now(UTC).replace(microsecond=0)
    _deliver(_root(tmp_path, "prompt"), "exec-1", cur2_month_frame(PERIOD, days=[DAY]), now - dt.timedelta(minutes=5))
    _deliver(_root(tmp_path, "old"), "exec-1", cur2_month_frame(PERIOD, days=[DAY]), now - dt.timedelta(days=28))
    run_day(config, DAY)
    result = slis.export_latency(config, Store(), DAY, dt.datetime.now(UTC))
    assert result.passed and result.value < 1.0
    assert result.extra["sli/export_latency_backfill_hours"] > 27 * 24


def test_m2_azure_is_judged_against_the_daily_window_target(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [{"name": "az", "provider": "azure", "url": "x"}, {"name": "aws", "provider": "aws_cur2", "url": "y"}],
            slo={"export_latency_hours_daily_window": {"target": 8}},
        )
    )
    assert slis.latency_target(config, config.source("az")).target == 8.0
    assert slis.latency_target(config, config.source("aws")).target == 1.0


# ---- M3 unallocated spend, month to date ---------------------------------------------------------------------


def test_m3_is_the_month_to_date_share_without_an_owner_per_source(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    first, second = dt.date(2023, 11, 1), dt.date(2023, 11, 2)
    tagged = pl.DataFrame(cur2_rows(first, lambda d, t, s: 10.0))  # 9 rows, 90.00, all with a team
    untagged = pl.DataFrame(cur2_rows(second, lambda d, t, s: 2.0)).with_columns(
        pl.lit(None, dtype=pl.String).alias("resource_tags_user_team")
    )  # 9 rows, 18.00, no owner
    _deliver(_root(tmp_path, "alpha"), "exec-1", pl.concat([tagged, untagged]), dt.datetime(2023, 11, 5, tzinfo=UTC))
    for day in (first, second):
        run_day(config, day)
    store = Store()
    clean = slis.unallocated_percent(config, store, first, DAY_END)
    assert clean.passed and clean.value == 0.0
    month = slis.unallocated_percent(config, store, second, DAY_END)
    expected = float(Decimal(18) / Decimal(108) * 100)  # 16.67 %: the month, not the day (100 %)
    assert month.value == pytest.approx(expected) and month.per_source["alpha"] == pytest.approx(expected)
    assert not month.passed and "source 'alpha'" in month.summary
    assert month.extra["sli/unallocated_percent_day"] == pytest.approx(100.0)


def test_m3_never_adds_two_currencies_of_one_source(tmp_path: Path) -> None:
    """A source billing 1,000 USD, all owned, and 10 EUR, none owned: its EUR spend is 100 % unallocated.
    Added together the two would read 10 / 1,010 = 0.99 % and pass."""
    config = _config(tmp_path, ["alpha"])
    first, second = dt.date(2023, 11, 1), dt.date(2023, 11, 2)
    usd = pl.DataFrame(cur2_rows(first, lambda d, t, s: 1000 / 9))  # 9 rows, owned
    eur = pl.DataFrame(cur2_rows(first, lambda d, t, s: 10 / 9)).with_columns(
        pl.lit("EUR").alias("line_item_currency_code"),
        pl.lit(None, dtype=pl.String).alias("resource_tags_user_team"),
        (pl.col("identity_line_item_id") + "-eur").alias("identity_line_item_id"),
    )
    later = pl.DataFrame(cur2_rows(second, lambda d, t, s: 1000 / 9))  # the next day: USD only, owned
    _deliver(_root(tmp_path, "alpha"), "exec-1", pl.concat([usd, eur, later]), dt.datetime(2023, 11, 5, tzinfo=UTC))
    for day in (first, second):
        run_day(config, day)
    store = Store()
    by_currency = read_state(store, config.lake_url, "alpha", first)["enriched"]["result"]["by_currency"]
    expected_billed = {
        c: Decimal(str(sum(Decimal(v) for v in frame["line_item_unblended_cost"])))
        for c, frame in (("USD", usd), ("EUR", eur))
    }  # the delivered text, summed here
    assert {c: Decimal(m["billed"]) for c, m in by_currency.items()} == expected_billed
    assert Decimal(by_currency["EUR"]["unallocated"]) == expected_billed["EUR"]
    assert Decimal(by_currency["USD"]["unallocated"]) == 0
    month = slis.unallocated_percent(config, store, second, DAY_END)
    assert month.per_source == {"alpha": pytest.approx(100.0)} and not month.passed
    assert "EUR billed cost" in month.summary
    # the day after, its EUR share is gone (nothing billed in EUR): no rise is computed across currencies
    jump = slis.unallocated_jump(config, store, second, DAY_END)
    assert jump.value == 0.0 and jump.passed


# ---- M6 backfill backlog ----------------------------------------------------------------------------------


def test_m6_is_the_delivered_hours_a_day_is_behind_never_the_wall_clock(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    root = _root(tmp_path, "alpha")
    days = [DAY, DAY + dt.timedelta(days=1)]
    t1 = dt.datetime(2023, 12, 2, 6, tzinfo=UTC)
    _deliver(root, "exec-1", cur2_month_frame(PERIOD, days=days), t1)
    store = Store()
    assert slis.backfill_backlog(config, store, DAY, t1).value == pytest.approx(24 * 29 + 6)  # never built
    for day in days:
        run_day(config, day)
    for day in days:
        built = slis.backfill_backlog(config, store, day, t1 + 100 * HOUR)
        assert built.passed and built.value == 0.0

    # a restatement 10 h later changes the second day only
    t2 = t1 + 10 * HOUR
    _deliver(
        root,
        "exec-2",
        cur2_month_frame(
            PERIOD, lambda d, t, s: 50.0 if d == days[1] else 10.0 + TEAMS.index(t) + SERVICES.index(s), days=days
        ),
        t2,
    )
    for now in (t2, t2 + 1000 * HOUR):  # the same answer whenever it is evaluated
        behind = slis.backfill_backlog(config, store, days[1], now)
        assert behind.value == pytest.approx(10.0) and behind.per_source == {"alpha": pytest.approx(10.0)}
        assert not behind.passed and "source 'alpha'" in behind.summary and "exec-2" in behind.summary
        assert slis.backfill_backlog(config, store, DAY, now).value == 0.0  # its rows did not change
    run_day(config, days[1])
    assert slis.backfill_backlog(config, store, days[1], t2).value == 0.0

    # a restatement 3 h later is within the 4 h target
    t3 = t2 + 3 * HOUR
    _deliver(
        root,
        "exec-3",
        cur2_month_frame(
            PERIOD, lambda d, t, s: 60.0 if d == days[1] else 10.0 + TEAMS.index(t) + SERVICES.index(s), days=days
        ),
        t3,
    )
    pending = slis.backfill_backlog(config, store, days[1], t3)
    assert pending.value == pytest.approx(3.0) and pending.passed
    run_day(config, days[1])

    # a breaking schema change 6 h later holds the day back: pending until repaired or accepted
    t4 = t3 + 6 * HOUR
    write_data_export(
        root,
        "exec-4",
        _drifted(cur2_month_frame(PERIOD, days=days)),
        period=PERIOD,
        file_format="csv",
        export_time=_stamp(t4),
    )
    run_day(config, days[1])
    held = slis.backfill_backlog(config, store, days[1], t4)
    assert held.value == pytest.approx(6.0) and not held.passed and "held back: drift" in held.summary


# ---- M7 reconciliation delta ------------------------------------------------------------------------------

LAST = dt.date(2023, 11, 30)


def _invoiced_day(
    tmp_path: Path, day: dt.date, costs: tuple[str, str], invoice: str, earlier_built: bool = True, **extra
) -> tuple[BillingConfig, pl.DataFrame]:
    """One source whose only rows are `day`'s 9 rows (8 x costs[0] + 1 x costs[1]), the month invoiced at
    `invoice`; the month's earlier days were built and held no rows (unless not `earlier_built`). Returns
    the config and the day's reconciliation rows."""
    config = _config(tmp_path, ["alpha"], **extra)
    for k in range(day.day - 1 if earlier_built else 0):
        write_state(
            Store(), config.lake_url, "alpha", day.replace(day=k + 1), {"raw": {"rows": 0, "version": "exec-1"}}
        )
    special = ("payments", "AmazonEC2")
    frame = pl.DataFrame(cur2_rows(day)).with_columns(
        pl.when((pl.col("resource_tags_user_team") == special[0]) & (pl.col("line_item_product_code") == special[1]))
        .then(pl.lit(costs[1]))
        .otherwise(pl.lit(costs[0]))
        .alias("line_item_unblended_cost")
    )
    _deliver(_root(tmp_path, "alpha"), "exec-1", frame, dt.datetime(2023, 12, 2, tzinfo=UTC))
    invoices = tmp_path / "invoices"
    invoices.mkdir(exist_ok=True)
    (invoices / f"{PERIOD}.csv").write_text(
        f"invoice_id,billing_account_id,billing_period,currency,amount\nINV-1,{ACCOUNT},{PERIOD},USD,{invoice}\n"
    )
    run_day(config, day)
    table = pl.read_parquet(slice_url(config.lake_url, "reconciliation_deltas", day, "alpha"))
    assert table.height == 1
    return config, table


TOLERANCES = {"absolute_tolerance": "0.01", "relative_tolerance": "0.0001"}


@pytest.mark.parametrize(
    ("costs", "invoice", "status"),
    [
        # 10.00 delivered: the absolute tolerance (0.01) decides; relatively these are 0.1 % off (beyond 0.0001)
        (("1", "2"), "9.99", "matched"),  # |delta| = 0.01 exactly at the absolute tolerance
        (("1", "2"), "9.989", "mismatch"),  # 0.011: just over
        (("1", "2"), "10.01", "matched"),  # -0.01
        # 1000.10 delivered: the relative tolerance decides (|delta| far beyond 0.01)
        (("100", "200.1"), "1000", "matched"),  # |delta| = 0.1 = 0.0001 x 1000 exactly
        (("100", "200.1"), "999.9999", "mismatch"),  # 0.1001 > 0.0001 x 999.9999 = 0.09999999: just over
    ],
)
def test_m7_a_delta_at_a_tolerance_matches_and_one_just_over_is_a_mismatch(
    tmp_path: Path, costs: tuple[str, str], invoice: str, status: str
) -> None:
    config, table = _invoiced_day(tmp_path, LAST, costs, invoice, reconciliation=TOLERANCES)
    total = 8 * Decimal(costs[0]) + Decimal(costs[1])
    row = table.row(0, named=True)
    assert row["month_to_date_total"] == total and row["invoice_delta"] == total - Decimal(invoice)
    assert row["status"] == status
    result = slis.reconciliation_delta(config, Store(), LAST, DAY_END)
    expected = float(abs(total - Decimal(invoice)) / Decimal(invoice))
    assert result.value == pytest.approx(expected) and result.per_source == {"alpha": pytest.approx(expected)}
    assert result.passed is (status == "matched")  # every delta here is well below the 0.5 % SLO target
    if status == "mismatch":
        assert "source 'alpha'" in result.summary and "mismatch" in result.summary


def test_m7_a_closed_period_beyond_the_slo_target_fails_even_within_loose_tolerances(tmp_path: Path) -> None:
    loose = {"absolute_tolerance": "0.01", "relative_tolerance": "0.05"}
    config, table = _invoiced_day(tmp_path, LAST, ("100", "200"), "994", reconciliation=loose)  # 0.6036 % over
    assert table["status"].to_list() == ["matched"]
    result = slis.reconciliation_delta(config, Store(), LAST, DAY_END)
    assert result.value == pytest.approx(float(Decimal(6) / Decimal(994))) and not result.passed
    assert result.target.target == 0.005


def test_m7_a_closed_period_with_days_never_built_is_not_judged_yet(tmp_path: Path) -> None:
    config, table = _invoiced_day(tmp_path, LAST, ("100", "200"), "31000", earlier_built=False)
    assert table["status"].to_list() == ["mismatch"]  # the month to date holds only the last day
    result = slis.reconciliation_delta(config, Store(), LAST, DAY_END)
    assert result.passed and result.per_source == {}
    assert "not judged yet" in result.summary and "29 day(s), first 2023-11-01" in result.summary
    assert result.extra["sli/reconciliation_delta_month_to_date"] == pytest.approx(30000 / 31000)


def test_m7_month_to_date_deltas_are_information_while_the_month_is_open(tmp_path: Path) -> None:
    config, table = _invoiced_day(tmp_path, DAY, ("100", "200"), "31000")  # the whole month's invoice on day 3
    assert table["status"].to_list() == ["month_in_progress"]
    result = slis.reconciliation_delta(config, Store(), DAY, DAY_END)
    assert result.passed and result.value == 0.0
    expected = float(abs(Decimal(1000) - Decimal(31000)) / Decimal(31000))  # 96.8 %: shown, never failed
    assert result.extra["sli/reconciliation_delta_month_to_date"] == pytest.approx(expected)
    assert result.extra["period_closed"] == "no"


# ---- M8 cost anomalies per week --------------------------------------------------------------------------


def _anomaly(day: dt.date, key: str, dimension: str = "team") -> dict[str, object]:
    return {
        "usage_date": day,
        "kind": "spend_anomaly",
        "dimension": dimension,
        "key": key,
        "spend": 500.0,
        "baseline": 100.0,
        "mad": 1.0,
        "delta": 400.0,
        "delta_percent": 400.0,
        "score": 9.0,
        "history_points": 4,
        "rows": 3,
        "top_rows": "",
        "query": "",
        "message": f"team {key!r} spent 500 on {day}",
    }


def _store_anomalies(config: BillingConfig, found: dict[dt.date, int]) -> None:
    store = Store()
    with scratch_dir() as workdir:
        for day, count in found.items():
            frame = pl.DataFrame([_anomaly(day, f"team-{i}") for i in range(count)], schema=anomalies.ANOMALY_SCHEMA)
            store.write_parquet(frame, anomalies.anomalies_url(config.lake_url, day), workdir)


def test_m8_counts_anomalies_over_the_rolling_week_ending_at_the_day(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    day = dt.date(2023, 11, 20)
    # two in the week (D-1, D-3), four on D-7 and two on D+1: outside the week D-6..D
    _store_anomalies(
        config,
        {
            day - dt.timedelta(days=1): 1,
            day - dt.timedelta(days=3): 1,
            day - dt.timedelta(days=7): 4,
            day + dt.timedelta(days=1): 2,
        },
    )
    clean = slis.cost_anomalies(config, Store(), day, DAY_END)
    assert clean.value == 2.0 and clean.passed  # fewer than 3 per week
    _store_anomalies(config, {day - dt.timedelta(days=6): 1})  # a third one, on the week's first day
    busy = slis.cost_anomalies(config, Store(), day, DAY_END)
    assert busy.value == 3.0 and not busy.passed
    assert busy.extra["sli/cost_anomalies_day"] == 0
    # a day later the week is D-5..D+1: D-6 left it, and D+1's own detection (no spend here, the cost_anomalies
    # asset's work) replaces its table; the check only reads
    anomalies.publish(config, Store(), day + dt.timedelta(days=1))
    assert slis.cost_anomalies(config, Store(), day + dt.timedelta(days=1), DAY_END).value == 2.0


def test_m8_one_spike_flagged_on_its_service_account_and_team_is_one_anomalous_spend(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    day = dt.date(2023, 11, 20)
    spike = [
        _anomaly(day - dt.timedelta(days=2), key, dimension)
        for dimension, key in (("service", "AmazonS3"), ("account", ACCOUNT), ("team", "search"))
    ]
    two_teams = [
        _anomaly(day - dt.timedelta(days=1), "search"),
        _anomaly(day - dt.timedelta(days=1), "web"),
        _anomaly(day - dt.timedelta(days=1), ACCOUNT, "account"),
    ]
    with scratch_dir() as workdir:
        for rows in (spike, two_teams):
            store_day = rows[0]["usage_date"]
            Store().write_parquet(
                pl.DataFrame(rows, schema=anomalies.ANOMALY_SCHEMA),
                anomalies.anomalies_url(config.lake_url, store_day),
                workdir,
            )
    result = slis.cost_anomalies(config, Store(), day, DAY_END)
    assert result.value == 1.0 + 2.0 and not result.passed  # the spike once; two teams' spends on the next day


# ---- quarantine rate ---------------------------------------------------------------------------------


def _with_costs(day: dt.date, bad_rows: int) -> pl.DataFrame:
    """The day's 9 rows at 10.00 each, the first `bad_rows` of them with an unparseable cost."""
    frame = pl.DataFrame(cur2_rows(day, lambda d, t, s: 10.0)).with_row_index("_i")
    return frame.with_columns(
        pl.when(pl.col("_i") < bad_rows)
        .then(pl.lit("n/a"))
        .otherwise(pl.col("line_item_unblended_cost"))
        .alias("line_item_unblended_cost")
    ).drop("_i")


@pytest.mark.parametrize(
    ("bad_rows", "passed", "severity"), [(0, True, "WARN"), (1, False, "WARN"), (7, False, "ERROR")]
)
def test_quarantine_rate_fails_above_its_target_and_at_error_when_mostly_quarantined(
    tmp_path: Path, bad_rows: int, passed: bool, severity: str
) -> None:
    config = _config(tmp_path, ["alpha"])
    _deliver(_root(tmp_path, "alpha"), "exec-1", _with_costs(DAY, bad_rows), DAY_END + 6 * HOUR)
    run_day(config, DAY)
    result = slis.quarantine_rate(config, Store(), DAY, DAY_END)
    assert result.value == pytest.approx(bad_rows / 9) and result.per_source == {"alpha": pytest.approx(bad_rows / 9)}
    assert result.passed is passed and (result.severity or result.target.severity) == severity
    if bad_rows == 7:
        assert result.target.route == "page"
        assert "source 'alpha'" in result.summary and "7 of 9 rows" in result.summary
        assert "dominant reason" in result.summary and "line_item_unblended_cost" in result.summary


def test_quarantine_rate_measures_the_share_of_billed_cost_too(tmp_path: Path) -> None:
    config = _config(tmp_path, ["alpha"])
    first = dt.date(2023, 11, 1)
    stray = (
        pl.DataFrame(cur2_rows(dt.date(2023, 10, 15), lambda d, t, s: 30.0))
        .head(1)
        .with_columns(pl.lit("2023-10-15-stray").alias("identity_line_item_id"))
    )  # usage outside the delivery's period
    frame = pl.concat([pl.DataFrame(cur2_rows(first, lambda d, t, s: 10.0)), stray])
    _deliver(_root(tmp_path, "alpha"), "exec-1", frame, dt.datetime(2023, 11, 2, 6, tzinfo=UTC))
    run_day(config, first)
    result = slis.quarantine_rate(config, Store(), first, DAY_END)
    assert result.value == pytest.approx(1 / 10)
    assert result.extra["sli/quarantine_cost_rate/alpha"] == pytest.approx(30 / 120)
    assert not result.passed and "source 'alpha'" in result.summary
