"""Ctrl-C during tuning: the CLI leaves within seconds, the MLflow run is KILLED, no trial stays RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import write_small_source

pytestmark = pytest.mark.slow


def test_ctrl_c_during_tuning_leaves_promptly_and_closes_the_runs(tmp_path: Path) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    source = f"sqlite:///{tmp_path}/source.db"
    write_small_source(source, customers=150)
    work = tmp_path / "work"
    slow_trials = [  # trials of seconds each, so the interrupt lands mid-trial
        "--set",
        "tuning.n_trials=50",
        "--set",
        "tuning.pruner_warmup_steps=5000",
        "--set",
        "model.num_boost_round=3000",
        "--set",
        "model.early_stopping_rounds=3000",
        "--set",
        "labels.horizon_days=90",
        "--set",
        "split.min_rows=20",
    ]
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--set",
        f"paths.work_dir={work}",
        "--set",
        f"data.url={source}",
        "--set",
        "data.generate_if_missing=false",
        *slow_trials,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE__", "PREFECT_API_URL"))}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:  # until the first trial finished: the second is under way
            seen.append(line)
            if "trial 0 " in line:
                break
        assert proc.poll() is None, "".join(seen[-20:])
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)  # read on, as a terminal would
        took = time.monotonic() - interrupted
    finally:
        proc.kill()
    print(f"exited {proc.returncode} {took:.1f} s after Ctrl-C; its output after the Ctrl-C:\n{rest}")
    assert proc.returncode != 0 and took < 30

    client = MlflowClient(f"sqlite:///{work}/mlflow/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs if r.info.run_name.startswith("train-")] == ["KILLED"]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(work / "optuna" / "journal.log")))
    trials = [t for s in storage.get_all_studies() for t in storage.get_all_trials(s._study_id)]
    assert trials and not [t.number for t in trials if t.state.name == "RUNNING"]
