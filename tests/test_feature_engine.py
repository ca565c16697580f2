"""The columnar feature engine returns featuretools' own feature matrix (values, dtypes, index, column order).

Reference: featuretools.calculate_feature_matrix on the same feature definitions, entity
set and cutoff times. Relative tolerance 1e-9: the engine sums in a different order.
"""

import logging

import featuretools as ft
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data.extract import extract_tables
from pipeline.feature_engine import AGGREGATIONS, calculate_feature_matrix, is_supported
from pipeline.feature_windows import LastTimeBetween, Previous, TrueStreak
from pipeline.features import _with_instants, build_entityset, cutoff_times, foreign_keys, synthesize
from pipeline.labels import label_orders
from pipeline.spec import load_spec
from tests.helpers import write_small_source

OWN_PRIMITIVES = [LastTimeBetween, Previous, TrueStreak]  # DFS takes featuretools' own by name, these as classes
ALL_AGGREGATIONS = sorted(AGGREGATIONS - {p.name for p in OWN_PRIMITIVES}) + OWN_PRIMITIVES
# The stress sets keep the primitives that came before windows and recency (whose primitives
# tests/test_feature_windows.py checks row by row): every one more multiplies featuretools' time here.
STRESS_AGGREGATIONS = sorted(AGGREGATIONS - {p.name for p in OWN_PRIMITIVES} - {"last", "avg_time_between"})
TRANSFORMS = ["month", "weekday"]
# featuretools' LAST/PREVIOUS of a datetime column come out as objects, which its own MONTH and WEEKDAY
# cannot read (AttributeError): no reference for these, so DFS leaves them out
NO_REFERENCE = [f"{t.upper()}({p}(" for t in TRANSFORMS for p in ("LAST", "PREVIOUS")]


def featuretools_matrix(defs, es, cutoff):
    return ft.calculate_feature_matrix(defs, es, cutoff_time=cutoff, include_cutoff_time=True, cutoff_time_in_index=False)


def assert_same_matrix(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    """Equal frames; a categorical column missing in every row is compared by values only.

    For such a column featuretools' empty categories depend on how it filled its chunks
    (plain NaN for instances not yet visible or MODE over no rows, the source column's
    categories otherwise); no value differs.
    """
    empty = [c for c in expected.columns if isinstance(expected[c].dtype, pd.CategoricalDtype) and expected[c].isna().all()]
    assert all(actual[c].isna().all() for c in empty)
    pd.testing.assert_frame_equal(expected.drop(columns=empty), actual.drop(columns=empty), check_exact=False, rtol=1e-9)


@pytest.fixture(scope="module")
def adventureworks(tmp_path_factory):
    spec = load_spec("adventureworks")
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/small.db"
    write_small_source(url, customers=120)
    tables = extract_tables(url, spec)
    labels = label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", 90)
    return spec, tables, labels


def test_synthetic_adventureworks_depth_two_all_primitives_equal_featuretools(adventureworks):
    """Every supported primitive, depth 2 (direct features through parents, two-hop aggregations), same-day ties."""
    spec, tables, labels = adventureworks
    es = build_entityset(spec, _with_instants(spec, tables))
    defs = ft.dfs(
        entityset=es,
        target_dataframe_name="orders",
        agg_primitives=ALL_AGGREGATIONS,
        trans_primitives=TRANSFORMS,
        max_depth=2,
        max_features=500,
        ignore_columns=foreign_keys(spec),
        drop_contains=NO_REFERENCE,
        features_only=True,
    )
    assert all(is_supported(f, es) for f in defs)
    assert {f.primitive.name for f in defs if isinstance(f, ft.AggregationFeature)} == AGGREGATIONS
    cutoff = cutoff_times(spec, tables, labels)
    assert_same_matrix(featuretools_matrix(defs, es, cutoff), calculate_feature_matrix(defs, es, cutoff))


def test_synthesize_engines_agree_on_the_default_configuration(adventureworks):
    spec, tables, labels = adventureworks
    prims = dict(
        agg_primitives=["count", "sum", "mean", "max", "num_unique", "time_since_first"],
        trans_primitives=TRANSFORMS,
        max_depth=2,
        max_features=150,
    )
    columnar = synthesize(spec, tables, labels, engine="columnar", **prims)
    reference = synthesize(spec, tables, labels, engine="featuretools", **prims)
    assert_same_matrix(reference.matrix, columnar.matrix)
    assert columnar.descriptions == reference.descriptions
    assert columnar.definitions_json == reference.definitions_json


def test_unsupported_feature_is_computed_by_featuretools_and_named_in_the_log(adventureworks, caplog):
    spec, tables, labels = adventureworks
    es = build_entityset(spec, _with_instants(spec, tables))
    defs = ft.dfs(
        entityset=es,
        target_dataframe_name="orders",
        agg_primitives=["sum", "median"],
        trans_primitives=[],
        max_depth=1,
        max_features=20,
        ignore_columns=foreign_keys(spec),
        features_only=True,
    )
    unsupported = [f.get_name() for f in defs if not is_supported(f, es)]
    assert unsupported and all(name.startswith("MEDIAN(") for name in unsupported)
    cutoff = cutoff_times(spec, tables, labels).head(40)
    with caplog.at_level(logging.INFO, logger="pipeline.feature_engine"):
        actual = calculate_feature_matrix(defs, es, cutoff)
    assert_same_matrix(featuretools_matrix(defs, es, cutoff), actual)
    logged = [r.getMessage() for r in caplog.records if "unsupported" in r.getMessage()]
    assert len(logged) == 1 and all(name in logged[0] for name in unsupported)


def test_unknown_engine_is_refused(adventureworks):
    spec, tables, labels = adventureworks
    with pytest.raises(ValueError, match="features.engine"):
        synthesize(spec, tables, labels.head(5), engine="spark", agg_primitives=["count"], trans_primitives=[], max_depth=1)


# --- property-based: small entity sets built to stress the point-in-time rules ---------------------------------

DAYS = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05", "2020-02-01"])


def _maybe_nan(draw, values: list, p_nan: float = 0.25) -> list:
    return [np.nan if draw(st.floats(0, 1)) < p_nan else v for v in values]


def stress_entityset(customers: pd.DataFrame, orders: pd.DataFrame, lines: pd.DataFrame, products: pd.DataFrame) -> ft.EntitySet:
    es = ft.EntitySet("stress")
    es.add_dataframe(dataframe_name="customers", dataframe=customers, index="cid", logical_types={"segment": "Categorical"})
    es.add_dataframe(
        dataframe_name="orders",
        dataframe=orders,
        index="oid",
        time_index="odate",
        logical_types={"cid": "Integer", "amount": "Double", "qty": "Integer", "channel": "Categorical", "flag": "BooleanNullable"},
    )
    es.add_dataframe(
        dataframe_name="lines",
        dataframe=lines,
        index="lid",
        time_index="ldate",
        logical_types={"oid": "Integer", "pid": "Integer", "price": "Double", "size": "Categorical"},
    )
    es.add_dataframe(dataframe_name="products", dataframe=products, index="pid", logical_types={"weight": "Double"})
    es.add_relationship("customers", "cid", "orders", "cid")
    es.add_relationship("orders", "oid", "lines", "oid")
    es.add_relationship("products", "pid", "lines", "pid")
    return es


@st.composite
def entity_sets(draw):
    """customers <- orders <- lines -> products, with ties, NaNs, empty groups and late or missing times.

    Times come from four days, so many rows share a timestamp with a cutoff; lines may be
    stamped after their order (visible only later) or before; orders without a customer row,
    customers and products without children, categories that appear only after some cutoffs.
    """
    n_customers, n_orders, n_lines, n_products = (
        draw(st.integers(1, 5)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 25)),
        draw(st.integers(1, 4)),
    )
    floats = st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 3))
    customers = pd.DataFrame(
        {
            "cid": range(n_customers),
            "segment": _maybe_nan(draw, draw(st.lists(st.sampled_from("abc"), min_size=n_customers, max_size=n_customers))),
        }
    )
    order_days = draw(st.lists(st.sampled_from(list(DAYS)), min_size=n_orders, max_size=n_orders))
    orders = pd.DataFrame(
        {
            "oid": range(100, 100 + n_orders),
            "cid": draw(st.lists(st.integers(0, n_customers), min_size=n_orders, max_size=n_orders)),  # n_customers: no such customer
            "odate": order_days,
            "amount": _maybe_nan(draw, draw(st.lists(floats, min_size=n_orders, max_size=n_orders))),
            "qty": draw(st.lists(st.integers(0, 5), min_size=n_orders, max_size=n_orders)),
            "channel": _maybe_nan(draw, draw(st.lists(st.sampled_from(["web", "shop", "phone"]), min_size=n_orders, max_size=n_orders))),
            "flag": pd.array(_maybe_nan(draw, draw(st.lists(st.booleans(), min_size=n_orders, max_size=n_orders))), dtype="boolean"),
        }
    )
    line_orders = draw(st.lists(st.integers(100, 99 + n_orders), min_size=n_lines, max_size=n_lines))
    shifts = draw(st.lists(st.sampled_from([0, 0, 0, 1, -1, 30]), min_size=n_lines, max_size=n_lines))
    lines = pd.DataFrame(
        {
            "lid": range(1000, 1000 + n_lines),
            "oid": line_orders,
            "pid": draw(st.lists(st.integers(0, n_products - 1), min_size=n_lines, max_size=n_lines)),
            "ldate": pd.to_datetime(
                [orders.set_index("oid").odate[o] + pd.Timedelta(days=s) for o, s in zip(line_orders, shifts, strict=True)]
            ),
            "price": _maybe_nan(draw, draw(st.lists(floats, min_size=n_lines, max_size=n_lines))),
            "size": _maybe_nan(draw, draw(st.lists(st.sampled_from(["S", "M", "L"]), min_size=n_lines, max_size=n_lines))),
        }
    )
    products = pd.DataFrame(
        {"pid": range(n_products), "weight": _maybe_nan(draw, draw(st.lists(floats, min_size=n_products, max_size=n_products)))}
    )
    es = stress_entityset(customers, orders, lines, products)
    target = draw(st.sampled_from(["orders", "customers"]))
    ids = es[target].ww.index
    instances = draw(st.lists(st.sampled_from(list(es[target][ids])), min_size=1, unique=True))
    own_time = target == "orders" and draw(st.booleans())
    times = (
        [es["orders"].set_index("oid").odate[i] for i in instances]
        if own_time
        else draw(st.lists(st.sampled_from(list(DAYS)), min_size=len(instances), max_size=len(instances)))
    )
    cutoff = pd.DataFrame(
        {ids: instances, "time": times, "label": draw(st.lists(st.integers(0, 1), min_size=len(instances), max_size=len(instances)))}
    )
    return es, target, cutoff


def windowed(defs: list, window: str) -> list:
    """The aggregations among `defs` over only the `window` before each cutoff (featuretools' use_previous).

    Only primitives that featuretools aggregates with pandas' groupby: its windowed path fails
    (MergeError, missing columns) for the ones it applies group by group (MODE, SKEW, TIME_SINCE_*, ...),
    so there is no reference for those.
    """
    grouped_by_pandas = {"count", "sum", "mean", "max", "min", "std", "num_unique"}
    return [
        ft.AggregationFeature(
            f.base_features, f.parent_dataframe_name, f.primitive, relationship_path=f.relationship_path, use_previous=window
        )
        for f in defs
        if isinstance(f, ft.AggregationFeature) and f.primitive.name in grouped_by_pandas
    ]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entity_sets())
def test_engine_equals_featuretools_on_stress_entity_sets(case):
    """Ties at the cutoff, NaNs, empty and single-row groups, unseen categories, invisible targets, aggregations of
    aggregations, time windows."""
    es, target, cutoff = case
    defs = ft.dfs(
        entityset=es,
        target_dataframe_name=target,
        agg_primitives=STRESS_AGGREGATIONS,
        trans_primitives=TRANSFORMS,
        max_depth=2,
        drop_contains=NO_REFERENCE,
        features_only=True,
    )
    defs += windowed(defs, "1 days") + windowed(defs, "4 days")  # the days are 0, 1, 4 and 31 apart: rows on the window's edge
    assert all(is_supported(f, es) for f in defs)
    assert_same_matrix(featuretools_matrix(defs, es, cutoff), calculate_feature_matrix(defs, es, cutoff))
