import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.tracking import MASK, log_model, redact, register_and_promote, serving_frame, setup

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


def test_logged_params_are_redacted(store):
    setup(store[0], "exp-params", artifact_location=store[1])
    with mlflow.start_run() as run:
        logged = tracking.log_params({"data": {"url": f"mysql+pymysql://u:{PASSWORD}@127.0.0.1/aw"}, "seed": 7})
    stored = MlflowClient().get_run(run.info.run_id).data.params
    assert stored == logged == {"data.url": f"mysql+pymysql://u:{MASK}@127.0.0.1/aw", "seed": "7"}


def test_champion_moves_only_on_strict_improvement(store):
    setup(store[0], "exp-registry", artifact_location=store[1])
    booster, X = _booster(categorical=False)
    with mlflow.start_run():
        info = log_model(booster, X)
    assert info.model_uri.startswith("models:/m-")
    name = "churn-test"

    first = register_and_promote(info.model_uri, name, "roc_auc", 0.80, "maximize")
    assert first == tracking.PromotionResult(1, True, None, None)
    worse = register_and_promote(info.model_uri, name, "roc_auc", 0.75, "maximize")
    assert worse == tracking.PromotionResult(2, False, 1, 0.80)
    tie = register_and_promote(info.model_uri, name, "roc_auc", 0.80, "maximize")
    assert not tie.promoted
    better = register_and_promote(info.model_uri, name, "roc_auc", 0.85, "maximize")
    assert better == tracking.PromotionResult(4, True, 1, 0.80)

    client = MlflowClient()
    assert int(client.get_model_version_by_alias(name, "champion").version) == 4
    assert client.get_model_version(name, "2").tags["test_roc_auc"] == "0.75"

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(np.asarray(model.predict(X.head(20))).ravel(), booster.predict(X.head(20)))


def test_minimize_direction_and_argument_checks(store):
    setup(store[0], "exp-registry", artifact_location=store[1])
    booster, X = _booster(categorical=False)
    with mlflow.start_run():
        uri = log_model(booster, X).model_uri
    assert register_and_promote(uri, "churn-min", "log_loss", 0.50, "minimize", alias="best").promoted
    assert register_and_promote(uri, "churn-min", "log_loss", 0.40, "minimize", alias="best").promoted
    assert not register_and_promote(uri, "churn-min", "log_loss", 0.45, "minimize", alias="best").promoted
    with pytest.raises(ValueError, match="direction"):
        register_and_promote(uri, "churn-min", "log_loss", 0.1, "lower")
    with pytest.raises(ValueError, match="non-finite"):
        register_and_promote(uri, "churn-min", "log_loss", float("nan"), "minimize")


def test_categorical_model_loads_with_lightgbm_flavour(store, tmp_path):
    setup(store[0], "exp-categorical", artifact_location=store[1])
    booster, X = _booster(categorical=True)
    X.loc[X.index[:3], "customers.MODE(orders.ShipMethod)"] = np.nan
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a")
    with mlflow.start_run() as run:
        info = log_model(booster, X)
        tracking.log_artifacts_dir(tmp_path / "plots", "plots")
        tracking.log_dataframe(pd.DataFrame({"feature": ["a"], "mean_abs_shap": [1.0]}), "shap/importance.csv")

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
    artifacts |= {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "shap")}
    assert artifacts == {"plots/a.txt", "shap/importance.csv"}
