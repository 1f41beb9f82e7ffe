"""Cost anomalies (M8): same-weekday median + MAD baseline per service / account / team, and the burn rate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from billing_pipeline.observability import anomalies
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.lake import refresh_views
from billing_pipeline.platform.storage import Store

from ..conftest import write_config
from ..ops_fixtures import SERVICES, TEAMS, cur2_month_frame, deliver_cur2, month_days, run_day

SPIKE_DAY = dt.date(2023, 11, 28)  # a Tuesday; the month before gives four Tuesdays of history


def seasonal(day: dt.date, team: str, service: str) -> float:
    """Weekdays cost 4x weekends, with a little week-to-week wobble."""
    weekday = 40.0 if day.weekday() < 5 else 10.0
    return weekday + TEAMS.index(team) + SERVICES.index(service) + (day.day % 3) * 0.5


def _lake(tmp_path: Path, cost, **extra) -> BillingConfig:
    root = tmp_path / "landing" / "alpha"
    for period in ("2023-10", "2023-11"):
        deliver_cur2(root, "exec-1", cur2_month_frame(period, cost), period)
    config = load_config(
        write_config(
            tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01", **extra
        )
    )
    for day in month_days("2023-10") + month_days("2023-11"):
        if day >= dt.date(2023, 10, 31):  # four same weekdays and 28 trailing days before SPIKE_DAY
            run_day(config, day)
    return config


def test_a_spike_names_team_service_and_rows_and_weekends_are_not_anomalies(tmp_path: Path) -> None:
    def cost(day: dt.date, team: str, service: str) -> float:
        spike = 400.0 if day == SPIKE_DAY and team == "search" and service == "AmazonEC2" else 0.0
        return seasonal(day, team, service) + spike

    config = _lake(tmp_path, cost)
    store = Store()
    saturday = dt.date(2023, 11, 25)  # 4x lower than a weekday, but normal for a Saturday
    assert anomalies.detect(config, store, saturday).height == 0
    table = anomalies.publish(config, store, SPIKE_DAY)
    moved = {(r["dimension"], r["key"]) for r in table.iter_rows(named=True)}
    assert moved == {("team", "search"), ("service", _ec2(table)), ("account", "111111111111")}
    team = table.filter((pl.col("dimension") == "team") & (pl.col("key") == "search")).row(0, named=True)
    assert team["kind"] == "spend_anomaly" and team["delta"] == pytest.approx(400.0, abs=2.0)
    assert team["history_points"] == 4 and team["rows"] == 3
    assert "cost=" in team["top_rows"] and "search" in team["message"] and "Tuesday" in team["message"]
    # the table is in the lake, and its query lists exactly the rows behind the anomaly
    stored = pl.read_parquet(anomalies.anomalies_url(config.lake_url, SPIKE_DAY))
    assert stored.height == table.height
    assert "cost_anomalies" in refresh_views(config.lake_url, config.duckdb_file, store)
    with duckdb.connect(config.duckdb_file, read_only=True) as connection:
        rows = connection.execute(team["query"]).fetchall()
        viewed = connection.execute(
            "SELECT count(*), min(date) FROM cost_anomalies WHERE dimension = 'team' AND key = 'search'"
        ).fetchone()
    assert len(rows) == team["rows"]
    assert viewed == (1, SPIKE_DAY)  # the DuckDB view over <lake>/cost_anomalies/date=D/part-0.parquet


def _ec2(table: pl.DataFrame) -> str:
    services = table.filter(pl.col("dimension") == "service")["key"].to_list()
    assert len(services) == 1
    return services[0]


def test_too_little_history_reports_nothing(tmp_path: Path) -> None:
    config = _lake(tmp_path, seasonal, anomalies={"min_history_weeks": 6})
    assert anomalies.detect(config, Store(), SPIKE_DAY).height == 0


def test_the_burn_rate_fires_above_the_configured_factor_of_the_projected_rate(tmp_path: Path) -> None:
    def cost(day: dt.date, team: str, service: str) -> float:
        return 100.0 if day == SPIKE_DAY else 20.0  # flat history: 5x the projected daily rate

    config = _lake(tmp_path, cost)
    table = anomalies.detect(config, Store(), SPIKE_DAY)
    burn = table.filter(pl.col("kind") == "burn_rate").row(0, named=True)
    assert burn["score"] == pytest.approx(5.0) and burn["baseline"] == pytest.approx(180.0)
    assert "5.0x the projected daily rate" in burn["message"]
    relaxed = config.model_copy(update={"anomalies": config.anomalies.model_copy(update={"burn_rate_factor": 6.0})})
    assert anomalies.detect(relaxed, Store(), SPIKE_DAY).filter(pl.col("kind") == "burn_rate").height == 0


def _summed_here(lake: str, day: dt.date) -> float:
    """The day's allocated spend, read straight from its slices."""
    slices = (Path(lake) / "tag_enriched_costs" / f"date={day}").rglob("*.parquet")
    return sum(float(pl.read_parquet(path)["BilledCost"].cast(pl.Float64).sum()) for path in slices)


def _counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per read of a day's enriched slices (`anomalies._read_files`) from now on."""
    reads: list[int] = []
    read_files = anomalies._read_files

    def counting(*args: object, **kwargs: object) -> pl.DataFrame:
        reads.append(1)
        return read_files(*args, **kwargs)

    monkeypatch.setattr(anomalies, "_read_files", counting)
    return reads


def test_a_trailing_day_is_summed_once_and_again_when_its_slice_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill's day summed the 28 days before it again (each summed by every later day), and its four same
    weekdays; a day's total and spend per key are kept by its slices' identities, so the next evaluation reads
    only its own day, and a rebuilt slice is summed again: the baseline is the mean of what the lake holds,
    summed here on its own."""
    config = _lake(tmp_path, lambda day, team, service: 100.0 if day == SPIKE_DAY else 20.0)
    store = Store()
    monkeypatch.setattr(anomalies, "_TOTAL_BY_SLICES", KeptByIdentity(limit=100_000))
    monkeypatch.setattr(anomalies, "_KEY_SUMS_BY_SLICES", KeptByIdentity(limit=10_000))
    reads = _counted_reads(monkeypatch)
    anomalies.detect(config, store, SPIKE_DAY)
    first = len(reads)
    reads.clear()
    anomalies.detect(config, store, SPIKE_DAY)
    # the day; its four same weekdays' sums per key and the 28 days' totals are kept
    assert (first, len(reads)) == (1 + 4 + 28, 1)

    folder = Path(config.lake_url) / "tag_enriched_costs" / f"date={SPIKE_DAY - dt.timedelta(days=3)}"
    before = [info.identity for info in store.find(str(folder))]
    rebuilt = next(folder.rglob("*.parquet"))
    pl.read_parquet(rebuilt).with_columns(pl.col("BilledCost") * 3).write_parquet(rebuilt)
    assert [info.identity for info in store.find(str(folder))] != before
    expected = [_summed_here(config.lake_url, SPIKE_DAY - dt.timedelta(days=k)) for k in range(1, 29)]
    burn = anomalies.detect(config, store, SPIKE_DAY).filter(pl.col("kind") == "burn_rate").row(0, named=True)
    assert burn["baseline"] == pytest.approx(sum(expected) / len(expected))
    assert burn["baseline"] > 180.0  # the rebuilt day now counts three times its cost


def test_a_same_weekday_is_read_once_for_the_days_after_it_and_again_when_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The four same weekdays' spend per key is kept by their slices' identities; two weeks rebuilt at three
    times their cost are read again, and the baseline is the median of the four weeks summed here on their own."""
    config = _lake(tmp_path, lambda day, team, service: 1000.0 if day == SPIKE_DAY else 20.0)
    store = Store()
    monkeypatch.setattr(anomalies, "_KEY_SUMS_BY_SLICES", KeptByIdentity(limit=10_000))
    anomalies.detect(config, store, SPIKE_DAY)
    for weeks in (1, 2):
        rebuilt = next(
            (Path(config.lake_url) / "tag_enriched_costs" / f"date={SPIKE_DAY - dt.timedelta(weeks=weeks)}").rglob(
                "*.parquet"
            )
        )
        pl.read_parquet(rebuilt).with_columns(pl.col("BilledCost") * 3).write_parquet(rebuilt)
    reads = _counted_reads(monkeypatch)
    table = anomalies.detect(config, store, SPIKE_DAY)
    assert len(reads) == 1 + 2 + 2  # the day, the two rebuilt weeks' sums, and their totals for the burn rate

    def team_spend(day: dt.date, team: str) -> float:
        slices = (Path(config.lake_url) / "tag_enriched_costs" / f"date={day}").rglob("*.parquet")
        frames = [pl.read_parquet(path) for path in slices]
        return sum(float(f.filter(pl.col("team") == team)["BilledCost"].cast(pl.Float64).sum()) for f in frames)

    teams = table.filter(pl.col("dimension") == "team")
    assert teams.height == len(TEAMS)
    for row in teams.iter_rows(named=True):
        weeks = sorted(team_spend(SPIKE_DAY - dt.timedelta(weeks=k), row["key"]) for k in range(1, 5))
        assert row["baseline"] == pytest.approx((weeks[1] + weeks[2]) / 2)
        assert weeks[3] == pytest.approx(3 * weeks[0])  # the rebuilt weeks count at three times their cost
