"""SHAP explanations of a LightGBM booster: importance table and plots.

Global importance is the mean |SHAP value| per feature on a deterministic row
sample: unlike LightGBM's split/gain importance it is measured in the model's
output units (log-odds) and is consistent across features, so it is what we
show reviewers and log next to the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless workers: never try to open a display

import lightgbm  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402

TOP_N = 20  # plus one "Sum of N other features" row
MAX_LABEL_CHARS = 60


@dataclass(frozen=True)
class Explanation:
    importance: pd.DataFrame  # columns: feature, mean_abs_shap; sorted descending
    summary_plot: Path
    bar_plot: Path
    importance_csv: Path


def explain(booster: lightgbm.Booster, X: pd.DataFrame, out_dir: str | Path, max_rows: int = 2000, seed: int = 0) -> Explanation:
    """Explain `booster` on up to `max_rows` rows of `X` and write the plots and CSV to `out_dir`.

    `X` must be a frame the booster can predict on (same columns, pandas
    `category` dtypes as in training); NaNs are fine. The sample is drawn with
    `seed`, so reruns on the same data give the same plots.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = X.sample(n=max_rows, random_state=seed) if len(X) > max_rows else X
    values = shap_values(booster, sample)

    importance = (
        pd.DataFrame({"feature": [str(c) for c in sample.columns], "mean_abs_shap": np.abs(values).mean(axis=0)})
        .sort_values("mean_abs_shap", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    importance_csv = out / "shap_importance.csv"
    importance.to_csv(importance_csv, index=False)

    labelled = shap.Explanation(
        values=values,
        data=_numeric_view(sample),
        feature_names=[shorten(str(c)) for c in sample.columns],
    )
    rows = f"{len(sample)} rows"
    summary_plot = _save(
        out / "shap_summary.png",
        lambda: shap.plots.beeswarm(labelled, max_display=TOP_N + 1, show=False),
        f"SHAP values (log-odds of churn), top {min(TOP_N, sample.shape[1])} features, {rows}",
    )
    bar_plot = _save(
        out / "shap_importance.png",
        lambda: shap.plots.bar(labelled, max_display=TOP_N + 1, show=False),
        f"Mean |SHAP| feature importance, {rows}",
    )
    return Explanation(importance, summary_plot, bar_plot, importance_csv)


def shap_values(booster: lightgbm.Booster, X: pd.DataFrame) -> np.ndarray:
    """SHAP values of the churn class (log-odds), one row per row of `X`, one column per feature."""
    with warnings.catch_warnings():
        # shap warns that binary LightGBM output "changed to a list of ndarray"; _positive_class_shap copes either way
        warnings.filterwarnings("ignore", message="LightGBM binary classifier", category=UserWarning)
        raw = shap.TreeExplainer(booster).shap_values(X)
    return _positive_class_shap(raw, X.shape)


def shorten(name: str, limit: int = MAX_LABEL_CHARS) -> str:
    """Cut the middle of a long featuretools name: both the entity path and the column stay readable."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return f"{name[:head]}…{name[-(limit - 1 - head) :]}"


def _positive_class_shap(raw: np.ndarray | list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """SHAP's binary LightGBM output has been a list per class, a 3-D array and a 2-D array across versions."""
    values = np.asarray(raw[-1] if isinstance(raw, list) else raw)
    if values.ndim == 3:  # (rows, features, classes)
        values = values[..., -1]
    if values.shape != shape:
        raise ValueError(f"unexpected SHAP values shape {values.shape} for data of shape {shape}")
    return values


def _numeric_view(X: pd.DataFrame) -> np.ndarray:
    """Beeswarm colours points by feature value and needs numbers: categories become codes, missing stays NaN."""
    numeric = X.apply(lambda c: c.cat.codes.where(c.notna()) if isinstance(c.dtype, pd.CategoricalDtype) else c)
    return numeric.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)


def _save(path: Path, draw: Callable[[], object], title: str) -> Path:
    """Run a SHAP plotting call on a fresh figure (SHAP draws on the current one) and save it, wide labels included."""
    fig = plt.figure()
    draw()
    fig.axes[0].set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
