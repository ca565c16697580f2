"""Binary-classifier evaluation: metrics and plots from predicted probabilities.

Tuning, model selection and promotion all compare models by one named metric, so
the names and their directions live here, in one table (`METRICS`), instead of
being repeated as string literals in every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # headless workers: never try to open a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
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
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfectly calibrated")
    ax.plot(mean_pred, frac_pos, marker="o", lw=2, label="model")
    ax.set_ylabel("Observed fraction of positives")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"Calibration — Brier {brier_score_loss(y, p):.3f}, log loss {log_loss(y, p, labels=[0, 1]):.3f}")
    bins = np.linspace(0, 1, 21)
    hist.hist([p[y == 0], p[y == 1]], bins=bins, stacked=True, label=["negative", "positive"],
              color=["tab:blue", "tab:orange"])
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
