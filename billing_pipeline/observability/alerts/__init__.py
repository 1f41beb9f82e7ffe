"""Alert routing: failed checks, cost anomalies and failed runs become tickets (Slack-compatible
incoming webhook) or pages (PagerDuty Events API v2), grouped into incidents, resolved when they pass
again, and delivered through a persistent outbox.

Routes come from `billing.yaml` (`alerts:`), per SLI from `slo:`: pages for pipeline outages (a failed
run), data later than its SLA (freshness), large unallocated jumps, contract breaks and denied reads;
tickets for reconciliation deltas, backfill backlog, anomalies and the other SLIs. Secrets stay in the
environment: `url_env` / `routing_key_env` name variables, never values, and are read when a delivery
is attempted (the outbox in the lake never holds them).

- **Incidents.** A failed check (or a failed run) is open until the same check passes again for the same
  partition (or the partition's run succeeds). Open alerts of one cause (one check, or one step failing
  with one error class) form one incident: twelve overdue days of a source are one page listing them,
  a thirteenth joins it (PagerDuty deduplicates the trigger by `dedup_key`) and the ticket channel hears
  of the new day only. When every partition of an incident passes, the page is resolved (Events v2
  `resolve`, same `dedup_key`) and the ticket channel gets a note.
- **Outbox.** Every message is queued in the state before it is posted; a delivery that fails (HTTP
  error, connection refused, no routing key in the environment) stays queued and is retried with
  exponential backoff (`retry_initial_seconds` doubling up to `retry_max_seconds`) by the
  `billing_alerts_outbox` sensor and every later send. Nothing is dropped; messages of one PagerDuty
  incident keep their order (a resolve never overtakes its trigger).
- **What a human needs.** Each alert names source, day, file and column when the lake's state or the
  check's text knows them (held-back reasons, file problems, layer failures, a failed step's error),
  and links the runbook section of its SLI (`<runbook_url>#runbook-<sli>`) and the Dagster run.
- **One way out.** `route` is the only function that notifies, resolves and delivers: the run status
  sensors (through `route_finished_run`, which scripts and the demo call for their own runs; a run is
  routed once, whoever asks first), the freshness sensor and the outbox sensor all call it.

Modules: `model` (alerts, clears, keys, links), `evidence` (source, day, file and column from the lake's
state), `outcomes` (checks and anomalies as alerts), `runs` (a finished run's outcomes), `payloads`
(Slack and PagerDuty Events v2), `outbox` (the state file and delivery with backoff), `incidents`
(dedup, cooldown, grouping, resolution), `routing` (`route`).

State: `<lake>/_state/alerts/state.json` (open incidents, what was notified and when, routed runs, the
outbox), so a restart of the daemon neither re-pages nor loses a queued message.
"""

from billing_pipeline.observability.alerts.evidence import evidence_from_text, state_evidence, with_evidence
from billing_pipeline.observability.alerts.model import (
    RUN_FAILURE,
    Alert,
    AlertDeliveryError,
    Clear,
    Evidence,
    Poster,
    SendReport,
    alert_key,
    runbook_anchor,
    runbook_link,
)
from billing_pipeline.observability.alerts.outbox import flush_outbox, load_state, post_json, state_url
from billing_pipeline.observability.alerts.outcomes import anomaly_alerts, check_alert, check_outcome
from billing_pipeline.observability.alerts.payloads import (
    alert_entry,
    pagerduty_payload,
    pagerduty_resolve,
    slack_payload,
)
from billing_pipeline.observability.alerts.routing import route, route_finished_run, send_alerts
from billing_pipeline.observability.alerts.runs import StepFailure, alerts_for_run, outcomes_for_run, run_failure_alert

__all__ = [
    "RUN_FAILURE",
    "Alert",
    "AlertDeliveryError",
    "Clear",
    "Evidence",
    "Poster",
    "SendReport",
    "StepFailure",
    "alert_entry",
    "alert_key",
    "alerts_for_run",
    "anomaly_alerts",
    "check_alert",
    "check_outcome",
    "evidence_from_text",
    "flush_outbox",
    "load_state",
    "outcomes_for_run",
    "pagerduty_payload",
    "pagerduty_resolve",
    "post_json",
    "route",
    "route_finished_run",
    "run_failure_alert",
    "runbook_anchor",
    "runbook_link",
    "send_alerts",
    "slack_payload",
    "state_evidence",
    "state_url",
    "with_evidence",
]
