import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss, log_loss

from pipeline import evaluation
from pipeline.evaluation import (
    METRICS,
    Calibrator,
    calibration_report,
    choose_threshold,
    compute_metrics,
    fit_calibrator,
    metric_direction,
    save_plots,
    score,
)

Y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.45, 0.6, 0.9, 0.2])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_perfect_and_inverted_ranking():
    perfect = Y.astype(float)
    assert score("roc_auc", Y, perfect) == 1.0
    assert score("roc_auc", Y, 1 - perfect) == 0.0
    assert score("pr_auc", Y, perfect) == 1.0


def test_confusion_counts_at_threshold():
    # at 0.5: predicted positive = {0.8, 0.6, 0.9} -> tp 2 (0.8, 0.9), fp 1 (0.6), fn 1 (0.45), tn 4
    m = compute_metrics(Y, P, threshold=0.5)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (4, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert (m["n"], m["positive_rate"], m["threshold"]) == (8, 3 / 8, 0.5)
    # lowering the threshold to 0.4 adds 0.45 (tp) and 0.4 (fp)
    low = compute_metrics(Y, P, threshold=0.4)
    assert (low["tn"], low["fp"], low["fn"], low["tp"]) == (3, 2, 0, 3)


def test_probability_metrics_match_sklearn_and_hand_values():
    m = compute_metrics(Y, P)
    assert m["brier"] == pytest.approx(brier_score_loss(Y, P))
    assert m["log_loss"] == pytest.approx(log_loss(Y, P))
    # 15 positive/negative pairs, 14 ranked correctly (0.45 < 0.6 is the only miss)
    assert m["roc_auc"] == pytest.approx(14 / 15)
    # positives at ranks 1, 2 and 4: AP = (1/1 + 2/2 + 3/4) / 3
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert set(METRICS) <= set(m)


def test_directions_and_unknown_metric():
    assert metric_direction("roc_auc") == "maximize"
    assert metric_direction("brier") == "minimize"
    with pytest.raises(ValueError, match="allowed: roc_auc, pr_auc, log_loss, brier"):
        metric_direction("auc")
    with pytest.raises(ValueError, match="allowed"):
        score("accuracy", Y, P)


@pytest.mark.parametrize(
    "y, p, message",
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "only one class"),
        ([0, 1, 1], [0.2, 0.5], "3 rows but proba has 2"),
        ([0, 1, 2], [0.2, 0.5, 0.9], "0/1 labels"),
        ([0, 1, 1], [0.2, np.nan, 0.9], "without NaN"),
    ],
)
def test_invalid_inputs(y, p, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(y, p)


def test_save_plots_writes_pngs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    paths = save_plots(y, p, 0.5, tmp_path / "plots")
    assert set(paths) == {"roc_curve", "pr_curve", "calibration", "confusion_matrix"}
    for name, path in paths.items():
        assert path == tmp_path / "plots" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 5_000
    assert not evaluation.plt.get_fignums(), "figures must be closed"


def test_choose_threshold_f1_on_known_rows():
    # scores 0.9 0.8 0.6 0.45 0.4 0.35 0.2 0.1 with labels 1 1 0 1 0 0 0 0:
    # threshold 0.45 calls 4 rows, tp 3 fp 1 fn 0 -> F1 6/7, better than 0.8 (F1 4/5) and 0.9 (F1 1/2)
    assert choose_threshold(Y, P, "f1") == 0.45


def test_choose_threshold_precision_at_recall_and_cost():
    # recall >= 0.5 first reached at 0.8 (2 of 3 positives) with precision 1
    assert choose_threshold(Y, P, "precision_at_recall", min_recall=0.5) == 0.8
    # recall 1 needs 0.45 (precision 3/4)
    assert choose_threshold(Y, P, "precision_at_recall", min_recall=1.0) == 0.45
    # a missed churner costs 1 false alarm: 0.45 costs 1 (fp); 0.8 costs 1 (fn): tie -> the higher threshold
    assert choose_threshold(Y, P, "cost", cost_ratio=1.0) == 0.8
    # expensive misses: call everyone down to 0.45 (cost 1 fp) rather than miss one (cost 10)
    assert choose_threshold(Y, P, "cost", cost_ratio=10.0) == 0.45
    # the top score is a non-churner and a miss costs half a false alarm: calling nobody (cost 0.5) is best
    y, p = np.array([1, 0]), np.array([0.2, 0.9])
    nobody = choose_threshold(y, p, "cost", cost_ratio=0.5)
    assert nobody > p.max() and compute_metrics(y, p, nobody)["tp"] + compute_metrics(y, p, nobody)["fp"] == 0
    with pytest.raises(ValueError, match="unknown threshold objective"):
        choose_threshold(Y, P, "accuracy")


def test_choose_threshold_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1), 2)  # rounded: many ties
    best = max(np.unique(p), key=lambda t: (compute_metrics(y, p, t)["f1"], t))
    assert choose_threshold(y, p, "f1") == best


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_fixes_overconfident_scores(method):
    rng = np.random.default_rng(11)
    true_p = rng.uniform(0.05, 0.95, 8000)
    y = (rng.uniform(size=8000) < true_p).astype(int)
    overconfident = expit(3 * logit(true_p) + 1.0)  # too extreme and shifted
    fit_rows, test_rows = slice(0, 4000), slice(4000, None)
    calibrator = fit_calibrator(method, y[fit_rows], overconfident[fit_rows])
    report = calibration_report(y[test_rows], overconfident[test_rows], calibrator.transform(overconfident[test_rows]))
    assert report["log_loss_after"] < report["log_loss_before"] - 0.1
    assert report["brier_after"] < report["brier_before"]
    assert report["log_loss_after"] == pytest.approx(log_loss(y[test_rows], true_p[test_rows]), abs=0.01)
    # the raw threshold maps back onto the calibrated one
    t = 0.6
    assert calibrator.transform([calibrator.raw_threshold(t)])[0] == pytest.approx(t, abs=1e-6)
    assert Calibrator.from_dict(calibrator.to_dict()).transform([0.3, 0.7]).tolist() == calibrator.transform([0.3, 0.7]).tolist()


def test_platt_keeps_ranking_and_refuses_to_invert_it():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 500), 0.01, 0.99)
    calibrated = fit_calibrator("platt", y, p).transform(p)
    assert score("roc_auc", y, calibrated) == pytest.approx(score("roc_auc", y, p))
    inverted = fit_calibrator("platt", y, 1 - p)
    assert inverted.method == "none" and "slope" in inverted.params["skipped"]
    assert fit_calibrator("none", y, p).transform(p).tolist() == p.tolist()
