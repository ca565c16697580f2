"""Tuning progress: a bar on a terminal; elsewhere (Prefect UI, CI, pipes) a log line per best-so-far trial and per tenth of the study."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import struct
import sys
import termios

import pytest

from pipeline.config import load_config
from pipeline.models import LightGBMModel, TrainData
from pipeline.tuning import create_storage, create_study, make_objective, run_shard
from tests.test_model_tuning import data

TRIALS = 4


def tune(shard: str = "shard-0", trials: int = TRIALS):
    cfg = load_config(overrides={"tuning": {"n_trials": trials, "storage": "memory"}})
    study = create_study(cfg.tuning, "progress", create_storage("memory"))
    base = LightGBMModel(params={"verbosity": -1}, num_boost_round=50, early_stopping_rounds=5, num_threads=1)
    run_shard(study, make_objective(TrainData.build(*data()), base, cfg.tuning.search_space), trials, shard=shard)
    return study


def trial_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipeline.tuning" and "] trial " in r.getMessage() and r.levelno == level]


def test_without_a_terminal_a_short_study_logs_every_trial(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="pipeline")
    tune()
    lines = trial_lines(caplog, logging.INFO)
    assert len(lines) == TRIALS
    assert f"{TRIALS}/{TRIALS} finished" in lines[-1]
    assert sys.stderr.getvalue() == ""  # no bar drawn into a pipe


def test_without_a_terminal_a_long_study_logs_its_best_so_far_trials_and_each_tenth_the_rest_at_debug(caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.DEBUG, logger="pipeline")
    study = tune(trials=40)
    shown = [int(line.split()[2]) for line in trial_lines(caplog, logging.INFO)]
    assert sorted(shown + [int(line.split()[2]) for line in trial_lines(caplog, logging.DEBUG)]) == list(range(40))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best_so_far = [t.number for t in complete if t.value >= max(u.value for u in complete if u.number <= t.number)]
    tenths = list(range(3, 40, 4))  # trials 3, 7, ... finish the 4th, 8th, ... of 40
    assert sorted(set(best_so_far) | set(tenths)) == shown, (best_so_far, shown)
    assert len(shown) < 40


def test_a_trial_just_below_the_best_is_not_logged_as_one_even_when_both_round_alike(caplog):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from pipeline.tuning import progress_line

    caplog.set_level(logging.DEBUG, logger="pipeline")
    show = progress_line(target=100, shard="shard-0")
    counts = {"finished_trials": 2, "complete_trials": 2, "pruned_trials": 0}
    trial = create_trial(value=0.81231, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
    show(trial, 0.1, {**counts, "finished_trials": 1}, 0.81231)  # the first trial: the best, and the first tenth
    show(trial, 0.1, counts, 0.81234)  # below the best, though both show as 0.8123
    levels = [r.levelno for r in caplog.records if "] trial " in r.getMessage()]
    assert levels == [logging.INFO, logging.DEBUG]


@pytest.fixture
def terminal(monkeypatch):
    """A real pseudo-terminal; the test puts it in sys.stderr (pytest's capture replaces sys.stderr
    between fixture setup and the test body). Yields (stream, function returning what was drawn)."""
    controller, device = pty.openpty()
    fcntl.ioctl(device, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24x120, like a real one
    stream = open(device, "w", buffering=1)  # noqa: SIM115 - closed below
    os.set_blocking(controller, False)

    def drawn() -> str:
        stream.flush()
        chunks = []
        while True:
            try:
                chunks.append(os.read(controller, 65536))
            except BlockingIOError:
                return b"".join(chunks).decode(errors="replace")

    yield stream, drawn
    stream.close()
    os.close(controller)


def test_on_a_terminal_shard_0_draws_one_bar_and_trials_go_to_debug(caplog, monkeypatch, terminal):
    stream, drawn = terminal
    monkeypatch.setattr(sys, "stderr", stream)
    caplog.set_level(logging.INFO, logger="pipeline")
    tune()
    screen = drawn()
    assert "tuning: 100%" in screen and f"{TRIALS}/{TRIALS}" in screen and "best 0." in screen
    assert trial_lines(caplog, logging.INFO) == []


def test_on_a_terminal_other_shards_stay_quiet(caplog, monkeypatch, terminal):
    stream, drawn = terminal
    monkeypatch.setattr(sys, "stderr", stream)
    caplog.set_level(logging.INFO, logger="pipeline")
    tune("shard-1")
    assert "tuning:" not in drawn()
    assert trial_lines(caplog, logging.INFO) == []
