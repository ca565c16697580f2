"""LightGBM model interface and Optuna tuning: reproducible with a seed, resumable, sharded."""

import numpy as np
import optuna
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.models import LightGBMModel, TrainData
from pipeline.tuning import (
    FINISHED,
    create_storage,
    create_study,
    finished_trials,
    make_objective,
    run_shard,
    trial_counts,
)


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n), "kind": pd.Categorical(rng.choice(["a", "b", "c"], n))})
    logit = 2 * X.signal + (X.kind == "a") * 1.0
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))
    return X.iloc[:400], y.iloc[:400], X.iloc[400:], y.iloc[400:]


def base(**kw):
    return LightGBMModel(params={"learning_rate": 0.1, "verbosity": -1}, num_boost_round=300, early_stopping_rounds=20, num_threads=1, **kw)


def test_model_fits_predicts_saves_and_loads(tmp_path):
    X, y, Xv, yv = data()
    model = base().fit(X, y, Xv, yv)
    proba = model.predict_proba(Xv)
    assert proba.shape == (len(Xv),) and ((proba > 0) & (proba < 1)).all()
    assert 1 <= model.best_iteration < 300  # early stopping on the validation part
    model.save(tmp_path / "m.json")
    again = LightGBMModel.load(tmp_path / "m.json")
    np.testing.assert_allclose(again.predict_proba(Xv), proba)


def test_feature_names_lightgbm_rejects_are_reported():
    X, y, Xv, yv = data()
    with pytest.raises(ValueError, match="feature names"):
        base().fit(X.rename(columns={"noise": "a:b"}), y, Xv.rename(columns={"noise": "a:b"}), yv)


def tune(storage_url, n_trials, seed=42):
    cfg = load_config(overrides={"tuning": {"seed": seed, "n_startup_trials": 3, "storage": storage_url}}, environ={})
    storage = create_storage(storage_url)
    study = create_study(cfg.tuning, "s", storage)
    X, y, Xv, yv = data()
    objective = make_objective(TrainData.build(X, y, Xv, yv), base(), cfg.tuning.search_space)
    run_shard(study, objective, n_trials)
    return study


def test_tuning_is_reproducible_with_a_seed():
    a, b = tune("memory", 6), tune("memory", 6)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == [t.value for t in b.trials]
    assert a.direction.name == "MAXIMIZE"
    assert all(t.user_attrs["pid"] and t.user_attrs["host"] for t in a.trials)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_study_survives_restarts_and_counts_total_trials(tmp_path, kind):
    url = f"journal://{tmp_path}/j.log" if kind == "journal" else f"sqlite:///{tmp_path}/o.db"
    first = tune(url, 4)
    assert finished_trials(first) == 4
    resumed = tune(url, 7)  # a new process would do the same: load the study and top it up
    assert finished_trials(resumed) == 7
    assert len(resumed.get_trials(states=FINISHED)) == 7


def test_hopeless_trials_are_pruned_and_nothing_is_reported_before_the_warmup():
    cfg = load_config(overrides={"tuning": {"n_startup_trials": 2, "pruner_warmup_steps": 20}}, environ={})
    study = create_study(cfg.tuning, "p", create_storage("memory"))
    X, y, Xv, yv = data()
    train_data = TrainData.build(X, y, Xv, yv)
    good = base()
    study.enqueue_trial(
        {
            "learning_rate": 0.2,
            "num_leaves": 16,
            "min_child_samples": 20,
            "feature_fraction": 1.0,
            "bagging_fraction": 1.0,
            "lambda_l2": 1.0,
        }
    )
    study.enqueue_trial(
        {
            "learning_rate": 0.2,
            "num_leaves": 16,
            "min_child_samples": 20,
            "feature_fraction": 1.0,
            "bagging_fraction": 1.0,
            "lambda_l2": 1.0,
        }
    )
    study.enqueue_trial(
        {
            "learning_rate": 0.01,
            "num_leaves": 8,
            "min_child_samples": 200,
            "feature_fraction": 0.4,
            "bagging_fraction": 0.5,
            "lambda_l2": 10.0,
        }
    )
    run_shard(study, make_objective(train_data, good, cfg.tuning.search_space, cfg.tuning.pruner_warmup_steps), 3)
    assert study.trials[2].state.name == "PRUNED"
    # each report is a storage round trip: none before the pruner could act on it (step 20), then every 10
    steps = [sorted(t.intermediate_values) for t in study.trials]
    assert all(s and s[0] == 20 and all(b - a == 10 for a, b in zip(s, s[1:], strict=False)) for s in steps), steps
    # the pruned trial counts towards n_trials=3, and is reported apart from the complete ones
    assert len(study.trials) == 3
    assert trial_counts(study.get_trials()) == {"finished_trials": 3, "complete_trials": 2, "pruned_trials": 1, "failed_trials": 0}


def test_failed_trials_are_counted_but_not_finished():
    from optuna.trial import TrialState

    study = create_study(load_config(environ={}).tuning, "f", create_storage("memory"))
    study.tell(study.ask(), state=TrialState.FAIL)
    study.tell(study.ask(), 0.7)
    assert trial_counts(study.get_trials()) == {"finished_trials": 1, "complete_trials": 1, "pruned_trials": 0, "failed_trials": 1}
    assert trial_counts([]) == {"finished_trials": 0, "complete_trials": 0, "pruned_trials": 0, "failed_trials": 0}


def test_a_lost_database_connection_is_reported_as_such_not_as_optuna_s_data_length_guess():
    import sqlalchemy.exc

    from pipeline.tuning import _reason

    try:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as refused:
                raise sqlalchemy.exc.OperationalError("INSERT INTO trials ...", {}, refused) from refused
        except sqlalchemy.exc.OperationalError as lost:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit. ... exceeding max length.") from lost
    except optuna.exceptions.StorageInternalError as exc:
        assert _reason(exc) == "ConnectionRefusedError: [Errno 111] Connection refused"


class InterruptedJournal(optuna.storages.JournalStorage):
    """A real journal that gets Ctrl-C on the second trial, outside the objective where Optuna itself
    cannot fail the trial: just after creating it, or just before telling its result."""

    def __init__(self, path, method):
        super().__init__(optuna.storages.journal.JournalFileBackend(str(path)))
        self.method, self.calls = method, 0

    def _interrupt_on_second_call(self, method):
        self.calls += method == self.method
        if self.calls == 2 and method == self.method:
            raise KeyboardInterrupt

    def create_new_trial(self, study_id, template_trial=None):
        trial_id = super().create_new_trial(study_id, template_trial)
        self._interrupt_on_second_call("create_new_trial")
        return trial_id

    def set_trial_state_values(self, trial_id, state, values=None):
        self._interrupt_on_second_call("set_trial_state_values")
        return super().set_trial_state_values(trial_id, state, values)


@pytest.mark.parametrize("method", ["create_new_trial", "set_trial_state_values"])
def test_ctrl_c_while_optuna_creates_or_tells_a_trial_leaves_none_running(tmp_path, method):
    import os
    import socket

    study = create_study(
        load_config(environ={}).tuning,
        "i",
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))),
    )
    for pid, host in [(os.getpid() + 1, socket.gethostname()), (os.getpid(), "another-host")]:  # other shards' live trials
        other = study.ask()
        other.set_user_attr("pid", pid)
        other.set_user_attr("host", host)
    study = optuna.load_study(study_name="i", storage=InterruptedJournal(tmp_path / "journal.log", method), sampler=study.sampler)
    X, y, Xv, yv = data()
    with pytest.raises(KeyboardInterrupt):  # not Optuna's UnboundLocalError from telling an interrupted trial
        run_shard(study, make_objective(TrainData.build(X, y, Xv, yv), base(), load_config(environ={}).tuning.search_space), 5)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["RUNNING", "RUNNING", "COMPLETE", "FAIL"], states


def test_watching_for_stale_trials_does_not_warn_about_optuna_s_experimental_api(tmp_path):
    import warnings

    from pipeline.dispatch import trial_progress

    study = create_study(load_config(environ={}).tuning, "w", create_storage(f"sqlite:///{tmp_path}/o.db"))
    study.tell(study.ask(), 0.7)
    study.ask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert trial_progress(study) == (1, 1)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
