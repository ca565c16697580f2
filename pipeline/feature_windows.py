"""Time windows and recency: feature definitions DFS does not generate, in featuretools' own catalogue.

All-history aggregates (what DFS builds) blur behaviour that changed recently: a customer who
logged in daily for a year and not once last month has the same all-history mean as one who
logs in steadily. These definitions describe the recent past of every event table of the
customer (its children with a time index, the target's own table included), as of each cutoff:

- aggregates over each window before the cutoff (featuretools' `use_previous`: rows stamped in
  [cutoff - window, cutoff]): COUNT, SUM/MEAN/MAX of numeric columns, PERCENT_TRUE of flags;
- recency: days since the last event, mean and last gap between events (in days), the last
  event's values (for the target's own table, whose latest visible row is the current one: the
  previous row's values), the streak of consecutive flagged events up to the latest;
- change between consecutive windows: the daily rate (COUNT, SUM) in the shorter window minus the
  daily rate in the rest of the longer one (last 30 d vs the 60 d before them, for 30 d and 90 d).

They are ordinary featuretools features (AggregationFeature, TransformFeature, DirectFeature) with
names, descriptions and serialised definitions; the primitives featuretools lacks are defined here
(importing this module registers them, which `ft.load_features` needs to read them back).
"""

from __future__ import annotations

import re

import featuretools as ft
import numpy as np
import pandas as pd
from featuretools.feature_base import FeatureBase
from featuretools.primitives import AggregationPrimitive, TransformPrimitive
from featuretools.utils.time_utils import convert_time_units
from woodwork.column_schema import ColumnSchema
from woodwork.logical_types import Boolean, BooleanNullable, Datetime, Double, IntegerNullable

from pipeline.config import WINDOW_PATTERN

WINDOW = re.compile(WINDOW_PATTERN)
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_window(text: str) -> pd.Timedelta:
    """`30d`, `12h`, `2w` as a timedelta (the config's notation; featuretools' use_previous takes the same)."""
    match = WINDOW.match(text)
    if not match:
        raise ValueError(f"window {text!r} must be a whole number of days, hours or weeks, like 30d, 12h or 2w")
    return pd.Timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _as_use_previous(window: pd.Timedelta) -> str:
    """featuretools' use_previous in whole days when the window is, else hours: readable feature names."""
    hours = int(window / pd.Timedelta(hours=1))
    return f"{hours // 24} days" if hours % 24 == 0 else f"{hours} hours"


class LastTimeBetween(AggregationPrimitive):
    """Time between the two latest events (NaN with fewer than two): has the rhythm slowed down just now?"""

    name = "last_time_between"
    input_types = [ColumnSchema(logical_type=Datetime, semantic_tags={"time_index"})]
    return_type = ColumnSchema(logical_type=Double, semantic_tags={"numeric"})
    description_template = "the time between the last two of {}"

    def __init__(self, unit="seconds"):
        self.unit = unit.lower()

    def get_function(self):
        def last_time_between(x):
            ns = np.sort(x.dropna().to_numpy().astype("datetime64[ns]").astype("int64"))  # difference in integers: no cancellation
            return convert_time_units((ns[-1] - ns[-2]) * 1e-9, self.unit) if len(ns) >= 2 else np.nan

        return last_time_between


class TrueStreak(AggregationPrimitive):
    """Consecutive True values up to the latest row: e.g. late payments in a row.

    Booleans without missing values only: pandas casts a function's 0/1 results over a nullable
    boolean column back to booleans, so featuretools would compute a wrong streak there.
    """

    name = "true_streak"
    input_types = [ColumnSchema(logical_type=Boolean)]
    return_type = ColumnSchema(logical_type=IntegerNullable, semantic_tags={"numeric"})
    default_value = 0
    stack_on_self = False
    description_template = "the number of consecutive true values of {} up to the latest"

    def get_function(self):
        def true_streak(x):
            flags = x.to_numpy(dtype=bool)[::-1]
            return int(np.argmin(flags)) if not flags.all() else len(flags)

        return true_streak


class Previous(AggregationPrimitive):
    """The value of the row before the latest (NaN with fewer than two rows).

    Aggregating the target's own table, the latest row visible at a cutoff is the current one,
    so this is the previous order's (invoice's, payment's) value.
    """

    name = "previous"
    input_types = [ColumnSchema()]
    return_type = None
    stack_on_self = False
    description_template = "the value before the latest of {}"

    def get_function(self):
        def previous(x):
            return x.iloc[-2] if len(x) >= 2 else np.nan

        return previous


class RateChange(TransformPrimitive):
    """Daily rate over the recent window minus the daily rate over the rest of the longer window.

    Inputs: the same aggregate (COUNT or SUM) over the recent window and over the longer one,
    which contains it; positive when activity picked up lately, negative when it dropped.
    """

    name = "rate_change"
    input_types = [ColumnSchema(semantic_tags={"numeric"}), ColumnSchema(semantic_tags={"numeric"})]
    return_type = ColumnSchema(logical_type=Double, semantic_tags={"numeric"})

    def __init__(self, recent_days=30.0, total_days=90.0):
        self.recent_days = float(recent_days)
        self.total_days = float(total_days)
        before = self.total_days - self.recent_days
        self.description_template = (
            f"the change in daily rate between the last {self.recent_days:g} days and the {before:g} days before them, from {{}} and {{}}"
        )

    def generate_name(self, base_feature_names):
        """The inputs' names carry both windows already: no argument list; no comma (LightGBM refuses it in names)."""
        return f"{self.name.upper()}({' vs '.join(base_feature_names)})"

    def get_function(self):
        def rate_change(recent, total):
            recent, total = np.asarray(recent, dtype=float), np.asarray(total, dtype=float)
            return recent / self.recent_days - (total - recent) / (self.total_days - self.recent_days)

        return rate_change


def _aggregate(base: FeatureBase, customer: str, primitive, window: str | None = None) -> ft.AggregationFeature:
    """An AggregationFeature named without commas, which LightGBM refuses in feature names.

    featuretools writes `COUNT(sessions, Last 30 Days)` and `AVG_TIME_BETWEEN(sessions.StartedAt, unit=days)`;
    these read `COUNT(sessions in last 30 days)` and `AVG_TIME_BETWEEN(sessions.StartedAt in days)`.
    """
    feature = ft.AggregationFeature(base, customer, primitive, use_previous=window)
    name = re.sub(r", Last (\d+) (\w+)\)$", lambda m: f" in last {m.group(1)} {m.group(2).lower()})", feature.get_name())
    return feature.rename(re.sub(r", unit=(\w+)\)$", r" in \1)", name))


def customer_entity(es: ft.EntitySet, target: str, customer_key: str) -> str:
    """The parent of the target reached through its customer key."""
    for rel in es.relationships:
        if rel.child_dataframe.ww.name == target and rel._child_column_name == customer_key:
            return rel.parent_dataframe.ww.name
    raise ValueError(f"no relationship from {target}.{customer_key} to a parent dataframe")


def event_tables(es: ft.EntitySet, customer: str) -> list[str]:
    """The customer's children with a time index: its event histories."""
    return [
        rel.child_dataframe.ww.name
        for rel in es.relationships
        if rel.parent_dataframe.ww.name == customer and rel.child_dataframe.ww.time_index
    ]


def window_recency_features(es: ft.EntitySet, target: str, customer_key: str, windows: list[str], recency: bool) -> list[FeatureBase]:
    """The window and recency definitions of every event table of the target's customer, as features of the target."""
    if not windows and not recency:
        return []
    customer = customer_entity(es, target, customer_key)
    spans = sorted(parse_window(w) for w in windows)
    features: list[FeatureBase] = []
    for table in event_tables(es, customer):
        features += _windowed(es, customer, table, spans)
        if recency:
            features += _recency(es, customer, table, own=table == target)
    return [ft.DirectFeature(f, child_dataframe_name=target) for f in features]


def _columns(es: ft.EntitySet, table: str) -> tuple[list[str], list[str], list[str]]:
    """Numeric, boolean and categorical value columns (keys and the time index excluded)."""
    schema = es[table].ww.schema
    values = [c for c, tags in schema.semantic_tags.items() if not {"index", "foreign_key", "time_index"} & tags]
    kinds = {c: type(schema.logical_types[c]) for c in values}
    numeric = [c for c in values if "numeric" in schema.semantic_tags[c]]
    boolean = [c for c in values if kinds[c] in (Boolean, BooleanNullable)]
    categorical = [c for c in values if "category" in schema.semantic_tags[c]]
    return numeric, boolean, categorical


def _windowed(es: ft.EntitySet, customer: str, table: str, spans: list[pd.Timedelta]) -> list[FeatureBase]:
    """Aggregates per window, then the rate change of COUNT and each SUM between consecutive windows."""
    numeric, boolean, _ = _columns(es, table)
    index = ft.IdentityFeature(es[table].ww[es[table].ww.index])
    column = {c: ft.IdentityFeature(es[table].ww[c]) for c in numeric + boolean}
    features: list[FeatureBase] = []
    rates: list[list[FeatureBase]] = []  # per window: COUNT, then SUM of each numeric column
    for span in spans:
        window = _as_use_previous(span)
        counted = [_aggregate(index, customer, ft.primitives.Count, window)]
        counted += [_aggregate(column[c], customer, ft.primitives.Sum, window) for c in numeric]
        rates.append(counted)
        features += counted
        features += [_aggregate(column[c], customer, p, window) for c in numeric for p in (ft.primitives.Mean, ft.primitives.Max)]
        features += [_aggregate(column[c], customer, ft.primitives.PercentTrue, window) for c in boolean]
    days = [span / pd.Timedelta(days=1) for span in spans]
    for i in range(len(spans) - 1):
        change = RateChange(recent_days=days[i], total_days=days[i + 1])
        recent, total = rates[i], rates[i + 1]
        features += [ft.TransformFeature([r, t], change) for r, t in zip(recent, total, strict=True)]
    return features


def _recency(es: ft.EntitySet, customer: str, table: str, own: bool) -> list[FeatureBase]:
    numeric, boolean, categorical = _columns(es, table)
    time = ft.IdentityFeature(es[table].ww[es[table].ww.time_index])
    features = [
        _aggregate(time, customer, ft.primitives.AvgTimeBetween(unit="days")),
        _aggregate(time, customer, LastTimeBetween(unit="days")),
    ]
    if not own:  # the target's own latest row is the current one: 0 days, always
        features.append(_aggregate(time, customer, ft.primitives.TimeSinceLast(unit="days")))
    latest = Previous if own else ft.primitives.Last
    features += [ft.AggregationFeature(ft.IdentityFeature(es[table].ww[c]), customer, latest) for c in numeric + boolean + categorical]
    flags = [c for c in boolean if isinstance(es[table].ww.logical_types[c], Boolean)]
    features += [ft.AggregationFeature(ft.IdentityFeature(es[table].ww[c]), customer, TrueStreak) for c in flags]
    return features
