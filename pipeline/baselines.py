"""Baselines scored on the model's own test rows: what the model has to beat to be worth deploying.

- `base_rate`: the training churn rate for everyone (the floor for log loss and Brier);
- `rfm_logreg`: logistic regression on the customer's recency / frequency / monetary history as of
  each order (prior orders, days since the first and the last prior order, total and mean value of
  prior orders), computed point-in-time like the features: only the customer's strictly earlier
  orders, plus same-timestamp orders with a smaller order key;
- `own_columns_lgbm`: LightGBM on the order row's own columns (no joins, no history), fixed params.

All are fitted on the same rows as the model, train + valid (the LightGBM baseline early-stops on
valid, then is refit on train + valid with proportionally more rounds, exactly like the model),
and scored on the same test rows. Pure functions: frames in, arrays and dicts out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.evaluation import METRICS, plt, score
from pipeline.labels import LABEL
from pipeline.models import LightGBMModel
from pipeline.preprocess import Encoder

DEFAULT_VALUE_COLUMNS = ("TotalDue", "SubTotal")
OWN_COLUMNS_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "verbosity": -1,
}


def value_column(orders: pd.DataFrame, configured: str | None) -> str | None:
    """The monetary column: the configured one (must exist and be numeric), else TotalDue, else SubTotal, else none."""
    if configured is not None:
        if configured not in orders.columns or not pd.api.types.is_numeric_dtype(orders[configured]):
            raise ValueError(
                f"model.baseline_value_column={configured!r} is not a numeric column of the target table "
                f"(columns: {sorted(map(str, orders.columns))}); set it to one of them or to null"
            )
        return configured
    return next((c for c in DEFAULT_VALUE_COLUMNS if c in orders.columns and pd.api.types.is_numeric_dtype(orders[c])), None)


def rfm_features(orders: pd.DataFrame, order_key: str, customer_key: str, time_index: str, value: str | None) -> pd.DataFrame:
    """Recency / frequency / monetary history of each order's customer as of that order, indexed by order key.

    Days since first/last prior order are NaN for a customer's first order; the monetary columns
    are left out when `value` is None. Missing values count as unknown (not as 0) in the mean.
    """
    frame = orders[[order_key, customer_key, time_index] + ([value] if value else [])].copy()
    frame[time_index] = pd.to_datetime(frame[time_index])
    frame = frame.sort_values([customer_key, time_index, order_key], kind="mergesort")
    by_customer = frame.groupby(customer_key, sort=False)
    prior = by_customer.cumcount()
    has_prior = prior > 0
    out = pd.DataFrame(index=frame[order_key].to_numpy())
    out["prior_orders"] = prior.to_numpy()
    out["days_since_first_order"] = _days(frame[time_index] - by_customer[time_index].transform("first")).where(has_prior).to_numpy()
    out["days_since_last_order"] = _days(frame[time_index] - by_customer[time_index].shift(1)).to_numpy()
    if value:
        amount = frame[value].astype("float64")
        known = amount.notna().astype("int64")
        total = amount.fillna(0).groupby(frame[customer_key], sort=False).cumsum() - amount.fillna(0)
        counted = known.groupby(frame[customer_key], sort=False).cumsum() - known
        out["prior_total_value"] = total.to_numpy()
        out["prior_mean_value"] = (total / counted.where(counted > 0)).to_numpy()
    out.index.name = order_key
    return out


def _days(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 86400


def base_rate(y_fit: pd.Series, n_rows: int) -> np.ndarray:
    return np.full(n_rows, float(np.mean(y_fit)))


def rfm_logreg(F_fit: pd.DataFrame, y_fit: pd.Series, F_score: pd.DataFrame) -> np.ndarray:
    """Logistic regression on the RFM columns; missing history imputed with a has-missing indicator."""
    model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(F_fit.to_numpy(dtype=float), np.asarray(y_fit))
    return model.predict_proba(F_score.to_numpy(dtype=float))[:, 1]


def own_columns_lgbm(parts: dict[str, tuple[pd.DataFrame, pd.Series]], metric: str, num_threads: int = 0) -> np.ndarray:
    """LightGBM on `parts` (train, valid, test: raw own columns + label): encoded on train, early stopping on valid, refit on both."""
    encoder = Encoder().fit(parts["train"][0].assign(**{LABEL: parts["train"][1]}))
    X = {name: encoder.transform(frame) for name, (frame, _) in parts.items()}
    y = {name: label for name, (_, label) in parts.items()}
    model = LightGBMModel(
        params=dict(OWN_COLUMNS_PARAMS), num_boost_round=1000, early_stopping_rounds=50, metric=metric, num_threads=num_threads
    )
    rounds = model.fit(X["train"], y["train"], X["valid"], y["valid"]).best_iteration
    n_fit = len(X["train"]) + len(X["valid"])
    model.fit_rounds(pd.concat([X["train"], X["valid"]]), pd.concat([y["train"], y["valid"]]), round(rounds * n_fit / len(X["train"])))
    return model.predict_proba(X["test"])


def own_columns(orders: pd.DataFrame, order_key: str, drop: list[str]) -> pd.DataFrame:
    """The target table's own columns, indexed by its key, without identifiers and the spec's dropped columns."""
    return orders.set_index(order_key).drop(columns=[c for c in drop if c in orders.columns and c != order_key])


def metrics_of(y_true: pd.Series | np.ndarray, proba: np.ndarray) -> dict[str, float]:
    return {name: score(name, y_true, proba) for name in METRICS}


def save_comparison_plot(model: dict[str, float], baselines: dict[str, dict[str, float]], path: str | Path) -> Path:
    """One panel per metric: the model's bar beside each baseline's, arrows saying which way is better."""
    names = ["model", *baselines]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4))
    for ax, (metric, direction) in zip(axes, METRICS.items(), strict=True):
        values = [model[metric], *(baselines[b][metric] for b in baselines)]
        bars = ax.bar(names, values, color=["tab:orange", *["tab:blue"] * len(baselines)])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_title(f"{metric} ({'higher' if direction == 'maximize' else 'lower'} is better)")
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle("Model vs baselines on the same test rows")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
