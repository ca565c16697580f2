"""Churn labels: boundary cases of the horizon, unlabelled tail, vectorised speed."""

import time

import numpy as np
import pandas as pd
import pytest

from pipeline.labels import LABEL, LabelError, check_labels, label_orders

H = 180


def orders(rows):
    return pd.DataFrame(rows, columns=["SalesOrderID", "CustomerID", "OrderDate"]).assign(OrderDate=lambda d: pd.to_datetime(d.OrderDate))


def labels_by_id(df, horizon=H):
    out = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", horizon)
    return dict(zip(out.SalesOrderID, out[LABEL]))


# a far-away order of another customer sets the end of the data, so early orders are labelled
END = (99, 99, "2015-01-01")


@pytest.mark.parametrize(
    "gap_days, expected",
    [(0, 0), (1, 0), (H - 1, 0), (H, 0), (H + 1, 1)],
    ids=["same day", "next day", "horizon-1", "exactly horizon", "horizon+1"],
)
def test_reorder_within_horizon_is_not_churn(gap_days, expected):
    first = pd.Timestamp("2012-01-01")
    df = orders([(1, 7, first), (2, 7, first + pd.Timedelta(days=gap_days)), END])
    assert labels_by_id(df)[1] == expected


def test_customer_without_further_order_churns():
    df = orders([(1, 7, "2012-01-01"), END])
    assert labels_by_id(df)[1] == 1


def test_orders_within_horizon_of_data_end_are_unlabelled():
    last = pd.Timestamp("2015-01-01")
    df = orders([(1, 7, last - pd.Timedelta(days=H)), (2, 8, last - pd.Timedelta(days=H - 1)), (3, 9, last)])
    labels = labels_by_id(df)
    assert 1 in labels  # exactly `horizon` before the last order date: labelled
    assert 2 not in labels and 3 not in labels  # later: cannot be judged yet


def test_same_day_orders_see_each_other_as_reorders():
    df = orders([(1, 7, "2012-01-01"), (2, 7, "2012-01-01"), END])
    labels = labels_by_id(df)
    assert labels[1] == 0  # another order followed (gap 0)
    assert labels[2] == 1  # the day's last order: nothing after it


def test_unsorted_input_and_other_customers_do_not_interfere():
    df = orders([(3, 7, "2012-12-01"), (1, 7, "2012-01-01"), (2, 8, "2012-02-01"), END])
    labels = labels_by_id(df)
    assert labels[1] == 1  # customer 7's next order is 335 days later
    assert labels[2] == 1


def test_million_orders_in_seconds():
    rng = np.random.default_rng(0)
    n = 1_000_000
    df = pd.DataFrame({
        "SalesOrderID": np.arange(n),
        "CustomerID": rng.integers(0, 200_000, n),
        "OrderDate": pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
    })
    started = time.perf_counter()
    out = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", H)
    assert time.perf_counter() - started < 10
    assert 0 < out[LABEL].mean() < 1 and len(out) < n


def test_one_class_and_empty_labels_are_clear_errors():
    with pytest.raises(LabelError, match="both classes"):
        check_labels(pd.DataFrame({LABEL: [1, 1, 1]}))
    with pytest.raises(LabelError, match="no order is old enough"):
        check_labels(pd.DataFrame({LABEL: []}))
    with pytest.raises(LabelError, match="empty"):
        label_orders(orders([]), "SalesOrderID", "CustomerID", "OrderDate")
    with pytest.raises(LabelError, match="lacks column"):
        label_orders(pd.DataFrame({"x": [1]}), "SalesOrderID", "CustomerID", "OrderDate")
