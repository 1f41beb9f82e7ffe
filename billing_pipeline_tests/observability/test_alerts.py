"""Alert routing to a real HTTP receiver on 127.0.0.1 standing in for Slack and PagerDuty: tickets, Events v2
pages and their resolution, incidents grouping partitions, the persistent outbox with backoff (a receiver
that fails its first requests, and a refused connection), what each page names and links, in-process
runs, deduplication, cooldown, and secrets kept out of billing.yaml and out of the lake."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from pathlib import Path

import polars as pl
import pytest
from dagster import SkipReason, build_run_status_sensor_context, build_sensor_context, instance_for_test

from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.defs.alert_sensors import ALERTS_ON_FAILURE, ALERTS_ON_SUCCESS, ALERTS_OUTBOX
from billing_pipeline.observability.alerts import (
    RUN_FAILURE,
    Alert,
    AlertDeliveryError,
    Clear,
    StepFailure,
    check_alert,
    flush_outbox,
    load_state,
    route_finished_run,
    run_failure_alert,
    runbook_anchor,
    send_alerts,
    state_url,
)
from billing_pipeline.platform.config import load_config
from billing_pipeline.platform.ops_config import SLO_DEFAULTS
from billing_pipeline.platform.storage import Store
from resources import BillingResource

from ..conftest import write_config, write_data_export
from ..http_capture import Receiver
from ..ops_fixtures import cur2_month_frame

SECRET = "R0UT1NGKEY-not-in-the-yaml"
DAY = "2023-11-03"
DAGSTER = "http://dagster.example:3000"
RUNBOOKS = "https://docs.example/billing-pipeline/README.md"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def routing_key(monkeypatch) -> str:
    monkeypatch.setenv("TEST_PAGERDUTY_ROUTING_KEY", SECRET)
    return SECRET


def _alerts_config(receiver: Receiver, cooldown: float = 60.0, **extra) -> dict:
    return {
        "ticket": {"kind": "slack", "url": f"{receiver.url}/slack"},
        "page": {"kind": "pagerduty", "url": f"{receiver.url}/pd", "routing_key_env": "TEST_PAGERDUTY_ROUTING_KEY"},
        "cooldown_minutes": cooldown,
        "dagster_url": DAGSTER,
        "runbook_url": RUNBOOKS,
        **extra,
    }


def _config_path(tmp_path: Path, receiver: Receiver, frame: pl.DataFrame, **extra) -> Path:
    root = tmp_path / "landing" / "alpha"
    write_data_export(
        root,
        "exec-1",
        {"part-1.csv.gz": frame},
        period="2023-11",
        file_format="csv",
        export_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return write_config(
        tmp_path,
        [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}],
        start_date="2023-10-01",
        alerts=_alerts_config(receiver),
        **extra,
    )


def _run_sensor(defs, name: str, result, instance, config_path: Path) -> None:
    context = build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=result.get_run_success_event() if result.success else result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"billing": BillingResource(config_path=str(config_path))},
    )
    defs.resolve_sensor_def(name)(context.for_run_failure() if name == ALERTS_ON_FAILURE else context)


def test_failed_checks_of_a_run_become_one_ticket_and_pages_go_to_pagerduty(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)]).drop("resource_tags_user_team")
    config_path = _config_path(
        tmp_path,
        receiver,
        frame,
        slo={"unallocated_percent": {"target": 50}, "unallocated_jump_points": {"target": -1, "route": "page"}},
    )
    defs = build_definitions(config_path)
    with instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key=DAY, instance=instance)
        for _ in range(2):  # the same run evaluated twice (a daemon restart) alerts once
            _run_sensor(defs, ALERTS_ON_SUCCESS, result, instance, config_path)

    tickets, pages = receiver.by_path("/slack"), receiver.pages()
    assert len(tickets) == 1 and len(pages) == 1
    text = tickets[0]["text"]
    # M3 alerts through its error budget: the first day of history, bad, is a slow burn (a ticket)
    assert "slo_budget_unallocated_percent failed on slo_error_budgets for 2023-11-03" in text
    assert "slow burn" in text and "source 'alpha': today 100 against the target 50 (bad)" in text
    assert "sli_unallocated_percent failed" not in text and tickets[0]["blocks"]
    page = pages[0]
    assert page["routing_key"] == SECRET and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical" and page["payload"]["source"] == "billing-pipeline"
    assert [a["title"] for a in page["payload"]["custom_details"]["alerts"]] == [
        "sli_unallocated_jump failed on tag_enriched_costs for 2023-11-03"
    ]
    assert len(page["dedup_key"]) == 32
    assert {"href": f"{DAGSTER}/runs/{result.run_id}", "text": f"Dagster run {result.run_id[:8]}"} in page["links"]
    assert page["payload"]["custom_details"]["runbook"] == f"{RUNBOOKS}#runbook-unallocated_jump_points"
    assert SECRET not in config_path.read_text()
    assert SECRET not in Path(state_url(str(tmp_path / "lake"))).read_text()  # nor in the lake's alert state


# ---- a page resolves; every page names source, day, file and column; in-process runs -------------------------


def _two_sources(tmp_path: Path, receiver: Receiver, **alerts) -> tuple[Path, Path]:
    """alpha is clean; beta's delivery lost the cost column (a breaking schema change: beta is held back)."""
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)])
    write_data_export(tmp_path / "landing" / "alpha", "exec-1", {"part-1.csv.gz": frame}, file_format="csv")
    beta = tmp_path / "landing" / "beta"
    write_data_export(beta, "exec-1", {"part-1.csv.gz": frame.drop("line_item_unblended_cost")}, file_format="csv")
    config_path = write_config(
        tmp_path,
        [{"name": n, "provider": "aws_cur2", "url": str(tmp_path / "landing" / n)} for n in ("alpha", "beta")],
        start_date="2023-10-01",
        alerts=_alerts_config(receiver, **alerts),
    )
    return config_path, beta


def test_every_page_names_source_day_file_and_column_links_runbook_and_run_and_resolves_when_it_passes(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    config_path, beta = _two_sources(tmp_path, receiver)
    config = load_config(config_path)
    defs = build_definitions(config_path)
    job = defs.resolve_job_def(JOB_NAME)

    # run 1, in process on an ephemeral instance (as the demo and scripts run), routed by the plain function
    first = job.execute_in_process(partition_key=DAY, raise_on_error=False)
    report = route_finished_run(first, config)
    assert not report.errors and not report.pending
    triggers = {p["payload"]["class"]: p for p in receiver.pages("trigger")}
    guard = triggers["publish_guard failed on raw_line_items"]
    bad_file = str(beta / "data" / "BILLING_PERIOD=2023-11" / "exec-1" / "part-1.csv.gz")
    where = guard["payload"]["custom_details"]["alerts"][0]["where"]
    expected = {"source": "beta", "day": DAY, "file": bad_file, "column": "line_item_unblended_cost"}
    assert expected.items() <= where[0].items()
    assert "source beta" in guard["payload"]["summary"] and "line_item_unblended_cost" in guard["payload"]["summary"]
    assert guard["payload"]["custom_details"]["incident"]["files"] == [bad_file]
    assert {"href": f"{RUNBOOKS}#runbook-publish_guard", "text": "Runbook: runbook-publish_guard"} in guard["links"]
    assert {"href": f"{DAGSTER}/runs/{first.run_id}", "text": f"Dagster run {first.run_id[:8]}"} in guard["links"]
    schema = triggers["slo_budget_schema_failures failed on slo_error_budgets"]  # M9: no budget, pages at once
    assert "contract_schema failed on raw_line_items" not in triggers  # the SLI check itself routes nowhere
    assert schema["payload"]["custom_details"]["alerts"][0]["where"][0]["column"] == "line_item_unblended_cost"
    assert schema["payload"]["custom_details"]["runbook"] == f"{RUNBOOKS}#runbook-schema_failures"
    (ticket,) = receiver.by_path("/slack")  # one ticket for the run, naming the same, linking in context blocks
    section = next(b["text"]["text"] for b in ticket["blocks"] if "publish_guard" in b.get("text", {}).get("text", ""))
    assert f"source beta, day {DAY}, file {bad_file}, column line_item_unblended_cost" in section
    contexts = [e["text"] for b in ticket["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert f"<{RUNBOOKS}#runbook-publish_guard|Runbook: runbook-publish_guard>" in " ".join(contexts)
    assert f"<{DAGSTER}/runs/{first.run_id}|Dagster run {first.run_id[:8]}>" in " ".join(contexts)
    assert route_finished_run(first, config).already_routed and len(receiver.by_path("/slack")) == 1  # once

    # beta delivers a repaired export; run 2 of the same day, on an instance, routed by the run status sensor
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)])
    write_data_export(beta, "exec-2", {"part-1.csv.gz": frame}, file_format="csv", export_time="2023-11-21T00:00:00Z")
    with instance_for_test() as instance:
        second = job.execute_in_process(partition_key=DAY, instance=instance)
        _run_sensor(defs, ALERTS_ON_SUCCESS, second, instance, config_path)
    resolves = receiver.pages("resolve")
    assert guard["dedup_key"] in {r["dedup_key"] for r in resolves}
    assert schema["dedup_key"] in {r["dedup_key"] for r in resolves}
    assert all(r["routing_key"] == SECRET and set(r) == {"routing_key", "event_action", "dedup_key"} for r in resolves)
    note = receiver.by_path("/slack")[-1]["text"]
    assert f"resolved: publish_guard failed on raw_line_items for {DAY}" in note
    assert not any(
        i["cause"].endswith(("publish_guard", "slo_budget_schema_failures"))
        for i in load_state(Store(), config.lake_url)["incidents"].values()
    )


def test_a_failed_run_pages_with_its_cause_and_resolves_when_the_day_succeeds(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)])
    root = tmp_path / "landing" / "alpha"
    write_data_export(root, "exec-1", {"part-1.csv.gz": frame}, period="2023-11", file_format="csv")
    invoices = tmp_path / "invoices"
    invoices.mkdir()
    invoice = invoices / "2023-11.csv"
    invoice.write_text("id,amount\nINV-1,12.50\n")  # not the invoice layout: a step fails
    config_path = write_config(
        tmp_path,
        [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}],
        start_date="2023-10-01",
        alerts=_alerts_config(receiver),
    )
    defs = build_definitions(config_path)
    with instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(
            partition_key=DAY, instance=instance, raise_on_error=False
        )
        assert not result.success
        _run_sensor(defs, ALERTS_ON_FAILURE, result, instance, config_path)
    (page,) = [p for p in receiver.pages("trigger") if "billing_daily failed" in p["payload"]["summary"]]
    alert = page["payload"]["custom_details"]["alerts"][0]
    assert alert["title"].startswith(
        f"billing_daily failed for {DAY}: step reconciliation_deltas: ValueError: invoice file {invoice} lacks columns"
    )
    assert "Steps failed" not in alert["title"] and alert["partition"] == DAY
    assert {"day": DAY, "file": str(invoice)}.items() <= alert["where"][0].items()
    assert "invoice_id" in alert["where"][0]["column"] and "billing_account_id" in alert["where"][0]["column"]
    assert alert["runbook"] == f"{RUNBOOKS}#runbook-{RUN_FAILURE}" and alert["run"] == f"{DAGSTER}/runs/{result.run_id}"
    assert str(invoice) in receiver.by_path("/slack")[0]["text"]  # the outage is also in the ticket channel

    invoice.write_text(
        "invoice_id,billing_account_id,billing_period,currency,amount\nINV-1,111111111111,2023-11,USD,99.00\n"
    )
    with instance_for_test() as instance:
        fixed = defs.resolve_job_def(JOB_NAME).execute_in_process(
            partition_key=DAY, instance=instance, raise_on_error=False
        )
        assert fixed.success
        _run_sensor(defs, ALERTS_ON_SUCCESS, fixed, instance, config_path)
    assert page["dedup_key"] in {r["dedup_key"] for r in receiver.pages("resolve")}


# ---- the outbox: nothing is dropped, retries back off, the tick says so -----------------------------------------


def _page(key: str, day: str = DAY, route: str = "page", stateful: bool = True, cause: str = "") -> Alert:
    return Alert(
        key=key,
        route=route,
        severity="ERROR" if route == "page" else "WARN",
        title=f"title {key}",
        summary=f"summary {key}",
        partition=day,
        origin="test",
        stateful=stateful,
        cause=cause or key,
    )


def test_failed_deliveries_stay_in_the_outbox_and_are_retried_with_exponential_backoff(
    tmp_path: Path, routing_key: str
) -> None:
    flaky = Receiver(fail_first=3)  # Slack and PagerDuty both down for the first three requests
    flaky.thread.start()
    try:
        config = load_config(
            write_config(
                tmp_path,
                [{"name": "a", "provider": "aws_cur2", "url": "x"}],
                alerts=_alerts_config(flaky, retry_initial_seconds=30),
            )
        )
        store, t0 = Store(), dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
        report = send_alerts(config, store, [_page("p1"), _page("t1", route="ticket")], group="run 1", now=t0)
        assert len(report.failures) == 2 and "HTTPError: HTTP Error 503" in report.failures[0]
        assert [e["attempts"] for e in report.pending] == [1, 1] and flaky.received == []
        assert [e["next_attempt_at"] for e in report.pending] == [(t0 + dt.timedelta(seconds=30)).isoformat()] * 2
        assert (
            "2 alert message(s) undelivered" in report.undelivered
            and SECRET not in Path(state_url(config.lake_url)).read_text()
        )

        assert flush_outbox(config, store, now=t0 + dt.timedelta(seconds=10)).pending  # not due: no request
        assert len(flaky.attempts) == 2
        retry = flush_outbox(config, store, now=t0 + dt.timedelta(seconds=31))  # Slack fails a 3rd time, PD goes
        assert len(retry.failures) == 1 and [e["route"] for e in retry.pending] == ["ticket"]
        assert retry.pending[0]["next_attempt_at"] == (t0 + dt.timedelta(seconds=91)).isoformat()  # 30 s, then 60 s
        assert [p["dedup_key"] for p in flaky.pages("trigger")] and flaky.by_path("/slack") == []
        assert flush_outbox(config, store, now=t0 + dt.timedelta(seconds=80)).pending  # backed off: not yet
        done = flush_outbox(config, store, now=t0 + dt.timedelta(seconds=91))
        assert not done.pending and not done.failures and len(flaky.by_path("/slack")) == 1
        assert len(flaky.pages()) == 1 and len(flaky.attempts) == 5  # each message delivered exactly once

        # a refused connection: the URL comes from the environment when the delivery is attempted
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/slack"
        env = {"SLACK_URL": dead_url, "TEST_PAGERDUTY_ROUTING_KEY": SECRET}
        (tmp_path / "b").mkdir()
        other = load_config(
            write_config(
                tmp_path / "b",
                [{"name": "a", "provider": "aws_cur2", "url": "x"}],
                alerts={**_alerts_config(flaky), "ticket": {"kind": "slack", "url_env": "SLACK_URL"}},
            )
        )
        refused = send_alerts(other, store, [_page("t2", route="ticket")], group="run 2", now=t0, env=env)
        assert "Connection refused" in refused.failures[0] and len(refused.pending) == 1
        later = flush_outbox(
            other, store, now=t0 + dt.timedelta(hours=1), env={**env, "SLACK_URL": f"{flaky.url}/slack"}
        )
        assert not later.pending and "title t2" in flaky.by_path("/slack")[-1]["text"]
    finally:
        flaky.server.shutdown()
        flaky.server.server_close()


def test_concurrent_senders_lose_no_incident_and_no_queued_message(tmp_path: Path, routing_key: str) -> None:
    """Sensors evaluated in threads (dagster.yaml `sensors: use_threads`) write the same alert state."""
    down = Receiver(fail_first=10_000)
    down.thread.start()
    try:
        config = load_config(
            write_config(tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}], alerts=_alerts_config(down))
        )
        now = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
        threads = [
            threading.Thread(target=send_alerts, args=(config, Store(), [_page(f"p{i}")], f"run {i}", now))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        state = load_state(Store(), config.lake_url)
        assert len(state["incidents"]) == 8
        assert sorted(e["route"] for e in state["outbox"]) == ["page"] * 8 + ["ticket"] * 8
    finally:
        down.server.shutdown()
        down.server.server_close()


def test_a_tick_fails_while_alerts_are_undelivered_and_the_outbox_sensor_delivers_them_later(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    config_path, _ = _two_sources(tmp_path, receiver, retry_initial_seconds=0)
    defs = build_definitions(config_path)
    resources = {"billing": BillingResource(config_path=str(config_path))}
    receiver.fail_first = 10_000  # both webhooks down
    with instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key=DAY, instance=instance)
        with pytest.raises(AlertDeliveryError, match="HTTP Error 503") as raised:
            _run_sensor(defs, ALERTS_ON_SUCCESS, result, instance, config_path)
        assert "kept in the outbox" in str(raised.value)
        state = load_state(Store(), str(tmp_path / "lake"))
        assert state["outbox"] and state["runs"] == {result.run_id: state["runs"][result.run_id]}
        assert any(i["cause"].endswith("publish_guard") for i in state["incidents"].values())

        outbox = defs.resolve_sensor_def(ALERTS_OUTBOX)
        with pytest.raises(AlertDeliveryError, match="undelivered"):
            outbox(build_sensor_context(instance=instance, resources=resources))
        receiver.fail_first = 0  # the endpoints are back
        delivered = outbox(build_sensor_context(instance=instance, resources=resources))
        assert isinstance(delivered, SkipReason) and "delivered" in delivered.skip_message
        idle = outbox(build_sensor_context(instance=instance, resources=resources))
        assert idle.skip_message == "no alert message waiting"
    assert len(receiver.by_path("/slack")) == 1 and receiver.pages("trigger")
    assert load_state(Store(), str(tmp_path / "lake"))["outbox"] == []


# ---- incidents group partitions; a later incident of the same cause re-sends nothing old ----------------------


def _freshness_alert(config, day: dt.date, source: str = "alpha") -> Alert:
    """What the freshness sensor builds for an overdue day (same call)."""
    metadata = {
        "sli/availability_latency_hours": 40.0,
        "slo/availability_latency_hours": 24.0,
        "alert/route": "page",
        "alert/slo": "freshness",
        "available_at": "not yet",
        f"sli/availability_latency_hours/{source}": 40.0,
        "summary": f"{source} {day}: not available 40.0 h after the day ended (past the 24 h deadline)",
    }
    alert = check_alert("raw_line_items", f"freshness_{source}", day.isoformat(), False, "ERROR", metadata, config)
    assert alert is not None
    return alert


def test_twelve_overdue_days_are_one_page_and_a_later_day_joins_it_without_resending_old_tickets(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    config = load_config(
        write_config(
            tmp_path,
            [{"name": n, "provider": "aws_cur2", "url": str(tmp_path / n)} for n in ("alpha", "beta")],
            start_date="2023-10-01",
            alerts=_alerts_config(receiver, cooldown=30),
        )
    )
    store, t0 = Store(), dt.datetime(2023, 11, 15, 9, tzinfo=dt.UTC)
    days = [dt.date(2023, 11, 1) + dt.timedelta(days=i) for i in range(12)]

    first = send_alerts(config, store, [_freshness_alert(config, d) for d in days], group="freshness", now=t0)
    assert len(first.sent) == 12 and len(first.opened) == 1
    (page,) = receiver.pages()
    assert page["payload"]["summary"].startswith(
        "freshness_alpha failed on raw_line_items for 12 partition(s): 2023-11-01, 2023-11-02"
    )
    assert page["payload"]["custom_details"]["incident"]["partitions"] == [d.isoformat() for d in days]
    assert page["payload"]["custom_details"]["incident"]["sources"] == ["alpha"]
    assert page["payload"]["custom_details"]["runbook"] == f"{RUNBOOKS}#runbook-freshness"
    assert {"href": f"{DAGSTER}/assets/raw_line_items?view=checks", "text": "Dagster checks of raw_line_items"} in page[
        "links"
    ]  # no run behind a sensor's alert: the checks' page, with every partition's evaluations
    (ticket,) = receiver.by_path("/slack")
    assert ticket["text"].startswith("billing-pipeline: 12 alert(s) (12 paged)")

    # the daemon restarts (the sensor's cursor is lost) and reports the same twelve: nothing is re-sent
    again = send_alerts(
        config, store, [_freshness_alert(config, d) for d in days], group="freshness", now=t0 + dt.timedelta(minutes=5)
    )
    assert len(again.suppressed) == 12 and len(receiver.received) == 2

    # next day: one more overdue day of alpha joins the open incident; beta's first overdue day is its own
    t1 = t0 + dt.timedelta(days=1)
    later = send_alerts(
        config,
        store,
        [_freshness_alert(config, dt.date(2023, 11, 13)), _freshness_alert(config, dt.date(2023, 11, 13), "beta")]
        + [_freshness_alert(config, d) for d in days],
        group="freshness",
        now=t1,
    )
    assert len(later.sent) == 2
    ticket = receiver.by_path("/slack")[-1]
    assert ticket["text"].startswith("billing-pipeline: 2 alert(s)") and "for 2023-11-01" not in ticket["text"]
    assert "joins the open incident: already failing for 2023-11-01" in json.dumps(ticket["blocks"])
    alpha_pages = [p for p in receiver.pages() if p["dedup_key"] == page["dedup_key"]]
    assert len(alpha_pages) == 2  # re-triggered with the same dedup_key (PagerDuty keeps one incident)
    assert len(alpha_pages[1]["payload"]["custom_details"]["incident"]["partitions"]) == 13
    (beta_page,) = [p for p in receiver.pages() if p["dedup_key"] != page["dedup_key"]]
    assert beta_page["payload"]["custom_details"]["incident"]["sources"] == ["beta"]

    # every day of alpha arrives: one resolve for the incident, one note
    cleared = send_alerts(
        config,
        store,
        [],
        group="runs",
        now=t1 + dt.timedelta(hours=2),
        clears=[Clear(_freshness_alert(config, d).key, d.isoformat()) for d in [*days, dt.date(2023, 11, 13)]],
    )
    assert cleared.resolved and [r["dedup_key"] for r in receiver.pages("resolve")] == [page["dedup_key"]]
    assert "resolved: freshness_alpha failed on raw_line_items for 2023-11-01" in receiver.by_path("/slack")[-1]["text"]

    # a later incident of the same cause: its own dedup_key, and only its day in the ticket
    t2 = t1 + dt.timedelta(days=3)
    send_alerts(config, store, [_freshness_alert(config, dt.date(2023, 11, 16))], group="freshness", now=t2)
    newest = receiver.pages("trigger")[-1]
    assert newest["dedup_key"] not in (page["dedup_key"], beta_page["dedup_key"])
    assert newest["payload"]["custom_details"]["incident"]["partitions"] == ["2023-11-16"]
    assert receiver.by_path("/slack")[-1]["text"].startswith("billing-pipeline: 1 alert(s) (1 paged)")


def test_dedup_cooldown_one_offs_and_a_missing_routing_key(tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    config = load_config(
        write_config(
            tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}], alerts=_alerts_config(receiver, cooldown=30)
        )
    )
    store = Store()
    now = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    monkeypatch.delenv("TEST_PAGERDUTY_ROUTING_KEY", raising=False)
    report = send_alerts(
        config, store, [_page("p1"), _page("t1", route="ticket"), _page("t1", route="ticket")], group="run 1", now=now
    )
    assert any("TEST_PAGERDUTY_ROUTING_KEY" in e for e in report.errors)
    assert receiver.pages() == [] and len(receiver.by_path("/slack")) == 1
    assert receiver.by_path("/slack")[0]["text"].count("title t1") == 1  # deduplicated within the group

    monkeypatch.setenv("TEST_PAGERDUTY_ROUTING_KEY", SECRET)
    later = send_alerts(
        config, store, [_page("p1"), _page("t1", route="ticket")], group="run 2", now=now + dt.timedelta(minutes=10)
    )
    assert {a.key for a in later.suppressed} == {"p1", "t1"}  # both still open: not notified again
    assert len(receiver.pages()) == 1  # p1 waited in the outbox for its routing key, then went once
    assert len(receiver.by_path("/slack")) == 1

    # t1 passes, fails again within the cooldown (flapping): no new ticket; after the cooldown: a new one
    send_alerts(config, store, [], group="run 3", now=now + dt.timedelta(minutes=11), clears=[Clear("t1", DAY)])
    flapping = send_alerts(
        config, store, [_page("t1", route="ticket")], group="run 4", now=now + dt.timedelta(minutes=12)
    )
    assert [a.key for a in flapping.suppressed] == ["t1"]
    after = send_alerts(config, store, [_page("t1", route="ticket")], group="run 5", now=now + dt.timedelta(minutes=45))
    assert [a.key for a in after.sent] == ["t1"]

    # a one-off (an anomaly) is notified once, however often its day is re-run
    one_off = _page("a1", route="ticket", stateful=False)
    assert [a.key for a in send_alerts(config, store, [one_off], group="run 6", now=now).sent] == ["a1"]
    assert send_alerts(config, store, [one_off], group="run 7", now=now + dt.timedelta(days=3)).sent == []


def test_every_sli_and_a_failed_run_have_a_runbook_section_in_the_readme() -> None:
    readme = README.read_text()
    missing = [name for name in [*SLO_DEFAULTS, RUN_FAILURE] if f'<a id="{runbook_anchor(name)}"></a>' not in readme]
    assert missing == []


def test_a_day_failing_for_another_reason_resolves_the_old_page_and_pages_the_new_cause(
    tmp_path: Path, receiver: Receiver, routing_key: str
) -> None:
    config = load_config(
        write_config(tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}], alerts=_alerts_config(receiver))
    )
    store, now = Store(), dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)

    def failed(run_id: str, step: str, error: str) -> Alert:
        cls = error.split(":")[0]
        return run_failure_alert("billing_daily", run_id, DAY, "Steps failed", [StepFailure(step, cls, error)])

    send_alerts(config, store, [failed("r1", "raw_line_items", "OSError: s3://bucket/a.csv: timed out")], "r1", now)
    (first,) = receiver.pages("trigger")
    assert first["payload"]["class"] == "billing_daily failed at raw_line_items (OSError)"
    send_alerts(config, store, [failed("r2", "reconciliation_deltas", "KeyError: 'amount'")], "r2", now)
    assert [r["dedup_key"] for r in receiver.pages("resolve")] == [first["dedup_key"]]
    second = receiver.pages("trigger")[-1]
    assert second["dedup_key"] != first["dedup_key"] and "KeyError" in second["payload"]["summary"]
    ticket = receiver.by_path("/slack")[-1]["text"]
    assert "resolved: billing_daily failed at raw_line_items (OSError)" in ticket and "KeyError" in ticket
    again = send_alerts(config, store, [failed("r3", "reconciliation_deltas", "KeyError: 'amount'")], "r3", now)
    assert again.sent == [] and len(receiver.pages()) == 3  # the same cause again: still the open page
