"""Churn labels: boundary cases of the horizon, unlabelled tail, vectorised speed."""

import time

import numpy as np
import pandas as pd
import pytest

from pipeline.labels import LABEL, LabelError, check_labels, label_orders

H = 180


def orders(rows):
    return pd.DataFrame(rows, columns=["SalesOrderID", "CustomerID", "OrderDate"]).assign(OrderDate=lambda d: pd.to_datetime(d.OrderDate))


def labels_by_id(df, horizon=H, definition="within_horizon"):
    out = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", horizon, definition)
    return dict(zip(out.SalesOrderID, out[LABEL], strict=False))


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


@pytest.mark.parametrize(
    "gap_days, expected",
    [(0, 1), (1, 1), (H - 1, 1), (H, 1), (H + 1, 0), (3 * H, 0)],
    ids=["same day", "next day", "horizon-1", "exactly horizon", "horizon+1", "long after"],
)
def test_active_after_horizon_needs_an_order_strictly_after_the_horizon(gap_days, expected):
    first = pd.Timestamp("2012-01-01")
    df = orders([(1, 7, first), (2, 7, first + pd.Timedelta(days=gap_days)), END])
    assert labels_by_id(df, definition="active_after_horizon")[1] == expected


def test_definitions_disagree_where_they_should():
    """Back soon then gone: churn only for active_after; back only after a long gap: churn only for within."""
    first = pd.Timestamp("2012-01-01")
    df = orders(
        [
            (1, 7, first),
            (2, 7, first + pd.Timedelta(days=10)),  # customer 7: one quick re-order, then nothing
            (3, 8, first),
            (4, 8, first + pd.Timedelta(days=H + 30)),  # customer 8: comes back after the horizon
            (5, 9, first),
            (6, 9, first + pd.Timedelta(days=10)),
            (7, 9, first + pd.Timedelta(days=H + 30)),  # both
            END,
        ]
    )
    within, active = labels_by_id(df), labels_by_id(df, definition="active_after_horizon")
    assert (within[1], active[1]) == (0, 1)
    assert (within[3], active[3]) == (1, 0)
    assert (within[5], active[5]) == (0, 0)
    # each order is judged from its own date: order 6's next order comes horizon + 20 days later
    assert (within[6], active[6]) == (1, 0)


def test_last_order_churns_under_both_definitions():
    df = orders([(1, 7, "2012-01-01"), (2, 7, "2012-03-01"), END])
    for definition in ("within_horizon", "active_after_horizon"):
        assert labels_by_id(df, definition=definition)[2] == 1


def test_both_definitions_label_the_same_orders():
    rng = np.random.default_rng(1)
    n = 2000
    df = pd.DataFrame(
        {
            "SalesOrderID": np.arange(n),
            "CustomerID": rng.integers(0, 300, n),
            "OrderDate": pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 1200, n), unit="D"),
        }
    )
    within = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", H, "within_horizon")
    active = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", H, "active_after_horizon")
    pd.testing.assert_frame_equal(within.drop(columns=LABEL), active.drop(columns=LABEL))
    assert 0 < (within[LABEL] != active[LABEL]).mean() < 1


def test_unknown_definition_is_a_clear_error():
    with pytest.raises(LabelError, match="labels.definition must be one of"):
        label_orders(orders([(1, 7, "2012-01-01"), END]), "SalesOrderID", "CustomerID", "OrderDate", H, "never_again")


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


@pytest.mark.parametrize("definition", ["within_horizon", "active_after_horizon"])
def test_million_orders_in_seconds(definition):
    rng = np.random.default_rng(0)
    n = 1_000_000
    df = pd.DataFrame(
        {
            "SalesOrderID": np.arange(n),
            "CustomerID": rng.integers(0, 200_000, n),
            "OrderDate": pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
        }
    )
    started = time.perf_counter()
    out = label_orders(df, "SalesOrderID", "CustomerID", "OrderDate", H, definition)
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


def test_make_labels_uses_the_configured_definition_and_names_it(tmp_path):
    from pipeline import steps
    from pipeline.config import load_config

    first = pd.Timestamp("2012-01-01")
    df = orders([(1, 7, first), (2, 7, first + pd.Timedelta(days=10)), (3, 8, first), (4, 8, first + pd.Timedelta(days=H + 30)), END])
    summaries = {}
    for definition in ("within_horizon", "active_after_horizon"):
        cfg = load_config(overrides={"paths": {"work_dir": str(tmp_path)}, "labels": {"definition": definition}})
        art = steps.run_artifacts(cfg, definition)
        art.put_frame("tables/orders", df)
        summary = steps.make_labels(cfg, art)
        stored = art.get_frame("labels")
        expected = labels_by_id(df, definition=definition)
        assert dict(zip(stored.SalesOrderID, stored[LABEL], strict=False)) == expected
        assert summary["churn_rate"] == np.mean(list(expected.values())) and summary["labelled_orders"] == 4
        summaries[definition] = summary
    assert {s["definition"] for s in summaries.values()} == {"within_horizon", "active_after_horizon"}
    assert all(s["horizon_days"] == H for s in summaries.values())


def test_unknown_definition_in_config_names_the_key():
    from pipeline.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="labels.definition"):
        load_config(overrides={"labels": {"definition": "never_again"}})
