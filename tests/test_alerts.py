"""Alert rules, the alert payload templates, the schedules' single source (config = prefect.yaml) and the
webhook receiver, without a Prefect server (tests/integration/test_schedules_alerts.py runs them on the stack)."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pipeline import alerts
from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def summary(psi: dict[str, float]) -> dict:
    """The parts of a scoring summary (pipeline.scoring.summarize) that the drift rule reads."""
    ranked = sorted(psi.items(), key=lambda kv: kv[1], reverse=True)
    return {
        "drift": {"max_psi": ranked[0][1], "top_psi": [{"feature": f, "psi": v} for f, v in ranked[:5]]},
        "psi": psi,
        "model": "churn-adventureworks",
        "version": 3,
        "as_of": "2014-06-30",
        "customers": 812,
    }


def test_drift_alert_only_above_the_threshold_and_counts_the_features_over_it():
    drifted = summary({"orders_count": 0.9, "total_due_mean": 0.3, "month": 0.01})
    alert = alerts.drift_alert(drifted, threshold=0.25)
    assert alert is not None
    assert (alert["max_psi"], alert["features_over_threshold"], alert["version"]) == (0.9, 2, 3)
    assert alert["top_psi"][0] == {"feature": "orders_count", "psi": 0.9}
    assert alerts.drift_alert(drifted, threshold=0.9) is None  # equal is not above
    assert alerts.drift_alert(summary({"month": 0.01}), threshold=0.25) is None


def test_webhook_url_from_config_first_then_alert_webhook_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    assert alerts.webhook_url(load_config()) is None
    monkeypatch.setenv(alerts.WEBHOOK_ENV, "http://receiver:8080/env")
    assert alerts.webhook_url(load_config()) == "http://receiver:8080/env"
    cfg = load_config(overrides={"alerts": {"webhook_url": "http://receiver:8080/config"}})
    assert alerts.webhook_url(cfg) == "http://receiver:8080/config"


def test_the_webhook_url_is_masked_like_a_secret():
    from pipeline.masking import has_secret

    assert has_secret("webhook_url", "https://hooks.example/T000/B000/XXXX")


def render(template: str, context: dict) -> dict:
    """Render an automation payload as Prefect's server does (its template engine and filters)."""
    from prefect.server.events.actions import JinjaTemplateAction
    from prefect.server.utilities.user_templates import render_user_template_sync

    JinjaTemplateAction._register_filters_if_needed()
    return json.loads(render_user_template_sync(template, context))


def test_failure_payload_is_json_with_the_run_name_state_message_and_link(monkeypatch: pytest.MonkeyPatch):
    from prefect.server.schemas.core import Flow, FlowRun
    from prefect.server.schemas.states import Failed
    from prefect.settings import PREFECT_UI_URL, temporary_settings

    from pipeline.ops.alerts import FAILURE_PAYLOAD

    run = FlowRun(id=uuid.uuid4(), name="gentle-heron", flow_id=uuid.uuid4(), state=Failed(message='no table "orders"\nat extract'))
    with temporary_settings({PREFECT_UI_URL: "http://prefect.example:4200"}):
        body = render(FAILURE_PAYLOAD, {"flow_run": run, "flow": Flow(name="training")})
    assert body == {
        "alert": "flow run failed",
        "flow": "training",
        "flow_run": "gentle-heron",
        "flow_run_id": str(run.id),
        "url": f"http://prefect.example:4200/runs/flow-run/{run.id}",
        "state": "Failed",
        "message": 'no table "orders"\nat extract',
    }


def test_drift_payload_carries_the_event_payload():
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.schemas.core import FlowRun

    from pipeline.ops.alerts import DRIFT_PAYLOAD

    run = FlowRun(id=uuid.uuid4(), name="brisk-otter", flow_id=uuid.uuid4())
    drift = alerts.drift_alert(summary({"orders_count": 0.9}), threshold=0.25)
    resource = {"prefect.resource.id": f"prefect.flow-run.{run.id}"}
    event = ReceivedEvent(id=uuid.uuid4(), occurred=datetime.now(UTC), event=alerts.DRIFT_EVENT, resource=resource, payload=drift)
    body = render(DRIFT_PAYLOAD, {"flow_run": run, "event": event})
    assert (body["alert"], body["flow_run"], body["drift"]) == ("scoring drift", "brisk-otter", drift)


def test_schedules_come_from_the_config_and_prefect_yaml_repeats_them():
    from pipeline.ops.schedules import config_schedules

    cfg = load_config()
    deployments = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    for name, [schedule] in config_schedules(cfg).items():
        [in_yaml] = deployments[name]["schedules"]
        assert (in_yaml["cron"], in_yaml["timezone"], in_yaml["slug"]) == (schedule.cron, schedule.timezone, schedule.slug)
    assert config_schedules(cfg)["training"][0].cron == cfg.training.cron == "0 3 * * 1"


@pytest.fixture
def receiver(tmp_path: Path):
    sys.path.insert(0, str(ROOT / "services"))
    try:
        import webhook_receiver
    finally:
        sys.path.remove(str(ROOT / "services"))

    def start(log: Path):
        server = webhook_receiver.make_server("127.0.0.1", 0, log)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    started: list = []
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_receiver_records_posts_and_keeps_them_across_a_restart(receiver, tmp_path: Path):
    log = tmp_path / "calls.jsonl"
    url = receiver(log)
    request = urllib.request.Request(f"{url}/alert", data=b'{"flow_run": "x"}', headers={"Content-Type": "application/json"})
    assert json.load(urllib.request.urlopen(request)) == {"recorded": 1}
    urllib.request.urlopen(urllib.request.Request(f"{url}/alert", data=b"not json"))
    restarted = receiver(log)
    calls = json.load(urllib.request.urlopen(f"{restarted}/calls"))
    assert [(c["path"], c["body"]) for c in calls] == [("/alert", {"flow_run": "x"}), ("/alert", "not json")]
    assert urllib.request.urlopen(f"{restarted}/health").read() == b"ok"
    assert len(log.read_text().splitlines()) == 2
