"""Window and recency features against a brute-force reference computed row by row with pandas.

Every event falls on a whole day, and so does every cutoff, with windows of whole days: many
events lie exactly on a window's edge (cutoff - window: inside) or on the cutoff (inside), and
some just after it (outside). The reference reads each feature's definition (primitive, table,
column, window) and recomputes it for each target row from the rows it may see; the engine must
agree, and so must featuretools' own calculate_feature_matrix, which computes all of these too.
"""

import featuretools as ft
import numpy as np
import pandas as pd
import pytest
from featuretools.feature_base import AggregationFeature, TransformFeature

from pipeline.feature_engine import calculate_feature_matrix, is_supported
from pipeline.feature_windows import window_recency_features
from pipeline.features import cutoff_times, point_in_time_entityset
from pipeline.labels import LABEL
from tests.hazard_data import hazard_spec

DAY = pd.Timedelta(days=1)
WINDOWS = ["2d", "5d", "7d"]
START = pd.Timestamp("2021-03-01")


def small_tables(seed: int) -> dict[str, pd.DataFrame]:
    """4 customers over 20 days; at most one event per customer, table and day (featuretools' row order for LAST
    and PREVIOUS among equal times is not defined); a cutoff at each payment."""
    rng = np.random.default_rng(seed)

    def events(n: int, id_name: str, time_name: str, **columns) -> pd.DataFrame:
        frame = pd.DataFrame({"CustomerID": rng.integers(1, 5, n), time_name: START + rng.integers(0, 20, n) * DAY})
        frame = frame.drop_duplicates(["CustomerID", time_name]).reset_index(drop=True)
        frame.insert(0, id_name, np.arange(1, len(frame) + 1))
        return frame.assign(**{name: make(len(frame)) for name, make in columns.items()})

    return {
        "customers": pd.DataFrame({"CustomerID": [1, 2, 3, 4, 5], "Plan": ["basic", "pro", "basic", "pro", "basic"]}),
        "payments": events(30, "PaymentID", "PaidAt", Amount=lambda n: rng.normal(30, 10, n).round(2), Late=lambda n: rng.random(n) < 0.5),
        "sessions": events(
            40, "SessionID", "StartedAt", Minutes=lambda n: np.where(rng.random(n) < 0.2, np.nan, rng.exponential(20, n).round(1))
        ),
        "tickets": events(12, "TicketID", "OpenedAt", Severity=lambda n: rng.integers(1, 4, n)),
    }


TIME = {"payments": "PaidAt", "sessions": "StartedAt", "tickets": "OpenedAt"}


def visible(tables, table: str, customer: int, cutoff: pd.Timestamp, window: pd.Timedelta | None) -> pd.DataFrame:
    rows = tables[table][(tables[table]["CustomerID"] == customer) & (tables[table][TIME[table]] <= cutoff)]
    if window is not None:
        rows = rows[rows[TIME[table]] >= cutoff - window]
    return rows.sort_values(TIME[table])


def reference_aggregation(feature: AggregationFeature, tables, customer: int, cutoff: pd.Timestamp) -> float:
    table = feature.base_features[0].dataframe_name
    window = feature.use_previous.delta_obj if feature.use_previous else None
    rows = visible(tables, table, customer, cutoff, window)
    name = feature.primitive.name
    if name == "count":
        return len(rows)
    column = rows[feature.base_features[0].get_name()]
    days = (column - cutoff) / DAY if name in ("avg_time_between", "last_time_between", "time_since_last") else None
    empty = {"sum": 0, "true_streak": 0}.get(name, np.nan)
    if column.notna().sum() == 0 and name != "true_streak":
        return empty if name not in ("last", "previous") or column.empty else np.nan
    return {
        "sum": lambda: column.sum(),
        "mean": lambda: column.mean(),
        "max": lambda: column.max(),
        "percent_true": lambda: column.fillna(False).mean(),
        "avg_time_between": lambda: (days.max() - days.min()) / (len(days) - 1) if len(days) > 1 else np.nan,
        "last_time_between": lambda: days.iloc[-1] - days.iloc[-2] if len(days) > 1 else np.nan,
        "time_since_last": lambda: -days.iloc[-1],
        "last": lambda: column.iloc[-1],
        "previous": lambda: column.iloc[-2] if len(column) > 1 else np.nan,
        "true_streak": lambda: _trailing_trues(column),
    }[name]()


def _trailing_trues(flags: pd.Series) -> int:
    count = 0
    for flag in reversed(flags.tolist()):
        if not flag:
            break
        count += 1
    return count


def reference_value(feature, tables, customer: int, cutoff: pd.Timestamp) -> float:
    """The value of a customer-level window/recency feature (the DirectFeature's base) for one cutoff."""
    if isinstance(feature, TransformFeature):  # RATE_CHANGE(recent, total)
        recent, total = (reference_aggregation(b, tables, customer, cutoff) for b in feature.base_features)
        p = feature.primitive
        return recent / p.recent_days - (total - recent) / (p.total_days - p.recent_days)
    return reference_aggregation(feature, tables, customer, cutoff)


def reference_matrix(defs, tables, cutoff: pd.DataFrame) -> pd.DataFrame:
    customers = tables["payments"].set_index("PaymentID")["CustomerID"]
    rows = []
    for payment, time in zip(cutoff["PaymentID"], cutoff["time"], strict=True):
        rows.append({f.get_name(): reference_value(f.base_features[0], tables, customers[payment], time) for f in defs})
    return pd.DataFrame(rows, index=cutoff["PaymentID"].to_numpy())


def as_float(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda s: pd.to_numeric(s.astype("object").where(s.notna(), np.nan), errors="coerce")).astype(float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_and_recency_features_equal_a_row_by_row_reference_and_featuretools(seed):
    spec, tables = hazard_spec(), small_tables(seed)
    es = point_in_time_entityset(spec, tables)
    defs = window_recency_features(es, "payments", "CustomerID", WINDOWS, recency=True)
    labels = tables["payments"][["PaymentID", "PaidAt"]].assign(**{LABEL: 0})
    cutoff = cutoff_times(spec, tables, labels)
    assert all(is_supported(f, es) for f in defs)
    engine = calculate_feature_matrix(defs, es, cutoff).drop(columns=[LABEL])
    expected = reference_matrix(defs, tables, cutoff)
    pd.testing.assert_frame_equal(as_float(engine), expected.astype(float), check_names=False, rtol=1e-9)
    featuretools = ft.calculate_feature_matrix(defs, es, cutoff_time=cutoff, include_cutoff_time=True, cutoff_time_in_index=False)
    pd.testing.assert_frame_equal(featuretools.drop(columns=[LABEL]), engine, rtol=1e-9)


def test_edges_are_exercised():
    """The data of the test above put events on a window's edge, on the cutoff and just past it."""
    tables = small_tables(0)
    cutoffs = tables["payments"][["CustomerID", "PaidAt"]]
    sessions = tables["sessions"].merge(cutoffs, on="CustomerID")
    offsets = set((sessions["PaidAt"] - sessions["StartedAt"]) / DAY)
    assert {0, 2, 5, 7, -1} <= offsets  # on the cutoff, on each window's start, a day after the cutoff
