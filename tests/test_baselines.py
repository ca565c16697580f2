"""Baselines: point-in-time RFM history against a row-by-row reference, and the three scorers on known data."""

import numpy as np
import pandas as pd
import pytest

from pipeline import baselines
from tests.helpers import small_tables


def brute_force_rfm(orders: pd.DataFrame, value: str) -> pd.DataFrame:
    """For each order, look at every order of its customer that came strictly before it (same instant: smaller key)."""
    rows = {}
    for order in orders.itertuples(index=False):
        mine = orders[orders.CustomerID == order.CustomerID]
        before = mine[(mine.OrderDate < order.OrderDate) | ((mine.OrderDate == order.OrderDate) & (mine.SalesOrderID < order.SalesOrderID))]
        known = before[value].dropna()
        rows[order.SalesOrderID] = {
            "prior_orders": len(before),
            "days_since_first_order": (order.OrderDate - before.OrderDate.min()).total_seconds() / 86400 if len(before) else np.nan,
            "days_since_last_order": (order.OrderDate - before.OrderDate.max()).total_seconds() / 86400 if len(before) else np.nan,
            "prior_total_value": known.sum(),
            "prior_mean_value": known.mean() if len(known) else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_rfm_features_match_row_by_row_reference():
    orders = small_tables(customers=60, seed=4)["SalesOrderHeader"]  # month-start dates: many same-day ties
    orders = orders.sample(frac=1.0, random_state=0)  # input order must not matter
    orders.loc[orders.index[::7], "TotalDue"] = np.nan
    assert orders.duplicated(["CustomerID", "OrderDate"]).any(), "the fixture must contain same-instant ties"
    got = baselines.rfm_features(orders, "SalesOrderID", "CustomerID", "OrderDate", "TotalDue")
    expected = brute_force_rfm(orders, "TotalDue")
    pd.testing.assert_frame_equal(got.sort_index(), expected.loc[got.sort_index().index], check_names=False, check_dtype=False)
    no_money = baselines.rfm_features(orders, "SalesOrderID", "CustomerID", "OrderDate", None)
    assert list(no_money.columns) == ["prior_orders", "days_since_first_order", "days_since_last_order"]


def test_value_column_defaults_and_errors():
    orders = pd.DataFrame({"TotalDue": [1.0], "SubTotal": [1.0], "Comment": ["x"]})
    assert baselines.value_column(orders, None) == "TotalDue"
    assert baselines.value_column(orders.drop(columns=["TotalDue"]), None) == "SubTotal"
    assert baselines.value_column(orders[["Comment"]], None) is None
    assert baselines.value_column(orders, "SubTotal") == "SubTotal"
    with pytest.raises(ValueError, match="baseline_value_column='Comment' is not a numeric column"):
        baselines.value_column(orders, "Comment")


def test_scorers_learn_a_real_signal_and_the_base_rate_is_flat():
    rng = np.random.default_rng(0)
    n = 900
    history = pd.DataFrame({"prior_orders": rng.poisson(2, n), "days_since_last_order": rng.uniform(0, 400, n)})
    y = pd.Series((rng.uniform(size=n) < 1 / (1 + np.exp(history.prior_orders - 2))).astype(int))
    fit, test = slice(0, 600), slice(600, None)
    rfm = baselines.rfm_logreg(history.iloc[fit], y.iloc[fit], history.iloc[test])
    assert baselines.metrics_of(y.iloc[test], rfm)["roc_auc"] > 0.7
    flat = baselines.base_rate(y.iloc[fit], n - 600)
    assert np.all(flat == y.iloc[fit].mean()) and baselines.metrics_of(y.iloc[test], flat)["roc_auc"] == 0.5
    own = history.assign(channel=pd.Categorical(np.where(y == 1, "web", "store")))  # a leaky own column: easy to learn
    parts = {"train": (own.iloc[:450], y.iloc[:450]), "valid": (own.iloc[450:600], y.iloc[450:600]), "test": (own.iloc[600:], y.iloc[600:])}
    proba = baselines.own_columns_lgbm(parts, "roc_auc", num_threads=1)
    assert proba.shape == (300,) and baselines.metrics_of(y.iloc[test], proba)["roc_auc"] > 0.95


def test_comparison_plot(tmp_path):
    model = {"roc_auc": 0.7, "pr_auc": 0.8, "log_loss": 0.5, "brier": 0.2}
    path = baselines.save_comparison_plot(model, {"base_rate": {**model, "roc_auc": 0.5}}, tmp_path / "plots" / "b.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
