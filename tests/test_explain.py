import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from pipeline.explain import Explanation, _positive_class_shap, explain, shorten

SIGNAL = "customers.MEAN(orders.TotalDue)"
CATEGORY = "customers.MODE(orders.ShipMethod)"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained():
    """A booster with one strong numeric signal, a native categorical and NaNs, like the pipeline's frames."""
    rng = np.random.default_rng(0)
    n = 300
    X = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            SIGNAL: rng.normal(size=n),
            CATEGORY: pd.Categorical(rng.choice(["air", "ground", "sea"], n)),
            "customers.COUNT(orders)": rng.integers(0, 5, n).astype(float),
        }
    )
    X.loc[rng.random(n) < 0.1, "noise"] = np.nan
    X.loc[rng.random(n) < 0.1, CATEGORY] = np.nan
    y = (2 * X[SIGNAL] + 0.5 * (X[CATEGORY] == "air") + 0.5 * rng.normal(size=n) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "num_threads": 1, "seed": 0}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=30), X


def test_explain_ranks_informative_feature_first(trained, tmp_path):
    booster, X = trained
    result = explain(booster, X, tmp_path / "shap")
    assert isinstance(result, Explanation)
    imp = result.importance
    assert list(imp.columns) == ["feature", "mean_abs_shap"]
    assert set(imp["feature"]) == set(X.columns)
    assert imp["feature"].iloc[0] == SIGNAL
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    assert pd.read_csv(result.importance_csv)["feature"].tolist() == imp["feature"].tolist()
    for plot in (result.summary_plot, result.bar_plot):
        assert plot.parent == tmp_path / "shap"
        assert plot.read_bytes()[:8] == PNG_MAGIC and plot.stat().st_size > 5_000
    assert {result.summary_plot.name, result.bar_plot.name} == {"shap_summary.png", "shap_importance.png"}


def test_row_sample_is_deterministic(trained, tmp_path):
    booster, X = trained
    first = explain(booster, X, tmp_path / "a", max_rows=100, seed=3).importance
    again = explain(booster, X, tmp_path / "b", max_rows=100, seed=3).importance
    pd.testing.assert_frame_equal(first, again)


def test_shorten_keeps_both_ends_of_long_names():
    name = "customers.SUM(orders.MEAN(order_details.LineTotal)) " * 3
    short = shorten(name, limit=40)
    assert len(short) == 40
    assert short.startswith(name[:19]) and short.endswith(name[-20:])
    assert shorten(SIGNAL) == SIGNAL


@pytest.mark.parametrize("layout", ["list", "3d", "2d"])
def test_shap_output_layouts_normalise_to_positive_class(layout):
    positive = np.arange(6.0).reshape(3, 2)
    raw = {"list": [-positive, positive], "3d": np.stack([-positive, positive], axis=-1), "2d": positive}[layout]
    np.testing.assert_array_equal(_positive_class_shap(raw, (3, 2)), positive)
