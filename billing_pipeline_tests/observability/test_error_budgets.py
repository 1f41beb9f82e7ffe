"""SLOs with error budgets: attainment, budget left and burn rates against a plain-Python recount of the
events, the multiwindow alert rule day by day, and the asset and its checks inside `billing_daily`."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetKey, instance_for_test
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.observability import error_budgets, slis
from billing_pipeline.observability.alerts import check_outcome
from billing_pipeline.platform.config import BillingConfig, load_config
from billing_pipeline.platform.kept import KeptByIdentity
from billing_pipeline.platform.names import SLO_BUDGETS
from billing_pipeline.platform.storage import Store

from ..conftest import write_config, write_data_export
from ..ops_fixtures import cur2_month_frame

DAY = dt.date(2023, 11, 20)
PERIOD = "2023-11"


def _config(tmp_path: Path, **extra) -> BillingConfig:
    root = tmp_path / "landing" / "alpha"
    root.mkdir(parents=True, exist_ok=True)
    return load_config(
        write_config(
            tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}], start_date="2023-10-01", **extra
        )
    )


def _events(
    history: dict[int, bool], sli: str = "export_success_rate", source: str = "alpha", day: dt.date = DAY
) -> pl.DataFrame:
    """Events of one (SLI, source): age in days before `day` -> good."""
    return pl.DataFrame(
        [
            {
                "date": day - dt.timedelta(days=age),
                "sli": sli,
                "source": source,
                "value": 0.0,
                "target": 0.0,
                "good": good,
            }
            for age, good in sorted(history.items())
        ],
        schema=error_budgets.EVENT_SCHEMA,
    )


def _expected(history: dict[int, bool], objective: float, days: int) -> float:
    """Burn rate over the `days` ending at the day, counted here one event at a time."""
    inside = [good for age, good in history.items() if age < days]
    bad = sum(1 for good in inside if not good)
    if not inside or not bad:
        return 0.0
    if objective == 1.0:
        return math.inf
    return (bad / len(inside)) / (1 - objective)


@settings(max_examples=60, deadline=None)
@given(
    history=st.dictionaries(st.integers(0, 40), st.booleans(), min_size=1),
    objective=st.sampled_from([0.9, 0.95, 0.99, 1.0]),
)
def test_attainment_budget_and_burn_rates_match_a_recount(
    tmp_path_factory, history: dict[int, bool], objective: float
) -> None:
    config = _config(tmp_path_factory.mktemp("budget"), error_budget={"objective": objective})
    table = error_budgets.budgets(config, DAY, _events(history))
    window = {age: good for age, good in history.items() if age < 28}
    if not window:
        assert table.height == 0  # nothing judged in the window: no row, no alert
        return
    row = table.row(0, named=True)
    bad = sum(1 for good in window.values() if not good)
    assert (row["events"], row["failed"]) == (len(window), bad)
    assert row["attainment"] == pytest.approx(1 - bad / len(window))
    allowed = (1 - objective) * len(window)
    if allowed:
        assert row["budget_left"] == pytest.approx(1 - bad / allowed)
    else:
        assert row["budget_left"] == (1.0 if not bad else -math.inf)
    rates = {
        label: _expected(window, objective, days)
        for label, days in (("fast_long", 3), ("fast_short", 1), ("slow_long", 7), ("slow_short", 3))
    }
    for label, rate in rates.items():
        assert row[f"burn_rate_{label}"] == pytest.approx(rate), label
    enough = objective == 1.0 or sum(1 for age in window if age < 3) >= 2  # a page needs 2 evaluations
    page = rates["fast_long"] > 10 and rates["fast_short"] > 10 and enough
    ticket = rates["slow_long"] > 2 and rates["slow_short"] > 2
    assert row["alert"] == ("page" if page else "ticket" if ticket else "none")


def test_a_clean_window_is_quiet_one_bad_day_tickets_and_a_sustained_burn_pages(tmp_path: Path) -> None:
    config = _config(tmp_path)
    clean = {age: True for age in range(28)}

    def alert(history: dict[int, bool], sli: str = "export_success_rate") -> str:
        return error_budgets.budgets(config, DAY, _events(history, sli=sli))["alert"].item()

    assert alert(clean) == "none"
    # one bad day (today) of 28: burn 20x over the day, 6.7x over 3 days (fast needs 10x on both) -> a ticket
    assert alert(clean | {0: False}) == "ticket"
    # the same bad day 3 days ago is out of the slow short window: quiet again, the budget still shows it
    assert alert(clean | {3: False}) == "none"
    # two of the last three days, today included: 13.3x and 20x -> a page
    assert alert(clean | {0: False, 1: False}) == "page"
    # ... which stops paging as soon as today is good again (the short window), and tickets instead
    assert alert(clean | {1: False, 2: False}) == "ticket"
    # a zero-budget SLO (schema failures) pages on its first failure
    assert alert(clean | {0: False}, sli="schema_failures") == "page"
    # a first day of history that is bad is a 100 % failure rate: a ticket, not yet a page
    assert alert({0: False}) == "ticket" and alert({0: False}, sli="schema_failures") == "page"
    assert alert({0: False, 1: False}) == "page"
    # one bad day of two is exactly 10x over the long window: not above it, so a ticket
    assert alert({0: False, 1: True}) == "ticket"


def test_budgets_of_a_day_count_only_the_days_recorded_before_it(tmp_path: Path) -> None:
    """The window reads the events each earlier day stored; a day never evaluated adds nothing."""
    config = _config(tmp_path)
    store = Store()
    for age, good in ((1, False), (2, True)):
        day = DAY - dt.timedelta(days=age)
        table = _events({0: good}, day=day).with_columns(attainment=pl.lit(1.0))
        path = Path(error_budgets.budget_url(config.lake_url, day))
        path.parent.mkdir(parents=True, exist_ok=True)
        table.write_parquet(path)
    recorded = error_budgets.recorded_events(store, config.lake_url, [DAY - dt.timedelta(days=k) for k in (3, 2, 1)])
    assert recorded.sort("date")["good"].to_list() == [True, False]


def test_an_earlier_days_events_are_read_once_and_again_when_that_day_is_evaluated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a backfill each day's stored events were read again by every later day of its window; they are kept
    by the file's identity, and a day evaluated again (a new file) is read anew."""
    config = _config(tmp_path)
    store = Store()
    monkeypatch.setattr(error_budgets, "_EVENTS_BY_FILE", KeptByIdentity(limit=10_000))
    reads: list[str] = []
    read_bytes = Store.read_bytes

    def counting(self: Store, url: str) -> bytes:
        reads.append(url)
        return read_bytes(self, url)

    monkeypatch.setattr(Store, "read_bytes", counting)
    days = [DAY - dt.timedelta(days=k) for k in (3, 2, 1)]

    def store_day(day: dt.date, good: bool) -> None:
        path = Path(error_budgets.budget_url(config.lake_url, day))
        path.parent.mkdir(parents=True, exist_ok=True)
        _events({0: good}, day=day).with_columns(attainment=pl.lit(1.0)).write_parquet(path)

    store_day(days[0], True)
    store_day(days[1], True)
    assert error_budgets.recorded_events(store, config.lake_url, days)["good"].to_list() == [True, True]
    assert error_budgets.recorded_events(store, config.lake_url, days)["good"].to_list() == [True, True]
    assert len(reads) == 2  # each stored day once; the day without a file (days[2]) is not read at all

    store_day(days[1], False)  # evaluated again: another file
    store_day(days[2], False)
    assert error_budgets.recorded_events(store, config.lake_url, days).sort("date")["good"].to_list() == [
        True,
        False,
        False,
    ]
    assert len(reads) == 4


def test_sources_not_judged_on_a_day_give_no_event(tmp_path: Path) -> None:
    """M1 before a delivery is due, and M7 while the month is open, are not events; M5 and M8 are judged for
    the day as a whole."""
    config = _config(tmp_path)
    now = dt.datetime.combine(DAY, dt.time(12), tzinfo=dt.UTC)  # the day itself: nothing is due yet
    events = error_budgets.day_events(config, Store(), DAY, now)
    by_sli = {sli: set(group["source"]) for (sli,), group in events.group_by("sli")}
    assert "export_success_rate" not in by_sli and "reconciliation_delta" not in by_sli
    assert by_sli["ingestion_cost"] == {slis.ALL_SOURCES} and by_sli["cost_anomalies"] == {slis.ALL_SOURCES}
    # once due with nothing delivered, M1 is a bad event for the source
    late = error_budgets.day_events(config, Store(), DAY, now + dt.timedelta(days=3))
    m1 = late.filter(pl.col("sli") == "export_success_rate")
    assert m1.select("source", "good").rows() == [("alpha", False)]


def _run_days(tmp_path: Path, days: list[dt.date], drifted: set[dt.date], instance) -> tuple[dict, Path]:
    """Each day delivered (as CUR 2.0) and run through `billing_daily`; `drifted` days lose a needed column."""
    config_path = write_config(
        tmp_path,
        [{"name": "alpha", "provider": "aws_cur2", "url": str(tmp_path / "landing" / "alpha")}],
        start_date="2023-10-01",
    )
    job = build_definitions(config_path).resolve_job_def(JOB_NAME)
    outcomes = {}
    for k, day in enumerate(days):
        frame = cur2_month_frame(PERIOD, days=[d for d in days if d <= day])
        files = {"part-1.csv.gz": frame}
        if day in drifted:
            files["part-2.csv.gz"] = frame.drop("line_item_usage_start_date")
        write_data_export(
            tmp_path / "landing" / "alpha",
            f"exec-{k}",
            files,
            period=PERIOD,
            file_format="csv",
            export_time=(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1, hours=2)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        )
        result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)
        assert result.success
        outcomes[day] = {
            e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
    return outcomes, config_path


def test_billing_daily_pages_on_the_schema_budget_and_resolves_when_it_stops_burning(tmp_path: Path) -> None:
    days = [dt.date(2023, 11, d) for d in (1, 2, 3)]
    with instance_for_test() as instance:
        outcomes, config_path = _run_days(tmp_path, days, drifted={days[1]}, instance=instance)
    config = load_config(config_path)
    first, drifted, repaired = (outcomes[d]["slo_budget_schema_failures"] for d in days)
    assert first.passed
    assert not drifted.passed and drifted.severity == AssetCheckSeverity.ERROR
    assert drifted.metadata["alert/route"].value == "page"
    assert "source 'alpha'" in drifted.description and "fast burn" in drifted.description
    assert drifted.metadata["slo/attainment/alpha"].value == pytest.approx(1 / 2)
    # the day after: no schema failure today, the 1-day window is clean -> no page; the 3-day slow short
    # window still holds the failure (zero budget: infinite burn) -> a ticket
    assert not repaired.passed and repaired.metadata["alert/route"].value == "ticket"
    assert repaired.severity == AssetCheckSeverity.WARN
    # the other SLOs of these clean days do not burn
    for day in days:
        assert outcomes[day]["slo_budget_duplicate_rate"].passed
    # the SLI check itself shows red in the UI and routes nowhere: the budget alerts
    assert outcomes[days[1]]["contract_schema"].metadata["alert/route"].value == "none"
    # one alert per budget check whatever the partition: the page of day 2 and the ticket of day 3 share a key
    alerts = [
        check_outcome(
            "slo_error_budgets",
            "slo_budget_schema_failures",
            d.isoformat(),
            outcomes[d]["slo_budget_schema_failures"].passed,
            "ERROR",
            outcomes[d]["slo_budget_schema_failures"].metadata,
            config,
        )
        for d in days[1:]
    ]
    assert alerts[0].key == alerts[1].key and alerts[0].route == "page" and alerts[1].route == "ticket"
    assert alerts[0].runbook == "schema_failures"
    stored = error_budgets.read_budgets(Store(), config.lake_url, days[1])
    assert stored is not None
    assert stored.filter(pl.col("sli") == "schema_failures").select("source", "good", "events").rows() == [
        ("alpha", False, 2)
    ]


def test_a_days_budgets_count_the_verdicts_its_checks_gave_without_evaluating_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the day's step the checks evaluate every budgeted SLI before the error budgets are built; the budgets
    count those verdicts. Built on their own (no check selected), they evaluate each SLI themselves, once."""
    calls: dict[str, int] = {name: 0 for name in error_budgets.SLI_FUNCTIONS}

    def counted(name: str, compute: slis.SliFunction) -> slis.SliFunction:
        def count(*args, **kwargs) -> slis.SliResult:
            calls[name] += 1
            return compute(*args, **kwargs)

        return count

    for name, compute in list(error_budgets.SLI_FUNCTIONS.items()):
        monkeypatch.setitem(error_budgets.SLI_FUNCTIONS, name, counted(name, compute))
    day = dt.date(2023, 11, 1)
    with instance_for_test() as instance:
        outcomes, config_path = _run_days(tmp_path, [day], drifted=set(), instance=instance)
        config = load_config(config_path)
        with_checks = error_budgets.read_budgets(Store(), config.lake_url, day)
        assert calls == {name: 0 for name in calls}
        assert outcomes[day]["slo_budget_schema_failures"].passed
        assert with_checks is not None and "schema_failures" in set(with_checks["sli"])

        job = build_definitions(config_path).resolve_job_def(JOB_NAME)
        alone = job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, asset_selection=[AssetKey(SLO_BUDGETS)]
        )
        assert alone.success
        assert calls == {name: 1 for name in calls}
    on_their_own = error_budgets.read_budgets(Store(), config.lake_url, day)
    assert on_their_own is not None
    verdicts = ["sli", "source", "value", "target", "good", "events", "failed"]
    assert (
        on_their_own.select(verdicts).sort("sli", "source").equals(with_checks.select(verdicts).sort("sli", "source"))
    )


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"objectives": {"export_sucess_rate": 0.9}}, "unknown SLI names"),
        ({"objectives": {"export_success_rate": 1.5}}, "objectives must be in"),
        ({"fast_burn": {"long_window_days": 1, "short_window_days": 3, "burn_rate": 10}}, "short_window_days"),
    ],
)
def test_a_bad_error_budget_block_is_refused_naming_what_is_wrong(tmp_path: Path, block: dict, words: str) -> None:
    from billing_pipeline.platform.config import ConfigError

    with pytest.raises(ConfigError, match=words):
        _config(tmp_path, error_budget=block)


def test_error_budget_targets_are_configurable(tmp_path: Path) -> None:
    config = _config(
        tmp_path, error_budget={"objective": 0.9, "objectives": {"duplicate_rate": 0.99}, "window_days": 14}
    )
    assert config.error_budget.objective_of("duplicate_rate") == 0.99
    assert config.error_budget.objective_of("export_success_rate") == 0.9
    # an event 20 days old is outside a 14-day window
    table = error_budgets.budgets(config, DAY, _events({0: True, 20: False}))
    assert table.select("events", "failed").row(0) == (1, 0)
