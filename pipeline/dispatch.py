"""Where fanned-out work runs: tuning shards and feature parts, in this process, in local processes,
or as deployment runs on Prefect workers.

The step code is the same in every case (`steps.tuning_shard`, `steps.feature_part`); only
the launcher differs. Local processes are launched here; deployment runs by a `Fanout`
(`pipeline.flows.fanout.PrefectFanout`) that the training flow hands in when
`tuning.dispatch: prefect`, so this module needs no Prefect. For tuning, the orchestrator
creates the study once (so shards never race to create its schema), launches the shards,
and waits until the study holds the requested number of finished trials.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any, Protocol

from pipeline import steps
from pipeline.config import Config, load_config
from pipeline.tuning import FINISHED, TuningError, best_params, fail_stale_trials, finished_trials, trial_counts

log = logging.getLogger(__name__)


class Fanout(Protocol):
    """Launches work on remote workers and waits for it (`pipeline.flows.fanout.PrefectFanout`)."""

    def tuning_shards(self, tracking_parent: str | None, study) -> list[dict[str, Any]]: ...

    def feature_parts(self, parts: list[int], token: str) -> list[dict[str, Any]]: ...


def tune(
    cfg: Config, run_id: str, overrides: dict[str, Any] | None, tracking_parent: str | None, remote: Fanout | None = None
) -> dict[str, Any]:
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
        shards = _remote(cfg, remote).tuning_shards(tracking_parent, study)
    elif cfg.tuning.n_shards > 1:
        args = [(run_id, overrides, tracking_parent, i, target) for i in range(cfg.tuning.n_shards)]
        shards = [{"shard": i, **p} for i, p in enumerate(run_processes(_shard_process, args, cfg.tuning.n_shards))]
    else:
        shards = [steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), 0, target, tracking_parent)]
    if cfg.tuning.dispatch == "prefect" and finished_trials(study) < target:
        log.warning(
            "study has %d of %d finished trials after the shards: re-submitting %d shard runs",
            finished_trials(study),
            target,
            cfg.tuning.n_shards,
        )
        shards += _remote(cfg, remote).tuning_shards(tracking_parent, study)
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


def feature_part_launcher(cfg: Config, run_id: str, remote: Fanout | None = None) -> Callable[[list[int], str], list[dict[str, Any]]]:
    """How `steps.make_features` launches its parts: deployment runs for `tuning.dispatch: prefect`,
    else local processes, as many at a time as this host has cores (each holds one part's history)."""
    if cfg.tuning.dispatch == "prefect":
        return _remote(cfg, remote).feature_parts
    concurrent = os.cpu_count() or 1

    def launch(parts: list[int], token: str) -> list[dict[str, Any]]:
        return run_processes(_part_process, [(cfg, run_id, i, token) for i in parts], concurrent)

    return launch


def _remote(cfg: Config, remote: Fanout | None) -> Fanout:
    if remote is None:
        raise TuningError("tuning.dispatch 'prefect' launches deployment runs from the training flow: run the pipeline through it")
    return remote


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


def _part_process(cfg: Config, run_id: str, index: int, token: str) -> None:
    from pipeline.logs import setup_logging

    setup_logging()
    steps.feature_part(cfg, steps.run_artifacts(cfg, run_id), index, token)


def run_processes(target: Callable[..., None], argsets: list[tuple], concurrent: int) -> list[dict[str, Any]]:
    """`target(*args)` for each argset in its own spawned process, at most `concurrent` at once.

    A fresh interpreter per call: its memory is its own and returns to the system when it
    exits, and a crash (even a kill) ends only that call, seen as its exit code.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in argsets]
    pending, running = list(procs), []
    while pending or running:
        while pending and len(running) < concurrent:
            running.append(pending.pop(0))
            running[-1].start()
        ended = wait([p.sentinel for p in running])
        running = [p for p in running if p.sentinel not in ended]
    for proc in procs:
        proc.join()
    return [{"exitcode": p.exitcode, "pid": p.pid} for p in procs]


def trial_progress(study) -> tuple[int, int]:
    """(finished, running) trials, after failing stale ones (a dead worker's trial, once its heartbeat is stale)."""
    from optuna.trial import TrialState

    fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in FINISHED for t in trials), sum(t.state == TrialState.RUNNING for t in trials)
