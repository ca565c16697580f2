"""Time split with purging, random split, and an encoder fitted on the training part only."""

import numpy as np
import pandas as pd
import pytest

from pipeline.preprocess import Encoder, random_split, time_split


def frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    times = pd.Series(pd.Timestamp("2012-01-01") + pd.to_timedelta(np.arange(n), unit="D"))
    df = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "flag": pd.array(rng.integers(0, 2, n).astype(bool), dtype="boolean"),
            "colour": pd.Categorical(rng.choice(["red", "blue"], n)),
            "constant": 1.0,
            "churn": rng.integers(0, 2, n),
        },
        index=pd.Index(np.arange(n) + 1000, name="SalesOrderID"),
    )
    return df, times.set_axis(df.index)


def test_time_split_orders_parts_in_time_and_purges_label_windows():
    df, times = frame()
    split = time_split(df, times, test_size=0.2, valid_size=0.25, horizon_days=30, min_rows=20)

    def t(part):
        return times.loc[part.index]

    assert t(split.train).max() < t(split.valid).min() <= t(split.valid).max() < t(split.test).min()
    assert len(split.test) == 80
    test_start = t(split.test).min()
    assert (t(split.valid) + pd.Timedelta(days=30) < test_start).all()  # no label window reaches the test period
    assert split.info["purged_train_rows"] == 30


def test_time_split_without_purge_keeps_all_rows():
    df, times = frame()
    split = time_split(df, times, 0.2, 0.25, horizon_days=30, min_rows=20, purge=False)
    assert len(split.train) + len(split.valid) + len(split.test) == len(df)


def test_random_split_is_stratified_and_seeded():
    df, _ = frame()
    a, b = random_split(df, 0.2, 0.2, seed=1, min_rows=20), random_split(df, 0.2, 0.2, seed=1, min_rows=20)
    assert list(a.test.index) == list(b.test.index)
    assert abs(a.test.churn.mean() - df.churn.mean()) < 0.05


def test_encoder_learns_from_train_only_and_keeps_names():
    df, times = frame()
    split = time_split(df, times, 0.2, 0.25, horizon_days=30, min_rows=20)
    train = split.train.copy()
    train["colour"] = pd.Categorical(["red"] * (len(train) - 1) + ["blue"])
    test = split.test.copy()
    test["colour"] = pd.Categorical(["green"] * len(test))  # never seen in training
    enc = Encoder().fit(train)
    assert enc.categories == {"colour": ["blue", "red"]}
    assert "constant" in enc.dropped and "churn" not in enc.columns
    out = enc.transform(test)
    assert list(out.columns) == ["amount", "flag", "colour"]
    assert out["colour"].isna().all()  # unseen category -> missing, handled natively by LightGBM
    assert out["flag"].dtype == "float64"


def test_encoder_rejects_frames_without_usable_features():
    from pipeline.preprocess import SplitError

    with pytest.raises(SplitError, match="no usable feature"):
        Encoder().fit(pd.DataFrame({"c": [1.0, 1.0], "churn": [0, 1]}))
