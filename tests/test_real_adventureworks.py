"""The real AdventureWorks tables (AW_DATA_DIR): loader, spec queries, labels and point-in-time features.

Runs when AW_DATA_DIR names the folder of CSV files (.ci/run sets it); the project never ships that data.
"""

import os
from pathlib import Path

import pytest

from pipeline.data.extract import extract_tables
from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder
from pipeline.features import synthesize
from pipeline.labels import check_labels, label_orders
from pipeline.spec import load_spec

AW = Path(os.environ.get("AW_DATA_DIR", "")) if os.environ.get("AW_DATA_DIR") else None
pytestmark = [
    pytest.mark.skipif(AW is None or not AW.is_dir(), reason="AW_DATA_DIR is not set to the AdventureWorks CSV folder"),
    pytest.mark.slow,
]
SPEC = load_spec("adventureworks")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('aw')}/aw.db"
    load_csv_folder(AW, url, tables=SPEC_TABLES)
    return extract_tables(url, SPEC)


def test_extract_matches_published_counts(tables):
    assert len(tables["orders"]) == 31_465
    assert len(tables["order_details"]) == 121_317
    assert len(tables["customers"]) == 19_820
    assert tables["orders"]["OrderDate"].min().date().isoformat() == "2011-05-31"


def test_labels_on_real_orders(tables):
    labels = label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", 180)
    summary = check_labels(labels)
    assert labels["OrderDate"].max().date().isoformat() == "2014-01-01"  # 180 days before 2014-06-30
    assert 19_000 < summary["labelled_orders"] < 21_000
    assert 0.6 < summary["churn_rate"] < 0.85  # most AdventureWorks customers order once


def test_point_in_time_features_on_a_month_of_real_orders(tables):
    labels = label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", 180)
    month = labels[(labels.OrderDate >= "2013-12-20")]
    result = synthesize(
        SPEC,
        tables,
        month,
        agg_primitives=["count", "sum", "max", "time_since_first"],
        trans_primitives=["month"],
        max_depth=2,
        max_features=40,
    )
    matrix = result.matrix
    assert len(matrix) == len(month)
    orders = tables["orders"].set_index("SalesOrderID")
    # customers.COUNT(orders) at each cutoff = that customer's orders up to and including this one
    for order_id in month.SalesOrderID.sample(25, random_state=0):
        order = orders.loc[order_id]
        history = orders[
            (orders.CustomerID == order.CustomerID)
            & ((orders.OrderDate < order.OrderDate) | ((orders.OrderDate == order.OrderDate) & (orders.index <= order_id)))
        ]
        assert matrix.loc[order_id, "customers.COUNT(orders)"] == len(history)
