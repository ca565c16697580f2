"""Tuning: the reference design this platform replaces against ours, on the same rows and search space.

Reference design (as it ran before this platform): one process, 100 Optuna trials as 5 threads
(`study.optimize(n_jobs=5)`), each trial a 5-fold stratified `lightgbm.cv` on all cores of the
machine (so 5 x cores LightGBM threads compete for the cores), a fresh Dataset per trial, early
stopping per fold but no pruning across trials; the best parameters are refit on train + valid with
the mean best round count. Ours: the pipeline's tuning step (one shared binned Dataset, median
pruning on the validation part, early stopping) and its final fit (calibration, threshold, SHAP).

Both tune on the train + valid rows of one pipeline run (the leakage-safe run) and are scored on its
test rows. The tuning scores differ in kind (5-fold CV AUC vs validation AUC), so "best score" is
compared on the test rows.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightgbm as lgb
import optuna
import pandas as pd

from bench import harness
from pipeline import steps
from pipeline.config import Config, deep_merge
from pipeline.evaluation import score
from pipeline.tuning import sampler, suggest

log = logging.getLogger(__name__)
REFERENCE_THREADS = 5
REFERENCE_FOLDS = 5


def reference_design(cfg: Config, X: pd.DataFrame, y: pd.Series, n_trials: int) -> tuple[dict[str, Any], int, float]:
    """Tune as the reference design did: returns best params, their mean best round count, best CV AUC."""
    base = {**cfg.model.params, "metric": "auc", "num_threads": os.cpu_count() or 1, "verbosity": -1, "feature_pre_filter": False}

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **suggest(trial, cfg.tuning.search_space)}
        result = lgb.cv(
            params,
            lgb.Dataset(X, label=y.to_numpy()),
            num_boost_round=cfg.model.num_boost_round,
            nfold=REFERENCE_FOLDS,
            stratified=True,
            seed=cfg.tuning.seed,
            callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
        )
        aucs = result["valid auc-mean"]
        trial.set_user_attr("rounds", len(aucs))
        return float(aucs[-1])

    study = optuna.create_study(direction="maximize", sampler=sampler(cfg.tuning.seed, cfg.tuning.n_startup_trials))
    study.optimize(objective, n_trials=n_trials, n_jobs=REFERENCE_THREADS)
    return {**base, **study.best_params}, int(study.best_trial.user_attrs["rounds"]), float(study.best_value)


def run(quality_overrides: dict[str, Any], run_id: str, n_trials: int) -> dict[str, Any]:
    """Both designs on the rows of the pipeline run `run_id` (made with `quality_overrides`)."""
    cfg = harness.config(quality_overrides)
    art = steps.run_artifacts(cfg, run_id)
    (X_train, y_train), (X_valid, y_valid), (X_test, y_test) = (steps.load_part(art, p) for p in ("train", "valid", "test"))
    X_fit, y_fit = pd.concat([X_train, X_valid]), pd.concat([y_train, y_valid])

    (params, rounds, cv_auc), ref_tuning_s = harness.timed(reference_design, cfg, X_fit, y_fit, n_trials)
    booster, ref_fit_s = harness.timed(lgb.train, params, lgb.Dataset(X_fit, label=y_fit.to_numpy()), num_boost_round=rounds)
    reference = {
        "trials": n_trials,
        "tuning_seconds": round(ref_tuning_s, 1),
        "final_fit_seconds": round(ref_fit_s, 1),
        "best_cv_auc": cv_auc,
        "test_auc": score("roc_auc", y_test, booster.predict(X_test)),
    }
    log.info("reference design: %s", reference)

    # a study of its own on the same run (the quality run's study holds that run's trials)
    ours_cfg = harness.config(deep_merge(quality_overrides, {"tuning": {"n_trials": n_trials, "study_name": "ours-vs-reference"}}))
    tuned, ours_tuning_s = harness.timed(harness.run_step, ours_cfg, run_id, "tuning")
    fitted, ours_fit_s = harness.timed(harness.run_step, ours_cfg, run_id, "final_fit", tuned)
    ours = {
        "trials": tuned["finished_trials"],
        "complete_trials": tuned["complete_trials"],
        "pruned_trials": tuned["pruned_trials"],
        "tuning_seconds": round(ours_tuning_s, 1),
        "final_fit_seconds": round(ours_fit_s, 1),
        "best_valid_auc": tuned["best_value"],
        "test_auc": fitted["metrics"]["roc_auc"],
    }
    log.info("ours: %s", ours)
    total = {name: r["tuning_seconds"] + r["final_fit_seconds"] for name, r in (("reference", reference), ("ours", ours))}
    return {
        "rows": {"fit": len(X_fit), "test": len(X_test), "features": X_fit.shape[1]},
        "reference": reference,
        "ours": ours,
        "reference_over_ours_tuning_time_ratio": round(reference["tuning_seconds"] / ours["tuning_seconds"], 2),
        "reference_over_ours_total_time_ratio": round(total["reference"] / total["ours"], 2),
        "ours_minus_reference_test_auc": round(ours["test_auc"] - reference["test_auc"], 4),
        # the target compares tuning: our final fit also calibrates, picks a threshold, plots and runs SHAP
        "target_met": ours["test_auc"] >= reference["test_auc"] and ours["tuning_seconds"] < reference["tuning_seconds"],
    }
