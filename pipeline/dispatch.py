"""Where tuning shards run: in this process, in local processes, or as deployment runs on Prefect workers.

The step code is the same in every case (`steps.tuning_shard`); only the launcher
differs. The orchestrator creates the study once (so shards never race to create
its schema), launches the shards, and waits until the study holds the requested
number of finished trials.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from pipeline import steps
from pipeline.config import Config, load_config
from pipeline.tuning import FINISHED, TuningError, best_params, finished_trials, trial_counts

log = logging.getLogger(__name__)


def tune(cfg: Config, run_id: str, overrides: dict[str, Any] | None, tracking_parent: str | None) -> dict[str, Any]:
    """Tune on the study of `run_id`; shards get `overrides` (never a secret: they read those from their environment)."""
    target = cfg.tuning.n_trials
    if target == 0:
        log.info("tuning.n_trials is 0: training once with the configured parameters")
        return {"best_params": {}, "best_iteration": None, **trial_counts([]), "best_value": None, "shards": []}
    if cfg.tuning.dispatch == "prefect" or cfg.tuning.n_shards > 1:
        if not cfg.tuning.storage or cfg.tuning.storage == "memory":
            raise TuningError("tuning.storage 'memory' cannot be shared by several shards: use a journal file, SQLite or MySQL URL")
    study = steps.create_study(cfg, run_id)
    if cfg.tuning.dispatch == "prefect":
        shards = _prefect_shards(cfg, run_id, overrides, tracking_parent, study)
    elif cfg.tuning.n_shards > 1:
        shards = _process_shards(run_id, overrides, tracking_parent, cfg.tuning.n_shards, target)
    else:
        shards = [steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), 0, target, tracking_parent)]
    if cfg.tuning.dispatch == "prefect" and finished_trials(study) < target:
        log.warning(
            "study has %d of %d finished trials after the shards: re-submitting %d shard runs",
            finished_trials(study),
            target,
            cfg.tuning.n_shards,
        )
        shards += _prefect_shards(cfg, run_id, overrides, tracking_parent, study)
    fallback = None
    missing = target - finished_trials(study)
    if missing > 0:  # every shard died: finish here rather than fail the run
        fallback = f"the shards left {missing} of {target} trials: the trainer ran them in-process, alone"
        log.warning("TUNING FALLBACK: %s", fallback)
        shards.append(steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), len(shards), target, tracking_parent))
    if tracking_parent:
        close_abandoned_shard_runs(cfg, tracking_parent, fallback)
    best = study.best_trial
    return {
        "best_params": best_params(study),
        "best_iteration": int(best.user_attrs.get("best_iteration", 0)) or None,
        "best_value": best.value,
        **trial_counts(study.get_trials(deepcopy=False)),  # n_trials counts finished = complete + pruned
        "study": study.study_name,
        "shards": shards,
        "fallback": fallback,
    }


def close_abandoned_shard_runs(cfg: Config, parent_run_id: str, fallback: str | None = None) -> list[str]:
    """Nested MLflow runs of this run's shards still RUNNING once tuning is over belong to shards
    that died (a killed worker cannot end its run): mark them KILLED so no run stays RUNNING.
    A fallback to in-process tuning is tagged on the parent run, where people look."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.tracking.tracking_uri)
    if fallback:
        client.set_tag(parent_run_id, "tuning.fallback", fallback)
    experiment = client.get_run(parent_run_id).info.experiment_id
    stale = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for run in stale:
        log.warning("MLflow shard run %s (%s) never finished: its shard died; marking it KILLED", run.info.run_id, run.info.run_name)
        client.set_terminated(run.info.run_id, "KILLED")
    return [run.info.run_id for run in stale]


def _shard_process(run_id: str, overrides: dict[str, Any] | None, tracking_parent: str | None, index: int, target: int) -> None:
    from pipeline.logs import setup_logging

    setup_logging()
    cfg = load_config(overrides=overrides)
    steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), index, target, tracking_parent)


def _process_shards(run_id: str, overrides, tracking_parent, n_shards: int, target: int) -> list[dict[str, Any]]:
    """Shards as local OS processes sharing the study through its (file or database) storage."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_shard_process, args=(run_id, overrides, tracking_parent, i, target)) for i in range(n_shards)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return [{"shard": i, "exitcode": p.exitcode, "pid": p.pid} for i, p in enumerate(procs)]


def _prefect_shards(cfg: Config, run_id: str, overrides, tracking_parent, study) -> list[dict[str, Any]]:
    """Fan out shard deployment runs, then wait for the study (not for crashed runs) to be done."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    target = cfg.tuning.n_trials
    runs = [
        run_deployment(
            name=cfg.tuning.shard_deployment,
            parameters={
                "overrides": overrides,
                "run_id": run_id,
                "target_trials": target,
                "shard_index": i,
                "tracking_parent": tracking_parent,
            },
            timeout=0,
        )
        for i in range(cfg.tuning.n_shards)
    ]
    log.info("launched %d tuning shards on deployment %s", len(runs), cfg.tuning.shard_deployment)
    deadline = time.monotonic() + cfg.tuning.timeout_minutes * 60
    # A shard run whose worker died stays RUNNING in Prefect for ever: judge progress by the study.
    stall_seconds = max(120.0, 10 * cfg.tuning.heartbeat_interval)
    launched = progress_at = time.monotonic()
    progress = None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            states = [client.read_flow_run(r.id).state for r in runs]
            finished, running = _trial_counts(study)
            # WAITING trials do not count: failing a dead worker's stale trial re-queues it as
            # WAITING (RetryHeartbeatStaleTrialCallback), and once the target is met no shard takes it.
            if all(s is not None and s.is_final() for s in states) or (finished >= target and running == 0):
                break
            # still working: a trial running, a new finished trial, or a shard run not yet started
            # (for at most stall_seconds after launch: runs that never start have no worker)
            waiting = any(s is None or not (s.is_running() or s.is_final()) for s in states)
            now = (finished, running)
            if now != progress or running > 0 or (waiting and time.monotonic() - launched < stall_seconds):
                progress, progress_at = now, time.monotonic()
            elif time.monotonic() - progress_at > stall_seconds:
                log.warning("no trial has run for %.0f s: the shards are gone or never started", stall_seconds)
                break
            time.sleep(2)
        else:
            raise TuningError(f"tuning did not finish within tuning.timeout_minutes={cfg.tuning.timeout_minutes}")
        _grace_for_shards(client, runs, seconds=15)
        _crash_unfinished(client, runs)
        states = [client.read_flow_run(r.id).state for r in runs]
    return [{"shard": i, "flow_run": str(r.id), "state": s.name if s else None} for i, (r, s) in enumerate(zip(runs, states, strict=True))]


def _trial_counts(study) -> tuple[int, int]:
    """(finished, running) trials, after failing stale ones (a dead worker's trial, once its heartbeat is stale)."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in FINISHED for t in trials), sum(t.state == TrialState.RUNNING for t in trials)


def _crash_unfinished(client, runs) -> None:
    """A shard run not final after the grace period lost its worker (a killed worker's run stays
    RUNNING in Prefect for ever): mark it Crashed, so the UI shows what happened."""
    from prefect.states import Crashed

    for run in runs:
        state = client.read_flow_run(run.id).state
        if state is None or not state.is_final():
            log.warning(
                "shard flow run %s is still %s after tuning ended: its worker is gone; marking it Crashed",
                run.name,
                state.name if state else "unknown",
            )
            client.set_flow_run_state(run.id, Crashed(message="the shard stopped while its study finished without it"), force=True)


def _grace_for_shards(client, runs, seconds: float) -> None:
    """Give live shards a moment to notice the study is complete and exit cleanly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all((s := client.read_flow_run(r.id).state) is not None and s.is_final() for r in runs):
            return
        time.sleep(1)
