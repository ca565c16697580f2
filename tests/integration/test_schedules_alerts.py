"""Schedules and alerts on the local stack, end to end.

`stack up` with a webhook URL creates the alert automations; a webhook receiver
(services/webhook_receiver.py) records what Prefect posts. A training run that fails inside its
flow posts exactly one alert naming the run, with its link; the scoring deployment on a short
interval schedule fires by itself, completes, and (its drift threshold set to 0) posts exactly one
drift alert; pausing the schedule with `python -m pipeline schedule pause scoring` removes the runs
it had planned.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from pipeline.ops.deployments import DEFAULT_DEPLOYMENTS, register_deployments
from pipeline.ops.stack import up
from pipeline.ops.state import StackInfo, StackSettings
from tests.integration.test_stack import _wait_final
from tests.integration.test_training_on_stack import overrides

pytestmark = [pytest.mark.integration, pytest.mark.long, pytest.mark.timeout(1500)]
ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 600  # a small training or scoring run, or the first scheduled run, on the loaded 2-core test machine
ALERT_TIMEOUT = 60  # Prefect's automation service reacts within seconds
QUIET_AFTER = 6  # seconds to wait after the first alert for a duplicate that must not come
INTERVAL = 20  # seconds between the scheduled scoring runs


class Receiver:
    """services/webhook_receiver.py in a thread of this process; read through its GET /calls."""

    def __init__(self, log: Path) -> None:
        sys.path.insert(0, str(ROOT / "services"))
        try:
            import webhook_receiver
        finally:
            sys.path.remove(str(ROOT / "services"))
        self.server = webhook_receiver.make_server("127.0.0.1", 0, log)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def calls(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/calls", timeout=10) as resp:
            return json.load(resp)

    def calls_about(self, flow_run_id: UUID) -> list[dict[str, Any]]:
        return [c for c in self.calls() if isinstance(c["body"], dict) and c["body"].get("flow_run_id") == str(flow_run_id)]

    def wait_for(self, flow_run_id: UUID) -> list[dict[str, Any]]:
        """The calls about this flow run once one has come, after QUIET_AFTER more seconds for a duplicate."""
        deadline = time.monotonic() + ALERT_TIMEOUT
        while not self.calls_about(flow_run_id):
            assert time.monotonic() < deadline, f"no alert about flow run {flow_run_id} in {ALERT_TIMEOUT} s; calls: {self.calls()}"
            time.sleep(1)
        time.sleep(QUIET_AFTER)
        return self.calls_about(flow_run_id)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    receiver = Receiver(tmp_path_factory.mktemp("webhook") / "calls.jsonl")
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(scope="module")
def alerting_stack(stack: StackInfo, stack_settings: StackSettings, receiver: Receiver) -> StackInfo:
    """The session's stack, `up` again with a webhook URL: the idempotent path a user takes to turn alerts on."""
    return up(replace(stack_settings, alert_webhook_url=f"{receiver.url}/alerts"))


@pytest.fixture
def client(alerting_stack: StackInfo, stack_api: StackInfo) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def start(deployment: str, parameters: dict[str, Any]) -> UUID:
    from prefect.deployments import run_deployment

    return run_deployment(name=deployment, parameters=parameters, timeout=0).id


def ui_link(stack: StackInfo, flow_run_id: UUID) -> str:
    return f"{stack.prefect_api_url.removesuffix('/api')}/runs/flow-run/{flow_run_id}"


def test_the_automations_exist_once_after_up_twice(alerting_stack: StackInfo, stack_settings: StackSettings, receiver: Receiver, client):
    from pipeline.ops.alerts import DRIFT_AUTOMATION, FAILURE_AUTOMATION

    up(replace(stack_settings, alert_webhook_url=f"{receiver.url}/alerts"))
    names = sorted(a.name for a in client.read_automations())
    assert names == sorted([DRIFT_AUTOMATION, FAILURE_AUTOMATION])


def test_a_training_run_failing_in_its_flow_posts_exactly_one_alert_with_its_name_and_link(
    alerting_stack: StackInfo, receiver: Receiver, client, tmp_path: Path
):
    # `check` would refuse a missing source before any run; a trigger does not check it, so it fails at prepare_source
    missing = {"data": {"url": f"sqlite:///{tmp_path}/no-such-source.db", "generate_if_missing": False}}
    flow_run_id = start("training/training", {"overrides": missing})
    run = _wait_final(client, flow_run_id, RUN_TIMEOUT)
    assert run.state.is_failed(), run.state

    [call] = receiver.wait_for(flow_run_id)
    assert call["path"] == "/alerts"
    body = call["body"]
    assert (body["alert"], body["flow"], body["flow_run"], body["state"]) == ("flow run failed", "training", run.name, "Failed")
    assert body["url"] == ui_link(alerting_stack, flow_run_id)
    assert "no-such-source.db" in body["message"] and "generate_if_missing" in body["message"]


@pytest.fixture(scope="module")
def small_model(alerting_stack: StackInfo, stack_api_module: None) -> str:
    """A registered model (version 1 of its own name), trained on the stack's trainer in one process."""
    from prefect.client.orchestration import get_client

    name = f"alerts-{secrets.token_hex(3)}"
    over = overrides(name, {"dispatch": "local", "n_trials": 2, "n_shards": 1}, {})
    # the smallest matrix (scoring is what is tested here): the machine runs many suites at once
    over["features"] = {"max_depth": 1, "agg_primitives": ["count", "mean"], "trans_primitives": [], "windows": [], "recency": False}
    with get_client(sync_client=True) as client:
        run = _wait_final(client, start("training/training", {"overrides": over}), RUN_TIMEOUT)
    assert run.state.is_completed(), run.state
    return name


@pytest.fixture(scope="module")
def stack_api_module(alerting_stack: StackInfo) -> Iterator[None]:
    """`stack_api` for module-scoped fixtures (Prefect client and MLflow login of the stack)."""
    from pipeline.ops.deployments import prefect_settings
    from pipeline.ops.state import client_env

    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            mp.setenv(key, client_env(alerting_stack)[key])
        with prefect_settings(alerting_stack.prefect_api_url, alerting_stack.secrets.prefect_auth):
            yield


@pytest.fixture
def scoring_every_interval(alerting_stack: StackInfo, small_model: str) -> Iterator[None]:
    """The scoring deployment on an INTERVAL-second schedule whose runs score with `small_model` v1 and
    report any drift (threshold 0); afterwards the config's daily cron again and no run left waiting."""
    from prefect.client.orchestration import get_client
    from prefect.schedules import Interval

    from pipeline.config import load_config
    from pipeline.ops.schedules import config_schedules

    def register(schedules: dict[str, list[Any]]) -> None:
        scoring = {"scoring": DEFAULT_DEPLOYMENTS["scoring"]}
        project = Path(alerting_stack.project_dir)
        register_deployments(
            alerting_stack.prefect_api_url,
            project,
            scoring,
            alerting_stack.work_pool,
            auth=alerting_stack.secrets.prefect_auth,
            schedules=schedules,
        )

    parameters = {
        "overrides": {"tracking": {"experiment": small_model, "registered_model": small_model}, "alerts": {"drift_psi": 0.0}},
        "version": 1,
    }
    register({"scoring": [Interval(INTERVAL, slug="test.interval", parameters=parameters)]})
    yield
    register(config_schedules(load_config()))
    with get_client(sync_client=True) as client:  # runs that were due before the pause: not left for later tests
        deployment = client.read_deployment_by_name("scoring/scoring")
        for run in runs_of(client, deployment.id):
            if run.state.type.value == "SCHEDULED":
                client.delete_flow_run(run.id)


def runs_of(client: Any, deployment_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def schedule_command(stack: StackInfo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """`python -m pipeline schedule ...` against the stack; its table's rows about scoring/scoring."""
    from pipeline.cli import main

    monkeypatch.setenv("PREFECT_API_URL", stack.prefect_api_url)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", stack.secrets.prefect_auth)
    capsys.readouterr()
    assert main(["schedule", *argv]) == 0
    return [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("scoring/scoring")]


def test_scoring_on_a_short_schedule_fires_completes_posts_one_drift_alert_and_pauses(
    alerting_stack: StackInfo, receiver: Receiver, client, scoring_every_interval, monkeypatch: pytest.MonkeyPatch, capsys
):
    deployment = client.read_deployment_by_name("scoring/scoring")
    [row] = schedule_command(alerting_stack, monkeypatch, capsys, "list", "scoring")
    assert row[1:5] == ["every", str(INTERVAL), "s", "active"]

    deadline = time.monotonic() + RUN_TIMEOUT
    while not (started := [r for r in runs_of(client, deployment.id) if r.auto_scheduled and r.state.type.value != "SCHEDULED"]):
        assert time.monotonic() < deadline, f"no scheduled scoring run started in {RUN_TIMEOUT} s"
        time.sleep(1)
    first = min(started, key=lambda r: r.expected_start_time)

    [paused] = schedule_command(alerting_stack, monkeypatch, capsys, "pause", "scoring")
    assert paused[1:5] == ["every", str(INTERVAL), "s", "paused"]
    assert [s.active for s in client.read_deployment_by_name("scoring/scoring").schedules] == [False]
    now = time.time()
    planned = [r for r in runs_of(client, deployment.id) if r.state.type.value == "SCHEDULED" and r.expected_start_time.timestamp() > now]
    assert planned == [], "pausing left future runs planned"

    run = _wait_final(client, first.id, RUN_TIMEOUT)
    assert run.state.is_completed(), run.state
    assert run.parameters["version"] == 1 and run.auto_scheduled

    [call] = receiver.wait_for(first.id)
    body = call["body"]
    assert (body["alert"], body["flow_run"], body["url"]) == ("scoring drift", run.name, ui_link(alerting_stack, first.id))
    drift = body["drift"]
    assert (
        drift["threshold"] == 0.0 and drift["max_psi"] > 0 and drift["model"] == run.parameters["overrides"]["tracking"]["registered_model"]
    )
    assert drift["version"] == 1 and drift["customers"] > 0 and drift["features_over_threshold"] >= 1
