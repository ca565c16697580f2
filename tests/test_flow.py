"""End to end: the training flow on a small synthetic database, embedded (ephemeral Prefect, SQLite MLflow)."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline.config import load_config
from pipeline.evaluation import score
from pipeline.steps import base_model, load_part, run_artifacts
from tests.helpers import write_small_source

pytestmark = pytest.mark.slow
MARGIN = 0.05  # test AUC by which the model must beat weak references on the same rows (measured: +0.22, +0.17)


def overrides(work: Path, source: str, n_trials: int) -> dict:
    return {
        "paths": {"work_dir": str(work)},
        "data": {"url": source, "generate_if_missing": False},
        "labels": {"horizon_days": 90},
        "features": {
            "agg_primitives": ["count", "sum", "mean", "max", "time_since_first"],
            "trans_primitives": ["month"],
            "max_features": 60,
        },
        "split": {"min_rows": 20},
        "tuning": {"n_trials": n_trials, "n_startup_trials": 2},
    }


def one_round_auc(cfg, art, best_params: dict) -> float:
    """A weak reference on the same rows: the tuned parameters, refit on train + valid, but one tree."""
    X_train, y_train = load_part(art, "train")
    X_valid, y_valid = load_part(art, "valid")
    X_test, y_test = load_part(art, "test")
    model = base_model(cfg)
    model.params.update(best_params)
    model.fit_rounds(pd.concat([X_train, X_valid]), pd.concat([y_train, y_valid]), 1)
    return score("roc_auc", y_test, model.predict_proba(X_test))


def test_training_flow_end_to_end_then_an_incomparable_run_keeps_the_champion(tmp_path):
    from pipeline.flows.training import training_flow

    source = f"sqlite:///{tmp_path}/source.db"
    write_small_source(source, customers=150)
    over = overrides(tmp_path / "work", source, n_trials=4)
    summary = training_flow(overrides=over)

    assert 0.5 < summary["metrics"]["roc_auc"] <= 1.0
    # a real model, not a stub: clearly better than the constant base rate on the same rows, with
    # more than a handful of boosting rounds (a 1-round model passes `AUC > 0.5` too)
    assert summary["metrics"]["roc_auc"] > summary["baselines"]["base_rate"]["roc_auc"] + 0.1
    assert summary["final_rounds"] >= 10
    tuning = summary["tuning"]
    assert tuning["finished_trials"] >= 4 and tuning["failed_trials"] == 0
    assert tuning["complete_trials"] + tuning["pruned_trials"] == tuning["finished_trials"]  # pruned ones count
    assert (summary["labels"]["definition"], summary["labels"]["horizon_days"]) == ("within_horizon", 90)
    assert summary["features"]["features"] > 20 and summary["split"]["purged_train_rows"] >= 0
    # data went through the artifact store, with a manifest written last and intact
    cfg = load_config(overrides=over)
    art = run_artifacts(cfg, summary["run_id"])
    # the boosting carries the score, not one tree: a run that stopped after 1 round fails here
    reference = one_round_auc(cfg, art, tuning["best_params"])
    assert summary["metrics"]["roc_auc"] > reference + MARGIN
    assert summary["metrics"]["roc_auc"] > summary["baselines"]["rfm_logreg"]["roc_auc"] + MARGIN
    # each step timed once, as Prefect measured its task run
    steps_run = {"prepare source", "extract", "labels", "features", "split + encode", "open MLflow run", "tuning"}
    steps_run |= {"final fit + evaluation + SHAP", "baselines", "MLflow logging + registry"}
    assert set(summary["timings"]) == steps_run and summary["timings"]["tuning"] > 0
    manifest = art.read_manifest()
    assert {"features.parquet", "train.parquet", "test.parquet", "encoder.joblib", "model/model.json"} <= set(manifest["artifacts"])
    assert "schema" in manifest["artifacts"]["train.parquet"] and art.verify() == []
    # reports a person looks at
    reports = Path(summary["reports"])
    for name in ("plots/roc_curve.png", "plots/calibration.png", "shap/shap_summary.png", "feature_descriptions.json"):
        assert (reports / name).stat().st_size > 0
    # MLflow: params, metrics, model registered and champion
    client = MlflowClient(cfg.tracking.tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert abs(run.data.metrics["test_roc_auc"] - summary["metrics"]["roc_auc"]) < 1e-9
    assert {k: run.data.metrics[k] for k in ("complete_trials", "pruned_trials")} == {
        k: tuning[k] for k in ("complete_trials", "pruned_trials")
    }
    assert run.data.params["tuning.n_trials"] == "4"
    champion = client.get_model_version_by_alias(cfg.tracking.registered_model, "champion")
    assert int(champion.version) == summary["model"]["version"] == 1
    model = mlflow.lightgbm.load_model(f"models:/{cfg.tracking.registered_model}@champion")
    X_test = art.get_frame("test").drop(columns=["churn"])
    assert model.predict(X_test).shape == (len(X_test),)
    assert json.loads((reports / "feature_descriptions.json").read_text())
    # baselines on the same rows, threshold and calibration from valid, the decision and its reason
    assert set(summary["baselines"]) == {"base_rate", "rfm_logreg", "own_columns_lgbm"}
    assert run.data.metrics["baseline_base_rate_roc_auc"] == 0.5 and (reports / "plots" / "baselines.png").stat().st_size > 0
    assert summary["metrics"]["threshold"] == summary["threshold"]["value"] == run.data.metrics["threshold"]
    assert summary["calibration"]["method"] == "platt"
    first = summary["model"]["promotion"]
    assert first["promote"] and "no champion yet" in first["reason"]
    assert champion.tags["protocol.split.method"] == "time" and champion.tags["protocol.labels.horizon_days"] == "90"
    assert float(champion.tags["threshold"]) == summary["threshold"]["value"]
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "promotion.json", str(tmp_path))).read_text())
    assert logged["promote"] and logged["rows"] == summary["split"]["test_rows"]

    # a random split answers another question: registered, never compared, the alias stays
    random_over = {**over, "split": {**over["split"], "method": "random"}, "tuning": {**over["tuning"], "n_trials": 2}}
    second = training_flow(overrides=random_over)
    decision = second["model"]["promotion"]
    assert second["model"]["version"] == 2 and not second["model"]["promoted"]
    assert decision["comparable"] is False and "split.method differs (champion 'time', challenger 'random')" in decision["reason"]
    assert int(client.get_model_version_by_alias(cfg.tracking.registered_model, "champion").version) == 1
    v2 = client.get_model_version(cfg.tracking.registered_model, "2")
    assert v2.tags["promotion"] == "not promoted" and "split.method differs" in v2.tags["promotion_reason"]


def test_a_run_that_fails_after_opening_its_mlflow_run_marks_that_run_failed(tmp_path):
    from pipeline.flows.training import training_flow
    from pipeline.tuning import TuningError

    source = f"sqlite:///{tmp_path}/source.db"
    write_small_source(source, customers=150)
    over = overrides(tmp_path / "work", source, n_trials=2)
    # nothing listens on port 1: the tuning step fails at once, after the MLflow run was opened
    over["tuning"]["storage"] = "mysql+pymysql://optuna:s3cret@127.0.0.1:1/optuna"
    with pytest.raises(TuningError, match="cannot open the Optuna storage") as failure:
        training_flow(overrides=over)
    assert "s3cret" not in str(failure.value)

    client = MlflowClient(load_config(overrides=over).tracking.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs if r.info.run_name.startswith("train-")] == ["FAILED"]
