"""The columnar engine on the real AdventureWorks tables (AW_DATA_DIR): equal to featuretools.

featuretools needs minutes for all 19,766 labelled orders (one pass per distinct cutoff
date), so its reference covers a sample of orders: the orders of the customers with the
longest histories (the most rows per cutoff) plus random ones. The engine computes the
full matrix; its rows for the sample must equal featuretools' values, and the engine run on
the sample alone must equal featuretools' matrix exactly (dtypes included).
"""

import os
from pathlib import Path

import featuretools as ft
import pandas as pd
import pytest

from pipeline.data.extract import extract_tables
from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder
from pipeline.feature_engine import calculate_feature_matrix, is_supported
from pipeline.features import _with_instants, build_entityset, cutoff_times, foreign_keys
from pipeline.labels import label_orders
from pipeline.spec import load_spec

AW = Path(os.environ["AW_DATA_DIR"]) if os.environ.get("AW_DATA_DIR") else None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(AW is None or not AW.is_dir(), reason="AW_DATA_DIR is not set to the AdventureWorks CSV folder"),
]
SPEC = load_spec("adventureworks")
DEFAULT = dict(
    agg_primitives=["count", "sum", "mean", "max", "num_unique", "time_since_first"],
    trans_primitives=["month", "weekday"],
    max_features=150,
)
RICHER = dict(
    agg_primitives=["count", "sum", "mean", "max", "min", "std", "mode", "num_unique", "time_since_first"],
    trans_primitives=["month"],
    max_features=200,
)


@pytest.fixture(scope="module")
def aw(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('aw')}/aw.db"
    load_csv_folder(AW, url, tables=SPEC_TABLES)
    tables = extract_tables(url, SPEC)
    labels = label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", 180)
    es = build_entityset(SPEC, _with_instants(SPEC, tables))
    cutoff = cutoff_times(SPEC, tables, labels)
    customer = cutoff.SalesOrderID.map(tables["orders"].set_index("SalesOrderID").CustomerID)
    busiest = customer.value_counts().index[:20]
    sample = pd.concat([cutoff[customer.isin(busiest)], cutoff[~customer.isin(busiest)].sample(200, random_state=1)])
    return es, cutoff, sample


@pytest.mark.parametrize("primitives", [DEFAULT, RICHER], ids=["default", "depth2-std-min-mode"])
def test_engine_equals_featuretools_on_real_adventureworks(aw, primitives):
    es, cutoff, sample = aw
    defs = ft.dfs(
        entityset=es, target_dataframe_name="orders", max_depth=2, ignore_columns=foreign_keys(SPEC), features_only=True, **primitives
    )
    assert all(is_supported(f, es) for f in defs)
    expected = ft.calculate_feature_matrix(defs, es, cutoff_time=sample, include_cutoff_time=True, cutoff_time_in_index=False)
    pd.testing.assert_frame_equal(expected, calculate_feature_matrix(defs, es, sample), check_exact=False, rtol=1e-9)
    full = calculate_feature_matrix(defs, es, cutoff)
    assert len(full) == len(cutoff)
    pd.testing.assert_frame_equal(
        expected, full.loc[expected.index], check_exact=False, rtol=1e-9, check_dtype=False, check_categorical=False
    )
