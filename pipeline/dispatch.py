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
    missing = target - finished_trials(study)
    if missing > 0:  # every shard died: finish here rather than fail the run
        log.warning("study has %d of %d finished trials after the shards: running the rest in-process", target - missing, target)
        shards.append(steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), len(shards), target, tracking_parent))
    best = study.best_trial
    return {
        "best_params": best_params(study),
        "best_iteration": int(best.user_attrs.get("best_iteration", 0)) or None,
        "best_value": best.value,
        **trial_counts(study.get_trials(deepcopy=False)),  # n_trials counts finished = complete + pruned
        "study": study.study_name,
        "shards": shards,
    }


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
                "overrides": overrides, "run_id": run_id, "target_trials": target, "shard_index": i,
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
    progress, last_progress = None, time.monotonic()
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            states = [client.read_flow_run(r.id).state for r in runs]
            finished, running = _trial_counts(study)
            # WAITING trials do not count: failing a dead worker's stale trial re-queues it as
            # WAITING (RetryHeartbeatStaleTrialCallback), and once the target is met no shard takes it.
            if all(s is not None and s.is_final() for s in states) or (finished >= target and running == 0):
                break
            # still working: a trial running, a new finished trial, or a shard run not yet started
            now = (finished, running, sum(s is None or not (s.is_running() or s.is_final()) for s in states))
            if now != progress or running > 0 or now[2] > 0:
                progress, last_progress = now, time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                log.warning("no trial has run for %.0f s and no shard run is waiting to start: the shards are gone", stall_seconds)
                break
            time.sleep(2)
        else:
            raise TuningError(f"tuning did not finish within tuning.timeout_minutes={cfg.tuning.timeout_minutes}")
        _grace_for_shards(client, runs, seconds=15)
        states = [client.read_flow_run(r.id).state for r in runs]
    return [{"shard": i, "flow_run": str(r.id), "state": s.name if s else None} for i, (r, s) in enumerate(zip(runs, states))]


def _trial_counts(study) -> tuple[int, int]:
    """(finished, running) trials, after failing stale ones (a dead worker's trial, once its heartbeat is stale)."""
    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in FINISHED for t in trials), sum(t.state == TrialState.RUNNING for t in trials)


def _grace_for_shards(client, runs, seconds: float) -> None:
    """Give live shards a moment to notice the study is complete and exit cleanly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all((s := client.read_flow_run(r.id).state) is not None and s.is_final() for r in runs):
            return
        time.sleep(1)
