"""The local scale-out stack: health, pool, deployments, a run on a worker, idempotence, down."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from pipeline.cli import main
from pipeline.ops.deployments import DEFAULT_DEPLOYMENTS, DEPLOYMENT_QUEUES, prefect_client, register_deployments
from pipeline.ops.servers import start_seaweedfs
from pipeline.ops.stack import down, status, up
from pipeline.ops.state import StackError, StackInfo, StackSettings
from pipeline.ops.supervise import descendants, process_running
from pipeline.storage import S3Settings, S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]

SMOKE_FLOW = '''
import json, logging, os
from prefect import flow


@flow(name="stack-smoke")
def smoke(tag: str) -> None:
    """Reads the pipeline config from the worker's env and writes what it saw to S3."""
    from pipeline.config import load_config
    from pipeline.storage import S3Settings, open_store

    cfg = load_config()
    log = logging.getLogger("pipeline")
    log.setLevel(logging.INFO)
    log.info("smoke %s in pid %s", tag, os.getpid())
    seen = {
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "dispatch": cfg.tuning.dispatch,
        "artifact_location": cfg.tracking.artifact_location,
        "tracking_uri": cfg.tracking.tracking_uri,
        "optuna_host": cfg.tuning.storage.rsplit("@", 1)[-1],
    }
    store = open_store(cfg.storage.uri, S3Settings(endpoint_url=cfg.storage.s3_endpoint_url, region=cfg.storage.s3_region))
    store.put_bytes(f"smoke/{tag}.json", json.dumps(seen).encode())
'''


def _wait_final(client: Any, flow_run_id: UUID, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout} s (state {run.state})")


def _listening(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_stack_is_healthy_with_pool_deployments_and_workers(stack: StackInfo) -> None:
    from prefect.client.schemas.objects import WorkerStatus

    rows = {r.name: r for r in status(stack.state_dir)}
    own_s3 = set() if os.environ.get("TEST_S3_ENDPOINT") else {"seaweedfs"}
    assert set(rows) == {"prefect-server", "mlflow", "worker-1", "worker-2", "trainer"} | own_s3
    assert all(r.running for r in rows.values()), rows
    assert all(r.healthy for r in rows.values() if r.url), rows
    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        assert client.read_work_pool(stack.work_pool).type == "process"
        online = {w.name for w in client.read_workers_for_work_pool(stack.work_pool) if w.status == WorkerStatus.ONLINE}
        assert online == {"worker-1", "worker-2", "trainer"}
        queues = {"training/training": "training", "tuning-shard/tuning-shard": "default"}
        for full_name, queue in queues.items():
            deployment = client.read_deployment_by_name(full_name)
            assert deployment.work_pool_name == stack.work_pool and deployment.work_queue_name == queue
            assert deployment.parameters == {} and deployment.job_variables == {}
            assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": stack.project_dir}}]


def test_throwaway_flow_runs_on_a_worker_with_the_stack_env(stack_api: StackInfo, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    (tmp_path / "smoke_flow.py").write_text(SMOKE_FLOW)
    stack = stack_api
    assert register_deployments(
        stack.prefect_api_url, tmp_path, {"smoke": "smoke_flow.py:smoke"}, stack.work_pool, auth=stack.secrets.prefect_auth
    ) == ["stack-smoke/smoke"]
    tag = f"t{time.time_ns()}"
    started = time.monotonic()
    flow_run = run_deployment("stack-smoke/smoke", parameters={"tag": tag}, timeout=0)
    with get_client(sync_client=True) as client:
        run = _wait_final(client, flow_run.id)
        print(f"smoke run finished in {time.monotonic() - started:.1f} s")
        assert run.state.is_completed(), run.state
        deadline = time.monotonic() + 15  # logs arrive in batches of about 2 s
        while time.monotonic() < deadline:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
            if any(log.name == "pipeline" and tag in log.message for log in logs):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no `pipeline` log line in the run's logs: {[(log.name, log.message) for log in logs]}")

    settings = S3Settings(
        endpoint_url=stack.s3_endpoint, access_key_id=stack.secrets.s3_access_key, secret_access_key=stack.secrets.s3_secret_key
    )
    seen = json.loads(S3Store(stack.data_bucket, settings=settings).get_bytes(f"smoke/{tag}.json"))
    assert seen["ppid"] in stack.worker_pids.values()
    assert Path(seen["cwd"]) == tmp_path.resolve()
    assert seen["dispatch"] == "prefect" and seen["artifact_location"] is None
    assert seen["tracking_uri"] == stack.mlflow_url
    assert seen["optuna_host"] == stack.secrets.optuna_storage.rsplit("@", 1)[-1]


def test_mlflow_proxies_artifacts_to_s3_without_client_credentials(stack_api: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_api
    from mlflow.tracking import MlflowClient

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a broken proxy fails now, not after 4.5 min
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    experiment = client.create_experiment(f"stack-test-{time.time_ns()}")
    run = client.create_run(experiment)
    client.log_text(run.info.run_id, "hello", "notes/hello.txt")
    client.set_terminated(run.info.run_id)

    settings = S3Settings(
        endpoint_url=stack.s3_endpoint, access_key_id=stack.secrets.s3_access_key, secret_access_key=stack.secrets.s3_secret_key
    )
    keys = S3Store(stack.mlflow_bucket, settings=settings).list()
    assert any(k.endswith(f"{run.info.run_id}/artifacts/notes/hello.txt") for k in keys), keys


def test_secrets_stay_out_of_logs_state_and_deployments(stack: StackInfo) -> None:
    assert stack.secret_values(), "the stack should have an S3 secret and a MySQL password"
    texts = {p.name: p.read_text(errors="replace") for p in (stack.state_dir / "logs").glob("*.log")}
    texts["stack.json"] = (stack.state_dir / "stack.json").read_text()
    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        texts["deployments"] = "".join(d.model_dump_json() for d in client.read_deployments())
    for where, text in texts.items():
        for secret in stack.secret_values():
            assert secret not in text, f"secret found in {where}"
    assert (stack.state_dir / "secrets.json").stat().st_mode & 0o077 == 0


def test_cli_status_and_env(stack: StackInfo, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("status", "env"):
        assert main(["stack", command, "--state-dir", str(stack.state_dir)]) == 0
    out = capsys.readouterr().out
    assert "prefect-server" in out and "healthy" in out
    exported = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    assert exported["PREFECT_API_URL"] == stack.prefect_api_url
    assert exported["PIPELINE__TRACKING__ARTIFACT_LOCATION"] == "''"
    assert exported["AWS_SECRET_ACCESS_KEY"] == stack.secrets.s3_secret_key
    assert exported["PREFECT_API_AUTH_STRING"] == stack.secrets.prefect_auth


def test_up_again_is_idempotent(stack: StackInfo, stack_settings: StackSettings) -> None:
    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        before = {d.name: d.id for d in client.read_deployments()}
    started = time.monotonic()
    again = up(stack_settings)
    print(f"second up took {time.monotonic() - started:.1f} s")
    assert {n: p.pid for n, p in again.processes.items()} == {n: p.pid for n, p in stack.processes.items()}
    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        assert {d.name: d.id for d in client.read_deployments()} == before
        assert len(client.read_workers_for_work_pool(stack.work_pool)) == 3  # 2 shard workers + trainer
        assert [p.name for p in client.read_work_pools()] == [stack.work_pool]


@pytest.mark.parametrize("broken", ["PostgreSQL", "MySQL", "S3"])
def test_unreachable_service_is_named_without_password(
    broken: str, stack_settings: StackSettings, free_tcp_port: int, tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_tcp_port}"
    changes = {
        "PostgreSQL": {"postgres_url": f"postgresql+psycopg2://u:hunter2@{dead}/postgres"},
        "MySQL": {"mysql_url": f"mysql+pymysql://u:hunter2@{dead}/optuna"},
        "S3": {"s3_endpoint": f"http://{dead}", "s3_access_key": "key", "s3_secret_key": "hunter2"},
    }[broken]
    settings = StackSettings(**{**vars(stack_settings), "state_dir": tmp_path, **changes})
    started = time.monotonic()
    with pytest.raises(StackError) as err:
        up(settings)
    message = str(err.value)
    assert message.startswith(f"{broken} unreachable") and dead in message and "hunter2" not in message
    assert time.monotonic() - started < 15
    assert status(tmp_path) == []  # nothing was started


def test_prefect_yaml_deploys_to_the_pool_with_a_templated_directory(
    stack_api: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prefect deploy --all` with the project's prefect.yaml (deployment names prefixed so the
    stack's own stay untouched); the pull step resolves the directory from the worker env."""
    from prefect.deployments.steps.core import run_steps

    stack = stack_api

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert {d["name"]: d["entrypoint"] for d in config["deployments"]} == DEFAULT_DEPLOYMENTS
    assert {d["name"]: d["work_pool"]["work_queue_name"] for d in config["deployments"]} == DEPLOYMENT_QUEUES
    assert config["build"] is None and config["push"] is None
    for deployment in config["deployments"]:
        deployment["name"] = f"yaml-{deployment['name']}"
    (tmp_path / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_PROJECT_DIR"} | {
        "PREFECT_API_URL": stack.prefect_api_url,
        "PREFECT_API_AUTH_STRING": stack.secrets.prefect_auth,
    }
    command = [
        str(Path(sys.executable).parent / "prefect"),
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(tmp_path / "prefect.yaml"),
    ]
    deployed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        for full_name, queue in (("training/yaml-training", "training"), ("tuning-shard/yaml-tuning-shard", "default")):
            deployment = client.read_deployment_by_name(full_name)
            assert deployment.work_pool_name == stack.work_pool and deployment.parameters == {}
            assert deployment.work_queue_name == queue
    placeholder = [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PIPELINE_PROJECT_DIR }}"}}]
    assert deployment.pull_steps == placeholder
    monkeypatch.chdir(tmp_path)  # run_steps chdirs; monkeypatch restores the cwd afterwards
    monkeypatch.setenv("PIPELINE_PROJECT_DIR", stack.env["PIPELINE_PROJECT_DIR"])
    assert asyncio.run(run_steps(deployment.pull_steps, {}, print_function=lambda *_: None)) == {"directory": stack.project_dir}
    assert Path.cwd() == ROOT


@pytest.mark.stack_down
def test_down_stops_every_process_and_is_idempotent(stack: StackInfo) -> None:
    # a worker started again by hand with the stack's environment: not in the state file
    stray = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", stack.work_pool, "--name", "by-hand"],
        env={**os.environ, **stack.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids = {p.pid for p in stack.processes.values()} | {stray.pid}
    pids |= {child for pid in pids for child in descendants(pid)}
    assert "seaweedfs" in stack.processes or os.environ.get("TEST_S3_ENDPOINT")
    started = time.monotonic()
    held = down(stack.state_dir)
    print(f"stack down in {time.monotonic() - started:.1f} s")
    stray.poll()
    assert held == {}
    assert [pid for pid in pids if process_running(pid)] == []
    for url in (stack.prefect_api_url, stack.mlflow_url, stack.s3_endpoint if "seaweedfs" in stack.processes else None):
        assert url is None or not _listening(url), url
    assert status(stack.state_dir) == []
    down(stack.state_dir)


def test_failed_start_names_service_url_and_log_tail(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(StackError) as err:
            start_seaweedfs(tmp_path, "127.0.0.1", port, "key", "secret-of-the-test", timeout=30)
    message = str(err.value)
    assert f"SeaweedFS S3 at http://127.0.0.1:{port}/healthz exited" in message
    assert "last lines of" in message and f"port {port}" in message and "secret-of-the-test" not in message
