"""Deep Feature Synthesis with cutoff times: no feature may see data from after its order's time."""

import pandas as pd
import pytest

from pipeline.data.extract import extract_tables
from pipeline.features import synthesize, tie_broken_instants
from pipeline.labels import LABEL, label_orders
from pipeline.spec import load_spec
from tests.helpers import write_small_source

SPEC = load_spec("adventureworks")
PRIMS = dict(
    agg_primitives=["count", "sum", "mean", "max", "num_unique", "time_since_first"],
    trans_primitives=["month"],
    max_depth=2,
    max_features=80,
)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/small.db"
    write_small_source(url, customers=120)
    return extract_tables(url, SPEC)


def labelled(tables, horizon=90):
    return label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", horizon)


def features(tables, labels):
    return synthesize(SPEC, tables, labels, **PRIMS).matrix


def test_matrix_has_one_row_per_labelled_order_with_real_names(tables):
    labels = labelled(tables)
    result = synthesize(SPEC, tables, labels, **PRIMS)
    assert sorted(result.matrix.index) == sorted(labels.SalesOrderID)
    assert (result.matrix[LABEL].to_numpy() == labels.set_index("SalesOrderID").loc[result.matrix.index, LABEL].to_numpy()).all()
    assert "customers.COUNT(orders)" in result.matrix.columns
    assert "CustomerID" not in result.matrix.columns  # foreign keys are ids, not features
    assert set(result.descriptions) == set(result.matrix.columns) - {LABEL}
    assert all(isinstance(d, str) and d for d in result.descriptions.values())


def test_features_do_not_change_when_later_rows_are_added(tables):
    """Append orders (and lines) dated after every cutoff: every labelled order's features stay equal."""
    labels = labelled(tables)
    before = features(tables, labels)
    last = tables["orders"]["OrderDate"].max()
    customers = labels.merge(tables["orders"][["SalesOrderID", "CustomerID"]]).CustomerID.unique()[:40]
    new_orders = tables["orders"][tables["orders"].CustomerID.isin(customers)].drop_duplicates("CustomerID").copy()
    new_orders["SalesOrderID"] = range(10_000_000, 10_000_000 + len(new_orders))
    new_orders["OrderDate"] = last + pd.Timedelta(days=30)
    new_orders["TotalDue"] = new_orders["SubTotal"] = 99_999.0
    new_lines = tables["order_details"].head(len(new_orders)).copy()
    new_lines["SalesOrderDetailID"] = range(20_000_000, 20_000_000 + len(new_lines))
    new_lines["SalesOrderID"] = new_orders["SalesOrderID"].to_numpy()
    new_lines["OrderDate"] = last + pd.Timedelta(days=30)
    grown = dict(tables, orders=pd.concat([tables["orders"], new_orders]), order_details=pd.concat([tables["order_details"], new_lines]))
    after = features(grown, labels)
    pd.testing.assert_frame_equal(before.sort_index(), after.sort_index())


def test_same_day_later_order_is_invisible_to_the_earlier_one(tables):
    orders = tables["orders"]
    first = orders.sort_values("SalesOrderID").iloc[0]
    twin = first.copy()
    twin["SalesOrderID"] = 9_999_999
    twin["TotalDue"] = 123_456.0
    grown = dict(tables, orders=pd.concat([orders, twin.to_frame().T.astype(orders.dtypes)]))
    labels = pd.DataFrame({"SalesOrderID": [first.SalesOrderID, twin.SalesOrderID], "OrderDate": [first.OrderDate] * 2, LABEL: [0, 1]})
    matrix = features(grown, labels)
    count = matrix["customers.COUNT(orders)"]
    assert count[twin.SalesOrderID] == count[first.SalesOrderID] + 1
    assert matrix.loc[first.SalesOrderID, "customers.MAX(orders.TotalDue)"] < 123_456.0


def test_tie_breaking_moves_only_same_customer_same_time_orders():
    df = pd.DataFrame({"id": [3, 1, 2, 4], "cust": [1, 1, 2, 1], "t": pd.to_datetime(["2020-01-01"] * 3 + ["2020-01-02"])})
    instants = tie_broken_instants(df, "id", "cust", "t")
    assert list(instants - df.t) == [pd.Timedelta(microseconds=1), pd.Timedelta(0), pd.Timedelta(0), pd.Timedelta(0)]
