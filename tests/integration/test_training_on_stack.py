"""The training deployment on the local stack: a trainer worker runs the training flow, which fans
the feature step (2 customer parts) and tuning out to 2 shard workers through a MySQL Optuna study; data from a PostgreSQL source, run
intermediates in S3, the model in MLflow (artifacts proxied by its server). Then the same with a
shard worker killed mid-trial: its trial goes stale, is retried by the survivor, the run completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from pipeline import feature_partitions
from pipeline.ops.state import StackInfo
from pipeline.ops.supervise import descendants
from pipeline.ops.workers import start_worker, stop_worker, wait_for_workers
from pipeline.storage import RunArtifacts, S3Settings, open_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
RUN_TIMEOUT = 360  # seconds for a training run on the 2-core test machine
FEATURES = {"agg_primitives": ["count", "sum", "mean", "max", "time_since_first"], "trans_primitives": ["month"], "max_features": 60}


def overrides(name: str, tuning: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters: no source URL (it carries a password: the workers have it in their env)."""
    return {
        "data": {"generate_if_missing": False},
        "labels": {"horizon_days": 90},
        "features": FEATURES,
        "split": {"min_rows": 20},
        "tuning": {"n_shards": 2, "n_startup_trials": 2, "heartbeat_interval": 2, **tuning},
        "model": {"num_threads": 1, **model},  # 2 shards on 2 cores
        "tracking": {"experiment": name, "registered_model": name},
    }


def slow_tuning(n_trials: int) -> dict[str, Any]:
    """Trials of a few seconds (small learning rates, no pruning), so a fault lands mid-tuning."""
    return {
        "n_trials": n_trials,
        "pruner_warmup_steps": 5000,
        "search_space": [
            {"name": "learning_rate", "type": "float", "low": 0.001, "high": 0.003, "log": True},
            {"name": "num_leaves", "type": "int", "low": 16, "high": 64},
        ],
    }


def trigger(over: dict[str, Any]) -> UUID:
    from prefect.deployments import run_deployment

    return run_deployment(name="training/training", parameters={"overrides": over}, timeout=0).id


def find_study(storage: str, run_id: str) -> Any | None:
    import optuna

    names = [n for n in optuna.get_all_study_names(storage) if n.endswith(f"-{run_id}")]
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


class ShardWatcher:
    """Which shard worker each flow-run process belongs to, seen while the run is going (they exit after)."""

    def __init__(self, stack: StackInfo):
        self.stack = stack
        self.owner: dict[int, str] = {}
        self.trainer_children: set[int] = set()

    def look(self) -> None:
        for name, pid in self.stack.worker_pids.items():
            self.owner.update(dict.fromkeys(descendants(pid), name))
        if self.stack.trainer_pid:
            self.trainer_children |= descendants(self.stack.trainer_pid)


def wait_final(
    client: Any, flow_run_id: UUID, watcher: ShardWatcher, timeout: float = RUN_TIMEOUT, on_poll: Callable[[], None] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.look()
        if on_poll:
            on_poll()
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(0.5)
    raise AssertionError(f"training run {flow_run_id} not finished after {timeout} s (state {run.state})")


def artifacts(stack: StackInfo, run_id: str) -> RunArtifacts:
    settings = S3Settings(
        endpoint_url=stack.s3_endpoint, access_key_id=stack.secrets.s3_access_key, secret_access_key=stack.secrets.s3_secret_key
    )
    return RunArtifacts(open_store(f"s3://{stack.data_bucket}", settings), run_id)


@pytest.mark.timeout(1200)  # the 2 feature-part runs add their start-up to the run
def test_training_deployment_runs_on_trainer_and_two_shard_workers(
    stack_api: StackInfo, source_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    stack = stack_api
    name = f"churn-stack-{time.time_ns()}"
    over = overrides(name, {"n_trials": 8}, {"num_boost_round": 300})
    over["features"] = {**FEATURES, "partitions": 2}  # the feature step in 2 customer parts, on the shard workers too
    started = time.monotonic()
    flow_run_id = trigger(over)
    run_id = str(flow_run_id)
    watcher = ShardWatcher(stack)
    with get_client(sync_client=True) as client:
        run = wait_final(client, flow_run_id, watcher, timeout=RUN_TIMEOUT + 240)  # + the 2 feature-part runs' start-up
        print(f"training run finished in {time.monotonic() - started:.1f} s: {run.state.name}")
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}"
        flow_runs = client.read_flow_runs()
        run_ids = [r.id for r in flow_runs if r.id == flow_run_id or r.parameters.get("run_id") == run_id]
        time.sleep(3)  # logs reach the API in batches of about 2 s
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
    shard_runs = [r for r in flow_runs if r.parameters.get("run_id") == run_id and "shard_index" in r.parameters]
    assert len(shard_runs) == 2 and all(r.state.is_completed() for r in shard_runs), [(r.name, r.state) for r in shard_runs]
    part_runs = [r for r in flow_runs if r.parameters.get("run_id") == run_id and "part" in r.parameters]
    assert len(part_runs) == 2 and all(r.state.is_completed() for r in part_runs), [(r.name, r.state) for r in part_runs]

    # the study: enough finished trials, run by the two shard workers' flow-run processes, none by the trainer
    study = find_study(stack.secrets.optuna_storage, run_id)
    assert study is not None
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 8
    pids = {t.user_attrs["pid"] for t in finished}
    assert all(t.user_attrs.get("host") for t in finished)
    assert len(pids) >= 2, pids
    assert {watcher.owner.get(pid) for pid in pids} == set(stack.worker_pids), (pids, watcher.owner)
    assert not pids & watcher.trainer_children, "trials ran in the trainer's process (shards fell back in-process)"

    # intermediates in S3 with a manifest that matches what is stored
    art = artifacts(stack, run_id)
    manifest = art.read_manifest()
    for part in ("features.parquet", "train.parquet", "test.parquet"):
        assert manifest["artifacts"][part]["schema"], part
        assert manifest["artifacts"][part]["key"] == f"runs/{run_id}/{part}"
    assert art.verify() == []
    parts = [feature_partitions.part_artifacts(art, i).read_manifest() for i in range(2)]
    assert len({p["token"] for p in parts}) == 1 and sum(p["rows"] for p in parts) == len(art.get_frame("features"))
    assert {watcher.owner.get(p["pid"]) for p in parts} <= set(stack.worker_pids), (parts, watcher.owner)
    summary = art.get_json("summary")
    X_test = art.get_frame("test").drop(columns=["churn"])

    # MLflow: registered version with the champion alias; no secret in params of the run or its shard runs
    client = MlflowClient(stack.mlflow_url)
    version = summary["model"]["version"]
    assert client.get_model_version(name, str(version)).status == "READY"
    if summary["model"]["promoted"]:
        assert client.get_model_version_by_alias(name, "champion").version == str(version)
    else:  # the selection rules may keep a model of this tiny run from the alias; they must say why
        assert summary["model"]["promotion"]["reason"], summary["model"]
    parent = client.get_run(summary["mlflow_run_id"])
    nested = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(nested) == 2 and all(r.info.status == "FINISHED" for r in nested), [(r.info.run_name, r.info.status) for r in nested]
    # each shard's trial values reach its run (sent in batches): one step per trial, all shards together every trial
    steps_logged = [m.step for r in nested for m in client.get_metric_history(r.info.run_id, "trial_roc_auc")]
    assert sorted(steps_logged) == sorted(t.number for t in finished), (steps_logged, [t.number for t in finished])
    assert len(logs) > 20, "the runs' logs did not reach the Prefect API"
    texts = {
        "prefect flow run parameters": json.dumps([r.parameters for r in flow_runs], default=str),
        "prefect flow run logs": json.dumps([log.message for log in logs]),
        "mlflow params": json.dumps([r.data.params for r in (parent, *nested)]),
        "mlflow tags": json.dumps([r.data.tags for r in (parent, *nested)]),
        "stored summary": json.dumps(summary, default=str),
        "mlflow artifacts": _mlflow_text_artifacts(client, parent.info.run_id),
    }
    assert parent.data.params["tuning.storage"].startswith("mysql+pymysql://")
    assert ":***@" in parent.data.params["data.url"], parent.data.params["data.url"]
    secrets_ = stack.secret_values()
    assert any(s in source_url for s in secrets_), "the source password must be one of the secrets looked for"
    for where, text in texts.items():
        for secret in secrets_:
            assert secret not in text, f"secret found in {where}"

    # the model's files come through the MLflow server: no S3 credentials in this process
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a broken proxy fails now, not after 4.5 min
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack.mlflow_url)  # other tests of the session may have set another one
    try:
        model = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    proba = model.predict(X_test)
    assert proba.shape == (len(X_test),) and ((proba >= 0) & (proba <= 1)).all()


def _mlflow_text_artifacts(client: Any, run_id: str) -> str:
    """Every text artifact of the run (configs, tables, descriptions), concatenated."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(client.download_artifacts(run_id, "", tmp))
        return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.suffix in {".json", ".txt", ".yaml", ".csv", ".md"})


@pytest.mark.long  # a fault test, minutes: `make e2e`
def test_killing_a_shard_worker_mid_trial_the_survivor_finishes_the_study(stack_api: StackInfo, source_url: str) -> None:
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from prefect.client.orchestration import get_client

    stack = stack_api
    name = f"churn-stack-kill-{time.time_ns()}"
    # trials of about a second: the survivor must still be running trials when the killed one's heartbeat goes
    # stale (2 x heartbeat_interval = 4 s after the kill), to take its retry
    over = overrides(name, slow_tuning(12), {"num_boost_round": 4000, "early_stopping_rounds": 4000})
    started = time.monotonic()
    flow_run_id = trigger(over)
    run_id = str(flow_run_id)
    watcher = ShardWatcher(stack)
    killed: dict[str, Any] = {}
    found: list[Any] = []

    def kill_when_a_shard_is_mid_trial() -> None:
        if killed:
            return
        if not found and (study := find_study(stack.secrets.optuna_storage, run_id)) is not None:
            found.append(study)
        if not found:
            return
        trials = found[0].get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < 2:
            return
        for trial in trials:
            worker = watcher.owner.get(trial.user_attrs.get("pid", -1))
            if trial.state == TrialState.RUNNING and worker:
                stop_worker(stack.worker_pids[worker], hard=True)  # SIGKILL to the worker, its group and its flow run
                killed.update(worker=worker, trial=trial.number, pid=trial.user_attrs["pid"], at=time.monotonic() - started)
                print(f"killed {worker} at {killed['at']:.1f} s while it ran trial {trial.number}")
                return

    try:
        with get_client(sync_client=True) as client:
            run = wait_final(client, flow_run_id, watcher, on_poll=kill_when_a_shard_is_mid_trial)
        print(f"training run finished in {time.monotonic() - started:.1f} s: {run.state.name}")
        assert killed, "no shard worker was seen running a trial after 2 finished ones"
        assert run.state.is_completed(), f"{run.state.name}: {run.state.message}"

        study = find_study(stack.secrets.optuna_storage, run_id)
        trials = study.get_trials(deepcopy=False)
        states = {t.number: t.state.name for t in trials}
        assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= 12, states
        assert states[killed["trial"]] == "FAIL", states
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed["trial"]]
        assert retried and retried[0].state == TrialState.COMPLETE, states
        survivor = next(n for n in stack.worker_pids if n != killed["worker"])
        assert watcher.owner.get(retried[0].user_attrs["pid"]) == survivor

        # nothing of the killed shard is left RUNNING: the trainer marked its flow run and MLflow run
        with get_client(sync_client=True) as client:
            shard_states = [r.state.type.value for r in client.read_flow_runs() if r.parameters.get("run_id") == run_id]
        assert sorted(shard_states) == ["COMPLETED", "CRASHED"], shard_states
        mlflow_client = MlflowClient(stack.mlflow_url)
        summary = artifacts(stack, run_id).get_json("summary")
        parent = mlflow_client.get_run(summary["mlflow_run_id"])
        nested = mlflow_client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert sorted(r.info.status for r in nested) == ["FINISHED", "KILLED"], [(r.info.run_name, r.info.status) for r in nested]
        assert summary["tuning"]["fallback"] is None
    finally:
        if killed:  # the session's stack keeps its 2 shard workers
            start_worker(stack, killed["worker"])
            wait_for_workers(stack, [killed["worker"]], 120)
