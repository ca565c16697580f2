"""Tuning's fallback path (`dispatch.tune` with `tuning.dispatch: prefect`): shards that die are
re-submitted once, and only if the study is still short does the trainer tune alone, loudly.

The launcher stands in for Prefect's deployment runs (`dispatch.Fanout`) but its shards are real
spawned processes on the real journal study and SQLite MLflow store: in the injected fault they
exit at start, before any trial, as a worker killed while its run starts would.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from pipeline import dispatch, steps
from pipeline.config import load_config
from pipeline.tuning import trial_counts
from tests.helpers import write_small_source

pytestmark = pytest.mark.slow
N_TRIALS, N_SHARDS = 4, 2


class ProcessFanout:
    """Launches each round of shards as local processes: the rounds listed in `dying` exit at start."""

    def __init__(self, overrides: dict[str, Any], run_id: str, dying: set[int]):
        self.overrides, self.run_id, self.dying = overrides, run_id, dying
        self.rounds: list[list[int | None]] = []

    def tuning_shards(self, tracking_parent: str | None, study) -> list[dict[str, Any]]:
        if len(self.rounds) in self.dying:  # exit before anything: a fresh interpreter that ends with code 3
            launched = dispatch.run_processes(os._exit, [(3,)] * N_SHARDS, N_SHARDS)
        else:
            args = [(self.run_id, self.overrides, tracking_parent, i, N_TRIALS) for i in range(N_SHARDS)]
            launched = dispatch.run_processes(dispatch._shard_process, args, N_SHARDS)
        self.rounds.append([p["exitcode"] for p in launched])
        return launched

    def feature_parts(self, parts: list[int], token: str) -> list[dict[str, Any]]:
        raise AssertionError("not used by tuning")


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[dict[str, Any], str, str]:
    """A run whose train/valid parts are in the store, and its MLflow run (the shards' parent)."""
    source = f"sqlite:///{tmp_path}/source.db"
    write_small_source(source, customers=120)
    overrides = {
        "paths": {"work_dir": str(tmp_path / "work")},
        "data": {"url": source, "generate_if_missing": False},
        "labels": {"horizon_days": 90},
        "features": {"agg_primitives": ["count", "sum", "mean"], "trans_primitives": ["month"], "max_features": 30},
        "split": {"min_rows": 20},
        "tuning": {"n_trials": N_TRIALS, "n_startup_trials": 2, "dispatch": "prefect", "n_shards": N_SHARDS},
        "model": {"num_threads": 1},
    }
    cfg = load_config(overrides=overrides)
    run_id = "fallback"
    art = steps.run_artifacts(cfg, run_id)
    for step in (steps.extract, steps.make_labels, steps.make_features, steps.split_and_encode):
        step(cfg, art)
    return overrides, run_id, steps.open_tracking_run(cfg, run_id)


def _exact(result: dict[str, Any], cfg) -> dict[str, int]:
    from optuna.trial import TrialState

    trials = steps.create_study(cfg, "fallback").get_trials(deepcopy=False)
    counts = trial_counts(trials)
    assert counts == {k: result[k] for k in counts}, "the summary counts what the study holds"
    return {"trials": len(trials), "running_trials": sum(t.state == TrialState.RUNNING for t in trials), **counts}


def test_dead_shards_are_resubmitted_then_the_trainer_tunes_alone_and_says_so(prepared, caplog) -> None:
    """Injected: both rounds of 2 shards exit (code 3) at start. Counted: 2 launch rounds, 4 exits
    with code 3, then 4 trials run by the trainer: 4 finished, 0 failed, 0 running, none doubled."""
    overrides, run_id, parent = prepared
    cfg = load_config(overrides=overrides)
    fanout = ProcessFanout(overrides, run_id, dying={0, 1})
    with caplog.at_level(logging.WARNING, logger="pipeline.dispatch"):
        result = dispatch.tune(cfg, run_id, overrides, parent, remote=fanout)

    assert fanout.rounds == [[3, 3], [3, 3]], "dead shards are re-submitted exactly once"
    assert "re-submitting 2 shard runs" in caplog.text and "TUNING FALLBACK" in caplog.text
    assert result["fallback"] == f"the shards left {N_TRIALS} of {N_TRIALS} trials: the trainer ran them in-process, alone"
    counts = _exact(result, cfg)
    assert counts["trials"] == counts["finished_trials"] == N_TRIALS, counts
    assert counts["failed_trials"] == 0 and counts["running_trials"] == 0, counts
    assert MlflowClient(cfg.tracking.tracking_uri).get_run(parent).data.tags["tuning.fallback"] == result["fallback"]


def test_resubmitted_shards_that_live_finish_the_study_without_fallback(prepared, caplog) -> None:
    """Injected: the first round of 2 shards exits at start; the re-submitted round runs. Counted:
    2 rounds, exit codes [3, 3] then [0, 0], 4 finished trials, none failed or doubled, no fallback."""
    overrides, run_id, parent = prepared
    cfg = load_config(overrides=overrides)
    fanout = ProcessFanout(overrides, run_id, dying={0})
    with caplog.at_level(logging.WARNING, logger="pipeline.dispatch"):
        result = dispatch.tune(cfg, run_id, overrides, parent, remote=fanout)

    assert fanout.rounds == [[3, 3], [0, 0]]
    assert result["fallback"] is None and "TUNING FALLBACK" not in caplog.text
    counts = _exact(result, cfg)
    # shards racing for the last missing trial may each finish one (tuning.run_shard): at most shards - 1 over
    assert N_TRIALS <= counts["finished_trials"] == counts["trials"] <= N_TRIALS + N_SHARDS - 1, counts
    assert counts["failed_trials"] == 0 and counts["running_trials"] == 0, counts
    assert "tuning.fallback" not in MlflowClient(cfg.tracking.tracking_uri).get_run(parent).data.tags
