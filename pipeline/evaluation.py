"""Binary-classifier evaluation: metrics and plots from predicted probabilities, threshold choice, calibration.

Tuning, model selection and promotion all compare models by one named metric, so
the names and their directions live here, in one table (`METRICS`), instead of
being repeated as string literals in every step.

The decision threshold and the probability calibration are both learned on the
validation part (never on test): a fixed 0.5 means nothing when the churn rate is
74%, and LightGBM's scores are not probabilities of the test period's base rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless workers: never try to open a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402
from scipy.special import expit, logit  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

METRICS: dict[str, str] = {
    "roc_auc": "maximize",
    "pr_auc": "maximize",
    "log_loss": "minimize",
    "brier": "minimize",
}

_SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc_score,
    "pr_auc": average_precision_score,
    "log_loss": lambda y, p: log_loss(y, p, labels=[0, 1]),
    "brier": brier_score_loss,
}


def metric_direction(name: str) -> str:
    """'maximize' or 'minimize', in the spelling Optuna and the registry step expect."""
    _check_metric_name(name)
    return METRICS[name]


def score(name: str, y_true: ArrayLike, proba: ArrayLike) -> float:
    """One named metric, the single number tuning optimises and promotion compares."""
    _check_metric_name(name)
    y, p = _validate(y_true, proba)
    return float(_SCORERS[name](y, p))


def compute_metrics(y_true: ArrayLike, proba: ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """All ranking/probability metrics plus the confusion counts at `threshold`.

    Counts are reported alongside the rates because on small, imbalanced test sets
    a precision of 1.0 from a single true positive is otherwise indistinguishable
    from a good model.
    """
    y, p = _validate(y_true, proba)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, p >= threshold, labels=[0, 1]).ravel())
    metrics: dict[str, float] = {name: float(fn_(y, p)) for name, fn_ in _SCORERS.items()}
    metrics.update(
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=_ratio(tp + tn, len(y)),
        tn=tn,
        fp=fp,
        fn=fn,
        tp=tp,
        n=len(y),
        positive_rate=float(y.mean()),
        threshold=float(threshold),
    )
    return metrics


THRESHOLD_OBJECTIVES = ("f1", "precision_at_recall", "cost")
CALIBRATION_METHODS = ("platt", "isotonic", "none")


def choose_threshold(y_true: ArrayLike, proba: ArrayLike, objective: str, min_recall: float = 0.5, cost_ratio: float = 1.0) -> float:
    """The threshold (predict churn when proba >= threshold) that is best on these rows for `objective`.

    - `f1`: maximise F1;
    - `precision_at_recall`: the highest precision among thresholds whose recall is at least `min_recall`;
    - `cost`: minimise false alarms + `cost_ratio` x missed churners (`cost_ratio` = cost of missing a
      churner relative to a needless retention offer).

    Candidates are the distinct predicted values (each is the lowest score still called churn),
    plus "nobody", so the answer is exact on these rows; ties go to the highest threshold.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(
            f"unknown threshold objective {objective!r}; allowed: {', '.join(THRESHOLD_OBJECTIVES)} (or 'fixed' in the config)"
        )
    y, p = _validate(y_true, proba)
    order = np.argsort(-p, kind="mergesort")
    scores, labels = p[order], y[order]
    group_end = np.r_[scores[1:] != scores[:-1], True]  # predicting >= a score calls its whole tie group
    tp = np.r_[0, np.cumsum(labels)[group_end]]
    fp = np.r_[0, np.cumsum(1 - labels)[group_end]]
    candidates = np.r_[np.nextafter(scores[0], np.inf), scores[group_end]]
    positives = labels.sum()
    fn = positives - tp
    if objective == "f1":
        value = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    elif objective == "precision_at_recall":
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        value = np.where(tp / positives >= min_recall, precision, -1.0)
    else:
        value = -(fp + cost_ratio * fn)
    return float(candidates[int(np.argmax(value))])


@dataclass
class Calibrator:
    """A monotone map from the booster's probabilities to calibrated ones, fitted on validation predictions.

    `platt`: logistic regression on the log-odds (two numbers, strictly increasing, so ROC/PR AUC are
    unchanged and it tolerates the small score shift of the refit model); `isotonic`: a
    non-decreasing step-wise linear map (more flexible, needs thousands of rows, creates ties);
    `none`: identity.
    """

    method: str = "none"
    params: dict[str, Any] = field(default_factory=dict)

    def transform(self, proba: ArrayLike) -> np.ndarray:
        p = np.asarray(proba, dtype=float)
        if self.method == "platt":
            return expit(self.params["a"] * logit(_clip(p)) + self.params["b"])
        if self.method == "isotonic":
            return np.interp(p, self.params["x"], self.params["y"])
        return p

    def raw_threshold(self, threshold: float) -> float:
        """The booster output at which the calibrated probability reaches `threshold` (for users of the raw model)."""
        if self.method == "platt":
            return float(expit((logit(threshold) - self.params["b"]) / self.params["a"]))
        if self.method == "isotonic":
            x, y = np.asarray(self.params["x"]), np.asarray(self.params["y"])
            above = np.flatnonzero(y >= threshold)
            if not len(above):
                return 1.0
            j = int(above[0])
            if j == 0:
                return float(x[0])
            return float(x[j - 1] + (threshold - y[j - 1]) / (y[j] - y[j - 1]) * (x[j] - x[j - 1]))
        return float(threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Calibrator:
        return cls(method=saved["method"], params=saved.get("params", {}))


def fit_calibrator(method: str, y_true: ArrayLike, proba: ArrayLike) -> Calibrator:
    """Fit `method` on (validation) predictions. A Platt slope <= 0 would reverse the ranking: identity instead."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {method!r}; allowed: {', '.join(CALIBRATION_METHODS)}")
    y, p = _validate(y_true, proba)
    if method == "platt":
        fit = LogisticRegression(C=1e4, max_iter=1000).fit(logit(_clip(p)).reshape(-1, 1), y)
        a, b = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        if a <= 0:
            return Calibrator("none", {"skipped": f"Platt slope {a:.3g} <= 0: the scores do not rank the validation rows"})
        return Calibrator("platt", {"a": a, "b": b})
    if method == "isotonic":
        eps = 1.0 / (len(y) + 2)  # never exactly 0 or 1: one surprise would make log loss infinite
        iso = IsotonicRegression(y_min=eps, y_max=1 - eps, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
    return Calibrator("none")


def calibration_report(y_true: ArrayLike, raw: ArrayLike, calibrated: ArrayLike) -> dict[str, float]:
    """Log loss and Brier score before and after calibration, on the same rows."""
    y, p = _validate(y_true, raw)
    _, q = _validate(y_true, calibrated)
    return {
        "log_loss_before": score("log_loss", y, p),
        "log_loss_after": score("log_loss", y, q),
        "brier_before": score("brier", y, p),
        "brier_after": score("brier", y, q),
    }


def save_plots(y_true: ArrayLike, proba: ArrayLike, threshold: float, out_dir: str | Path) -> dict[str, Path]:
    """Write the four diagnostic PNGs reviewers look at before trusting a metric."""
    y, p = _validate(y_true, proba)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    painters = {
        "roc_curve": _plot_roc,
        "pr_curve": _plot_pr,
        "calibration": _plot_calibration,
        "confusion_matrix": lambda y_, p_: _plot_confusion(y_, p_, threshold),
    }
    paths: dict[str, Path] = {}
    for name, paint in painters.items():
        fig = paint(y, p)
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


def _check_metric_name(name: str) -> None:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(METRICS)}")


def _validate(y_true: ArrayLike, proba: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Fail with a readable message instead of a deep sklearn traceback."""
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but proba has {len(p)}")
    if not np.isin(y, [0, 1]).all():
        raise ValueError(f"y_true must contain only 0/1 labels, got {np.unique(y)[:10].tolist()}")
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"y_true contains only one class ({len(y)} rows, all {y[0] if len(y) else 'empty'}); "
            "ROC/PR metrics need both churners and non-churners in the evaluation set"
        )
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("proba must be probabilities in [0, 1] without NaN")
    return y.astype(int), p


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, 1e-7, 1 - 1e-7)


def _ratio(num: int, den: int) -> float:
    """Precision/recall/F1 are defined as 0 when nothing is predicted or present (sklearn's zero_division=0)."""
    return num / den if den else 0.0


def _plot_roc(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    fpr, tpr, _ = roc_curve(y, p)
    auc = roc_auc_score(y, p)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="chance (AUC = 0.5)")
    _square_axes(ax, "False positive rate", "True positive rate")
    ax.set_title(f"ROC curve — AUC {auc:.3f}")
    ax.legend(loc="lower right")
    return fig


def _plot_pr(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    precision, recall, _ = precision_recall_curve(y, p)
    ap = average_precision_score(y, p)
    base = y.mean()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.step(recall, precision, where="post", lw=2, label=f"model (AP = {ap:.3f})")
    ax.axhline(base, ls="--", color="grey", label=f"no skill (positive rate = {base:.3f})")
    _square_axes(ax, "Recall", "Precision")
    ax.set_title(f"Precision–recall curve — PR AUC (AP) {ap:.3f}")
    ax.legend(loc="best")
    return fig


def _plot_calibration(y: np.ndarray, p: np.ndarray) -> plt.Figure:
    """Reliability diagram over a histogram, so sparse bins are visibly sparse."""
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    ax.plot(mean_pred, frac_pos, marker="o", lw=2, label="model")
    ax.set_ylabel("Observed fraction of positives")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"Calibration — Brier {brier_score_loss(y, p):.3f}, log loss {log_loss(y, p, labels=[0, 1]):.3f}")
    bins = np.linspace(0, 1, 21)
    hist.hist([p[y == 0], p[y == 1]], bins=bins, stacked=True, label=["negative", "positive"], color=["tab:blue", "tab:orange"])
    hist.set_xlabel("Predicted probability")
    hist.set_ylabel("Rows")
    hist.set_xlim(0, 1)
    hist.legend(loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return fig


def _plot_confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> plt.Figure:
    cm = confusion_matrix(y, p >= threshold, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for (i, j), count in np.ndenumerate(cm):
        colour = "white" if count > cm.max() / 2 else "black"
        ax.text(j, i, f"{count}\n({count / cm.sum():.1%})", ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], labels=["0 (negative)", "1 (positive)"])
    ax.set_yticks([0, 1], labels=["0 (negative)", "1 (positive)"])
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title(f"Confusion matrix at threshold {threshold:g}")
    return fig


def _square_axes(ax: plt.Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
