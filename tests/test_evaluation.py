import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from pipeline import evaluation
from pipeline.evaluation import METRICS, compute_metrics, metric_direction, save_plots, score

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
