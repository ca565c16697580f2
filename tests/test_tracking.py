import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import protocol, tracking
from pipeline.evaluation import Calibrator, score
from pipeline.selection import decide
from pipeline.tracking import (
    MASK,
    aligned_features,
    log_model,
    redact,
    register_and_promote,
    serving_frame,
    setup,
)

PASSWORD = "hunter2"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store per module: creating its schema costs several seconds."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/db/mlflow.db", str(root / "artifacts")


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch):
    """MLflow keeps the tracking URI and experiment in globals and env vars; restore them after each test."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    monkeypatch.setattr("mlflow.tracking.fluent._active_experiment_id", None)
    yield
    while mlflow.active_run():
        mlflow.end_run()


def _booster(categorical: bool) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 200
    X = pd.DataFrame({"customers.MEAN(orders.TotalDue)": rng.normal(size=n), "noise": rng.normal(size=n)})
    X.loc[rng.random(n) < 0.1, "noise"] = np.nan
    if categorical:
        X["customers.MODE(orders.ShipMethod)"] = pd.Categorical(rng.choice(["air", "sea"], n))
    y = (X.iloc[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 5, "verbosity": -1, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=10), X


def test_redact_flattens_masks_and_truncates():
    params = {
        "data": {"url": f"postgresql+psycopg2://churn:{PASSWORD}@db:5432/aw", "spec": "adventureworks"},
        "tracking": {"tracking_uri": f"http://ml:{PASSWORD}@mlflow:5000", "artifact_location": None},
        "storage": {"aws_secret_access_key": "abc", "api_token": "t", "db_password": "p"},
        "features": {"agg_primitives": ["count", "sum"], "n_jobs": 1},
        "tuning": {"n_trials": 20, "mirrors": [f"redis://:{PASSWORD}@cache:6379/0"]},
        "notes": "x" * 7000,
    }
    out = redact(params)
    assert out["data.url"] == f"postgresql+psycopg2://churn:{MASK}@db:5432/aw"
    assert out["tracking.tracking_uri"] == f"http://ml:{MASK}@mlflow:5000"
    assert out["tuning.mirrors"] == f'["redis://:{MASK}@cache:6379/0"]'
    assert {out[k] for k in ("storage.aws_secret_access_key", "storage.api_token", "storage.db_password")} == {MASK}
    assert out["features.agg_primitives"] == '["count","sum"]'
    assert out["tuning.n_trials"] == "20" and out["tracking.artifact_location"] == "None"
    assert len(out["notes"]) == 6000 and out["notes"].endswith("[truncated]")
    assert all(PASSWORD not in v for v in out.values())
    harmless = {"u": "sqlite:////tmp/x.db", "s3": "s3://bucket/prefix", "user_only": "mysql+pymysql://root@h/db"}
    assert redact(harmless) == harmless


def test_setup_creates_store_and_reuses_experiment(store):
    uri, artifacts = store
    first = setup(uri, "exp-setup", artifact_location=artifacts)
    assert setup(uri, "exp-setup", artifact_location="/ignored/for/existing") == first
    experiment = MlflowClient().get_experiment(first)
    assert experiment.artifact_location == artifacts
    assert mlflow.get_tracking_uri() == uri
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == first


def test_batched_metrics_arrive_in_few_requests_and_all_at_the_end(store, monkeypatch):
    uri, artifacts = store
    setup(uri, "exp-batched", artifact_location=artifacts)
    batches = []
    real_log_batch = MlflowClient.log_batch
    monkeypatch.setattr(
        MlflowClient, "log_batch", lambda self, run_id, **kw: batches.append(len(kw["metrics"])) or real_log_batch(self, run_id, **kw)
    )
    with mlflow.start_run() as run, tracking.batched_metrics(run.info.run_id, flush_every_s=3600) as log_metric:
        for step in range(25):
            log_metric("trial_roc_auc", 0.5 + step / 100, step)
        assert MlflowClient().get_metric_history(run.info.run_id, "trial_roc_auc") == []  # not sent yet
    history = MlflowClient().get_metric_history(run.info.run_id, "trial_roc_auc")
    assert [m.step for m in history] == list(range(25)) and history[-1].value == pytest.approx(0.74)
    assert batches == [25]


def test_logged_params_are_redacted(store):
    setup(store[0], "exp-params", artifact_location=store[1])
    with mlflow.start_run() as run:
        logged = tracking.log_params({"data": {"url": f"mysql+pymysql://u:{PASSWORD}@127.0.0.1/aw"}, "seed": 7})
    stored = MlflowClient().get_run(run.info.run_id).data.params
    assert stored == logged == {"data.url": f"mysql+pymysql://u:{MASK}@127.0.0.1/aw", "seed": "7"}


def _trained(X: pd.DataFrame, y: pd.Series, rounds: int = 10) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 5, "verbosity": -1, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=rounds)


def _logged(booster: lgb.Booster, X: pd.DataFrame, calibrator: Calibrator | None = None) -> str:
    with mlflow.start_run():
        uri = log_model(booster, X).model_uri
        mlflow.log_dict((calibrator or Calibrator()).to_dict(), "calibration.json")
    return uri


def _tags(method: str = "time", test_start: str = "2014-01-01T00:00:00") -> dict[str, str]:
    split = protocol.split_protocol(method, pd.Timestamp(test_start), True, 0.2, 0.2, 42)
    fp = protocol.fingerprint("adventureworks", "h1", "within_horizon", 180, split, {"hash": "s1"})
    return protocol.to_tags(fp)


def _promote(uri: str, name: str, X: pd.DataFrame, y: pd.Series, challenger: float, tags: dict[str, str] | None = None, baselines=None):
    return register_and_promote(
        uri,
        name,
        tags or _tags(),
        X,
        score_rows=lambda proba: score("roc_auc", y, proba),
        decide=lambda champion: decide("roc_auc", "maximize", challenger, baselines or {}, champion, 0.002),
    )


def test_champion_moves_only_when_it_loses_on_the_same_rows(store):
    setup(store[0], "exp-registry", artifact_location=store[1])
    booster, X = _booster(categorical=False)
    y = (X.iloc[:, 0] > 0).astype(int)
    good = _logged(booster, X, Calibrator("platt", {"a": 2.0, "b": 0.1}))
    name = "churn-test"

    blocked = _promote(good, name, X, y, 0.9, baselines={"rfm_logreg": 0.95})
    assert (blocked.version, blocked.promoted, blocked.previous_champion_version) == (1, False, None)
    assert "'rfm_logreg' is not beaten" in blocked.decision.reason
    first = _promote(good, name, X, y, 0.9, baselines={"rfm_logreg": 0.7})
    assert (first.version, first.promoted) == (2, True)
    champion_auc = score("roc_auc", y, booster.predict(X))  # platt keeps the ranking: same AUC as raw

    worse = _promote(good, name, X, y, champion_auc - 0.05)
    assert (worse.version, worse.promoted, worse.previous_champion_version) == (3, False, 2)
    assert worse.decision.champion_score == pytest.approx(champion_auc) and worse.decision.comparable
    # a retraining that does not promote leaves the alias, which scoring loads, on the old champion
    assert int(MlflowClient().get_model_version_by_alias(name, "champion").version) == 2
    tie = _promote(good, name, X, y, champion_auc + 0.001)  # within the margin
    assert not tie.promoted and "not beaten on the same rows" in tie.decision.reason
    better = _promote(good, name, X, y, champion_auc + 0.01)
    assert (better.version, better.promoted, better.previous_champion_version) == (5, True, 2)

    client = MlflowClient()
    assert int(client.get_model_version_by_alias(name, "champion").version) == 5
    v3 = client.get_model_version(name, "3")
    assert v3.tags["promotion"] == "not promoted" and "champion v2" in v3.tags["promotion_reason"]
    assert v3.tags["protocol.split.method"] == "time" and v3.tags["protocol.spec.hash"] == "h1"

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(np.asarray(model.predict(X.head(20))).ravel(), booster.predict(X.head(20)))


def test_incomparable_or_unscorable_champion_keeps_the_alias(store):
    setup(store[0], "exp-registry", artifact_location=store[1])
    booster, X = _booster(categorical=False)
    y = (X.iloc[:, 0] > 0).astype(int)
    name = "churn-guarded"
    assert _promote(_logged(booster, X), name, X, y, 0.9).promoted

    random_split = _promote(_logged(booster, X), name, X, y, 0.99, tags=_tags(method="random"))
    assert not random_split.promoted and random_split.decision.comparable is False
    assert "split.method differs (champion 'time', challenger 'random')" in random_split.decision.reason
    earlier_test = _promote(_logged(booster, X), name, X, y, 0.99, tags=_tags(test_start="2013-06-01T00:00:00"))
    assert not earlier_test.promoted and "seen part of the challenger's test rows" in earlier_test.decision.reason

    renamed = X.rename(columns={"noise": "other"})
    missing = _promote(_logged(_trained(renamed, y), renamed), name, renamed, y, 0.99)
    assert not missing.promoted and "1 feature(s) missing from the challenger's matrix (e.g. ['noise'])" in missing.decision.reason
    assert int(MlflowClient().get_model_version_by_alias(name, "champion").version) == 1


def test_aligned_features_reorders_and_matches_lightgbm_spelling():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a b": rng.normal(size=100), "c": rng.normal(size=100)})
    y = (X["a b"] > 0).astype(int)
    booster = _trained(X, y)
    assert booster.feature_name() == ["a_b", "c"]
    shuffled = X[["c", "a b"]]
    np.testing.assert_allclose(booster.predict(aligned_features(shuffled, booster)), booster.predict(X))
    with_category = X.assign(c=pd.Categorical(np.where(X["c"] > 0, "x", "y")))
    assert "categorical" in aligned_features(with_category, booster)


def test_categorical_model_loads_with_lightgbm_flavour(store, tmp_path):
    setup(store[0], "exp-categorical", artifact_location=store[1])
    booster, X = _booster(categorical=True)
    X.loc[X.index[:3], "customers.MODE(orders.ShipMethod)"] = np.nan
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a")
    with mlflow.start_run() as run:
        info = log_model(booster, X)
        tracking.log_artifacts_dir(tmp_path / "plots", "plots")

    inputs = {spec.name: spec.type.name for spec in info.signature.inputs.inputs}
    assert inputs["customers.MODE(orders.ShipMethod)"] == "string"
    example = serving_frame(X.head(3))
    assert example["customers.MODE(orders.ShipMethod)"].tolist() == [None, None, None]

    native = mlflow.lightgbm.load_model(info.model_uri)
    np.testing.assert_allclose(native.predict(X), booster.predict(X))
    # the documented limitation: pyfunc's schema enforcement rejects category columns
    with pytest.raises(MlflowException, match="category"):
        mlflow.pyfunc.load_model(info.model_uri).predict(X)

    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/a.txt"}
