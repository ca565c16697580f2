"""The alert automations on a Prefect server: a failed or crashed training/scoring run, and scoring drift.

Prefect delivers the alerts itself (its automation service POSTs through a Webhook block), so an
alert is sent even when the flow-run process died before it could say anything. Created or
updated by `stack up` and `python -m pipeline deploy` when a webhook URL is configured
(`pipeline.alerts.webhook_url`); removed when it is not, so unsetting the URL turns alerts off.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline import alerts
from pipeline.ops.deployments import prefect_client, prefect_settings

WEBHOOK_BLOCK = "churn-alerts"
FAILURE_AUTOMATION = "churn: training or scoring run failed"
DRIFT_AUTOMATION = "churn: scoring drift"

# JSON bodies rendered by Prefect (Jinja, `tojson` quotes and escapes); `flow_run` is the run the
# triggering event names, `ui_url` its page in the Prefect UI (the server's PREFECT_UI_URL)
_RUN_FIELDS = '"flow_run": {{ flow_run.name|tojson }}, "flow_run_id": {{ flow_run.id|string|tojson }}, "url": {{ flow_run|ui_url|tojson }}'
FAILURE_PAYLOAD = (
    '{"alert": "flow run {{ flow_run.state.name|lower }}", "flow": {{ flow.name|tojson }}, ' + _RUN_FIELDS + ", "
    '"state": {{ flow_run.state.name|tojson }}, "message": {{ flow_run.state.message|tojson }}}'
)
DRIFT_PAYLOAD = '{"alert": "scoring drift", "flow": "scoring", ' + _RUN_FIELDS + ', "drift": {{ event.payload|tojson }}}'


def _failure_trigger() -> Any:
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect={f"prefect.flow-run.{state}" for state in alerts.FAILED_STATES},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(alerts.ALERTED_FLOWS)},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def _drift_trigger() -> Any:
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(expect={alerts.DRIFT_EVENT}, posture=Posture.Reactive, threshold=1, within=timedelta(0))


def _save_webhook_block(webhook_url: str) -> Any:
    """The Webhook block holding the URL (stored as a secret by Prefect); returns its document id."""
    from prefect.blocks.webhook import Webhook

    block = Webhook(url=webhook_url, headers={"Content-Type": "application/json"})
    return block.save(WEBHOOK_BLOCK, overwrite=True)


def _upsert(client: Any, automation: Any) -> None:
    """One automation of this name: updated in place if present (extra copies deleted), else created."""
    existing = client.read_automations_by_name(automation.name)
    if not existing:
        client.create_automation(automation)
        return
    client.update_automation(existing[0].id, automation)
    for extra in existing[1:]:
        client.delete_automation(extra.id)


def ensure_alerts(api_url: str, webhook_url: str | None, auth: str | None = None) -> list[str]:
    """Create or update the alert automations posting to `webhook_url`; with None, delete them.

    Idempotent: each automation and the block are found by name. Returns the automations' names.
    """
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore

    wanted = {
        FAILURE_AUTOMATION: ("a training or scoring flow run ended Failed or Crashed", _failure_trigger(), FAILURE_PAYLOAD),
        DRIFT_AUTOMATION: ("a scoring run's largest feature PSI exceeded alerts.drift_psi", _drift_trigger(), DRIFT_PAYLOAD),
    }
    with prefect_client(api_url, auth) as client:
        if webhook_url is None:
            for name in wanted:
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)
            return []
        with prefect_settings(api_url, auth):
            block_id = _save_webhook_block(webhook_url)
        for name, (description, trigger, payload) in wanted.items():
            action = CallWebhook(block_document_id=block_id, payload=payload)
            _upsert(client, AutomationCore(name=name, description=description, trigger=trigger, actions=[action]))
    return list(wanted)
