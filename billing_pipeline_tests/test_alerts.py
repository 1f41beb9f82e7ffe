"""Alert routing to a real HTTP receiver on 127.0.0.1: Slack-compatible tickets, PagerDuty v2 pages,
grouping per run, deduplication, cooldown, and secrets kept out of billing.yaml."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
from dagster import build_run_status_sensor_context, instance_for_test

from billing_pipeline.alerts import Alert, send_alerts
from billing_pipeline.config import load_config
from billing_pipeline.definitions import JOB_NAME, build_definitions
from billing_pipeline.sensors import ALERTS_ON_FAILURE, ALERTS_ON_SUCCESS
from billing_pipeline.storage import Store
from resources import BillingResource

from .conftest import write_config, write_data_export
from .ops_fixtures import cur2_month_frame

SECRET = "R0UT1NGKEY-not-in-the-yaml"
DAY = "2023-11-03"


class Receiver:
    """An HTTP server in a thread that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[tuple[str, dict]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(202 if self.path == "/pd" else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def by_path(self, path: str) -> list[dict]:
        return [body for p, body in self.received if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def routing_key(monkeypatch) -> str:
    monkeypatch.setenv("TEST_PAGERDUTY_ROUTING_KEY", SECRET)
    return SECRET


def _alerts_config(receiver: Receiver, cooldown: float = 60.0) -> dict:
    return {"ticket": {"kind": "slack", "url": f"{receiver.url}/slack"},
            "page": {"kind": "pagerduty", "url": f"{receiver.url}/pd", "routing_key_env": "TEST_PAGERDUTY_ROUTING_KEY"},
            "cooldown_minutes": cooldown, "dagster_url": "http://dagster.example:3000"}


def _config_path(tmp_path: Path, receiver: Receiver, frame: pl.DataFrame, **extra) -> Path:
    root = tmp_path / "landing" / "alpha"
    write_data_export(root, "exec-1", {"part-1.csv.gz": frame}, period="2023-11", file_format="csv",
                      export_time=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return write_config(tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}],
                        start_date="2023-10-01", alerts=_alerts_config(receiver), **extra)


def test_failed_checks_of_a_run_become_one_ticket_and_pages_go_to_pagerduty(tmp_path: Path, receiver: Receiver,
                                                                             routing_key: str) -> None:
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)]).drop("resource_tags_user_team")
    config_path = _config_path(tmp_path, receiver, frame,
                               slo={"unallocated_percent": {"target": 50},
                                    "unallocated_jump_points": {"target": -1, "route": "page"}})
    defs = build_definitions(config_path)
    resources = {"billing": BillingResource(config_path=str(config_path))}
    with instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key=DAY, instance=instance)
        sensor = defs.resolve_sensor_def(ALERTS_ON_SUCCESS)
        for _ in range(2):  # the same run evaluated twice (a daemon restart) alerts once
            context = build_run_status_sensor_context(
                sensor_name=ALERTS_ON_SUCCESS, dagster_event=result.get_run_success_event(),
                dagster_instance=instance, dagster_run=result.dagster_run, resources=resources)
            sensor(context)

    tickets, pages = receiver.by_path("/slack"), receiver.by_path("/pd")
    assert len(tickets) == 1 and len(pages) == 1
    text = tickets[0]["text"]
    assert "sli_unallocated_percent failed on tag_enriched_costs for 2023-11-03" in text
    assert "100.00% of the day's billed cost has no owner" in text and tickets[0]["blocks"]
    page = pages[0]
    assert page["routing_key"] == SECRET and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical" and page["payload"]["source"] == "billing-pipeline"
    assert [a["title"] for a in page["payload"]["custom_details"]["alerts"]] == [
        "sli_unallocated_jump failed on tag_enriched_costs for 2023-11-03"]
    assert len(page["dedup_key"]) == 32
    assert SECRET not in config_path.read_text()


def test_a_failed_run_pages_as_a_pipeline_outage(tmp_path: Path, receiver: Receiver, routing_key: str) -> None:
    frame = cur2_month_frame("2023-11", days=[dt.date(2023, 11, 3)])
    root = tmp_path / "landing" / "alpha"
    write_data_export(root, "exec-1", {"part-1.csv.gz": frame}, period="2023-11", file_format="csv")
    invoices = tmp_path / "invoices"
    invoices.mkdir()
    (invoices / "2023-11.csv").write_text("id,amount\nINV-1,12.50\n")  # not the invoice layout: a step fails
    config_path = write_config(tmp_path, [{"name": "alpha", "provider": "aws_cur2", "url": str(root)}],
                               start_date="2023-10-01", alerts=_alerts_config(receiver))
    defs = build_definitions(config_path)
    with instance_for_test() as instance:
        result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key=DAY, instance=instance,
                                                                   raise_on_error=False)
        assert not result.success
        context = build_run_status_sensor_context(
            sensor_name=ALERTS_ON_FAILURE, dagster_event=result.get_run_failure_event(), dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"billing": BillingResource(config_path=str(config_path))}).for_run_failure()
        defs.resolve_sensor_def(ALERTS_ON_FAILURE)(context)
    pages = receiver.by_path("/pd")
    assert len(pages) == 1
    alert = pages[0]["payload"]["custom_details"]["alerts"][0]
    assert alert["title"] == "billing_daily failed for 2023-11-03" and alert["partition"] == DAY
    assert len(receiver.by_path("/slack")) == 1  # the outage is also visible in the ticket channel


def _alert(key: str, route: str) -> Alert:
    return Alert(key=key, route=route, severity="ERROR" if route == "page" else "WARN", title=f"title {key}",
                 summary=f"summary {key}", partition=DAY, origin="test")


def test_dedup_cooldown_and_a_missing_routing_key(tmp_path: Path, receiver: Receiver, monkeypatch) -> None:
    config = load_config(write_config(tmp_path, [{"name": "a", "provider": "aws_cur2", "url": "x"}],
                                      alerts=_alerts_config(receiver, cooldown=30)))
    store = Store()
    now = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    monkeypatch.delenv("TEST_PAGERDUTY_ROUTING_KEY", raising=False)
    report = send_alerts(config, store, [_alert("p1", "page"), _alert("t1", "ticket"), _alert("t1", "ticket")],
                         group="run 1", now=now)
    assert any("TEST_PAGERDUTY_ROUTING_KEY" in e for e in report.errors)
    assert receiver.by_path("/pd") == [] and len(receiver.by_path("/slack")) == 1
    assert receiver.by_path("/slack")[0]["text"].count("title t1") == 1  # deduplicated within the group

    monkeypatch.setenv("TEST_PAGERDUTY_ROUTING_KEY", SECRET)
    later = send_alerts(config, store, [_alert("p1", "page"), _alert("t1", "ticket")], group="run 2",
                        now=now + dt.timedelta(minutes=10))
    assert [a.key for a in later.suppressed] == ["t1"]  # t1 was sent 10 min ago: cooldown
    assert len(receiver.by_path("/pd")) == 1  # p1 never reached the pager, so it is not in the pager's cooldown
    assert len(receiver.by_path("/slack")) == 1  # ... but it is in the ticket channel's, like t1
    after = send_alerts(config, store, [_alert("t1", "ticket")], group="run 3", now=now + dt.timedelta(minutes=31))
    assert [a.key for a in after.sent] == ["t1"] and len(receiver.by_path("/slack")) == 2
