"""Point-in-time feature engine: featuretools' feature definitions computed with Polars joins and group-bys.

featuretools' `calculate_feature_matrix` rebuilds the entity set and recomputes every
feature once per distinct cutoff time, which makes the feature step the slowest part of
a run. This engine computes the same matrix in a few vectorised passes: every query is
an (instance, cutoff time) pair, and an aggregation expands its queries into the child
rows visible at that cutoff (an equi-join on the relationship key, then a filter on the
child's time index), evaluates its input feature on those rows and groups back. The
semantics are featuretools' own, so the matrices are equal:

- a row of a dataframe with a time index is visible at cutoff t when its time index is
  <= t (ties included; rows without a time value are never visible); dataframes
  without a time index are always visible;
- an aggregation over a path of several relationships sees a grandchild row only if the
  rows linking it to the parent are visible too;
- every feature of a row that is missing or not yet visible takes the feature's default
  value, and aggregations without rows (or with a missing result) take it too
  (COUNT and SUM: 0, the others NaN);
- the aggregations follow pandas' definitions: NaN skipped, STD with ddof=1, SKEW as
  pandas' bias-corrected G1 (0 for constant data), MODE the smallest of the most frequent
  values, PERCENT_TRUE counting missing values as False.

LAST, AVG_TIME_BETWEEN and pipeline.feature_windows' own primitives (PREVIOUS, LAST_TIME_BETWEEN,
TRUE_STREAK, the row-wise RATE_CHANGE) are computed here too, so the window and recency features
never fall back. Aggregations over a time window before the cutoff (featuretools' `use_previous` in
days, hours, ...: rows stamped in [cutoff - window, cutoff]) are supported too.
Features the engine does not cover (other primitives, `where`, windows in months or
observations, multi-output primitives, secondary time indexes) are computed by featuretools for those
columns only and merged. Aggregations expand each query into the rows it sees, so the
cost grows with the sum over queries of their visible history (for orders as targets:
each customer's orders and lines up to each of its orders).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import featuretools as ft
import numpy as np
import pandas as pd
import polars as pl
from featuretools.computational_backends.calculate_feature_matrix import init_ww_and_concat_fm
from featuretools.computational_backends.utils import _validate_cutoff_time, get_ww_types_from_features
from featuretools.feature_base import AggregationFeature, DirectFeature, FeatureBase, IdentityFeature, TransformFeature
from featuretools.utils.time_utils import convert_time_units

log = logging.getLogger(__name__)

AGGREGATIONS = {
    "count",
    "sum",
    "mean",
    "max",
    "min",
    "std",
    "skew",
    "mode",
    "num_unique",
    "percent_true",
    "time_since_first",
    "time_since_last",
    "avg_time_between",
    "last",
    # pipeline.feature_windows' own primitives
    "last_time_between",
    "previous",
    "true_streak",
}
# Aggregations that pick one of their input values: categorical inputs stay category codes.
PICKING = {"mode", "last", "previous"}
# Aggregations of a time index whose result is a duration, computed in seconds and converted to the primitive's unit.
DURATIONS = {"time_since_first", "time_since_last", "avg_time_between", "last_time_between"}
# Row-wise transforms: each output value depends on its own row only (unlike cum_sum or
# percentile, which depend on the other rows visible at the cutoff); computed with the
# primitive's own function.
ROW_WISE_TRANSFORMS = {
    "day",
    "day_of_year",
    "days_in_month",
    "hour",
    "is_leap_year",
    "is_month_end",
    "is_month_start",
    "is_quarter_end",
    "is_quarter_start",
    "is_weekend",
    "is_year_end",
    "is_year_start",
    "minute",
    "month",
    "quarter",
    "second",
    "week",
    "weekday",
    "year",
    "absolute",
    "natural_logarithm",
    "negate",
    "square_root",
    "is_null",
    "not",
    "rate_change",
}
ROW, KEY, TIME, EXISTS, POSITION = "__row", "__key", "__t", "__exists", "__position"


@dataclass
class _Table:
    frame: pl.DataFrame  # categorical columns (other than keys) as category codes
    index: str
    time_index: str | None
    categories: dict[str, pd.Index] = field(default_factory=dict)


def calculate_feature_matrix(features: list[FeatureBase], entityset: ft.EntitySet, cutoff_time: pd.DataFrame) -> pd.DataFrame:
    """featuretools.calculate_feature_matrix(features, entityset, cutoff_time) for a cutoff frame, without its loop.

    `cutoff_time` has the target's index (or `instance_id`) and `time` columns; any other
    column is passed through, as featuretools does. Rows keep the cutoff frame's order.
    """
    target = entityset[features[0].dataframe_name]
    cutoff = _validate_cutoff_time(cutoff_time, target)
    cutoff.ww.init(logical_types={"instance_id": target.ww.logical_types[target.ww.index]})
    pass_columns = [c for c in cutoff.columns if c not in ("instance_id", "time")]
    supported = [f for f in features if is_supported(f, entityset)]
    engine = _Engine(entityset)
    queries = pl.DataFrame({KEY: engine.key_series(target.ww.name, cutoff["instance_id"]), TIME: _datetimes(cutoff["time"])})
    values = engine.evaluate(target.ww.name, supported, queries)
    columns = {f.get_name(): engine.to_pandas(f, values[f.get_name()]) for f in supported}
    computed_here = {f.unique_name() for f in supported}  # not `f in supported`: features overload ==
    fallback = [f for f in features if f.unique_name() not in computed_here]
    if fallback:
        log.info(
            "feature engine: featuretools computes %d unsupported feature(s): %s", len(fallback), ", ".join(f.get_name() for f in fallback)
        )
        computed = ft.calculate_feature_matrix(fallback, entityset, cutoff_time=cutoff[["instance_id", "time"]], cutoff_time_in_index=True)
        columns.update({name: computed[name].array for name in computed.columns})  # .array keeps categories
    index = pd.MultiIndex.from_arrays([cutoff["instance_id"].to_numpy(), cutoff["time"].to_numpy()], names=[target.ww.index, "time"])
    names = [name for f in features for name in f.get_feature_names()]
    matrix = pd.DataFrame({name: columns[name] for name in names}, index=index)
    for col in pass_columns:
        matrix[col] = cutoff[col].to_numpy()
    matrix = init_ww_and_concat_fm([matrix], get_ww_types_from_features(features, entityset, pass_columns, cutoff))
    matrix.ww.reset_index(level="time", drop=True, inplace=True)
    return matrix


def is_supported(feature: FeatureBase, entityset: ft.EntitySet) -> bool:
    """Whether the engine computes this feature and all it depends on."""
    if any(entityset[name].ww.metadata.get("secondary_time_index") for name in entityset.dataframe_dict):
        return False
    if feature.number_output_features != 1:
        return False
    if type(feature) is IdentityFeature:
        return True
    if type(feature) is DirectFeature:
        return is_supported(feature.base_features[0], entityset)
    if type(feature) is TransformFeature:
        p = feature.primitive
        return (
            p.name in ROW_WISE_TRANSFORMS
            and not p.uses_calc_time
            and all(_categories_of(b, entityset) is None and is_supported(b, entityset) for b in feature.base_features)
        )
    if type(feature) is AggregationFeature:
        return _aggregation_supported(feature) and is_supported(feature.base_features[0], entityset)
    return False


def _aggregation_supported(feature: AggregationFeature) -> bool:
    p = feature.primitive
    window = feature.use_previous
    fixed_window = window is None or (window.has_no_observations() and isinstance(window.delta_obj, pd.Timedelta))
    return feature.where is None and fixed_window and p.name in AGGREGATIONS and not (p.name == "mean" and not p.skipna)


def _categories_of(feature: FeatureBase, entityset: ft.EntitySet) -> pd.Index | None:
    """Categories of a feature whose values are category codes in the engine (identity, direct or mode of a categorical)."""
    if type(feature) is IdentityFeature:
        column = entityset[feature.dataframe_name][feature.column_name]
        if isinstance(column.dtype, pd.CategoricalDtype) and not _is_key(entityset, feature.dataframe_name, feature.column_name):
            return column.cat.categories
        return None
    if type(feature) is DirectFeature or (type(feature) is AggregationFeature and feature.primitive.name in PICKING):
        return _categories_of(feature.base_features[0], entityset)
    return None


def _is_key(entityset: ft.EntitySet, dataframe: str, column: str) -> bool:
    return bool({"index", "foreign_key"} & entityset[dataframe].ww.semantic_tags[column])


def _datetimes(series: pd.Series) -> pl.Series:
    return pl.Series(pd.to_datetime(series).to_numpy().astype("datetime64[ns]"))


class _Engine:
    def __init__(self, entityset: ft.EntitySet):
        self.entityset = entityset
        self.tables = {name: self._table(name) for name in entityset.dataframe_dict}
        self._harmonize_keys()

    def _table(self, name: str) -> _Table:
        df = self.entityset[name]
        columns, categories = {}, {}
        for col in df.columns:
            s = df[col]
            if isinstance(s.dtype, pd.CategoricalDtype):
                if _is_key(self.entityset, name, col):
                    s = s.astype(object).where(s.notna(), None)
                else:
                    categories[col] = s.cat.categories
                    s = pd.Series(s.cat.codes.to_numpy(), index=s.index).astype("Int32").where(s.notna())
            columns[col] = pl.from_pandas(s.reset_index(drop=True))
        # POSITION: the row's place in the entity set (sorted by time index), featuretools' order for "first"/"last"
        frame = pl.DataFrame(columns).with_columns(pl.lit(True).alias(EXISTS), pl.int_range(pl.len()).alias(POSITION))
        return _Table(frame, df.ww.index, df.ww.time_index, categories)

    def _harmonize_keys(self) -> None:
        """Give both ends of every relationship one dtype, so that keys typed differently still join."""
        for rel in self.entityset.relationships:
            parent, child = self.tables[rel.parent_dataframe.ww.name], self.tables[rel.child_dataframe.ww.name]
            p_col, c_col = rel._parent_column_name, rel._child_column_name
            p_type, c_type = parent.frame.schema[p_col], child.frame.schema[c_col]
            if p_type == c_type:
                continue
            common = (
                (pl.Float64 if pl.Float64 in (p_type, c_type) else pl.Int64) if p_type.is_numeric() and c_type.is_numeric() else pl.String
            )
            parent.frame = parent.frame.with_columns(pl.col(p_col).cast(common))
            child.frame = child.frame.with_columns(pl.col(c_col).cast(common))

    def key_series(self, dataframe: str, keys: pd.Series) -> pl.Series:
        return pl.Series(keys.to_numpy()).cast(self.tables[dataframe].frame.schema[self.tables[dataframe].index])

    def to_pandas(self, feature: FeatureBase, values: pl.Series) -> np.ndarray | pd.Categorical:
        """Values as featuretools returns them: categorical ones with the source column's categories.

        featuretools computes one chunk per cutoff time and concatenates them; pandas ignores
        all-missing chunks when it picks the column's dtype, so the categories are the source
        column's. (Only for a column missing in every row do they depend on how featuretools
        filled its chunks: the values are equal, the empty column's categories may not be.)
        """
        categories = _categories_of(feature, self.entityset)
        if categories is None:
            return values.to_pandas().to_numpy()
        return pd.Categorical.from_codes(values.fill_null(-1).to_numpy(), categories=categories)

    def _rows(self, dataframe: str, queries: pl.DataFrame) -> pl.DataFrame:
        """The queried rows' columns (null where the key is missing), the queries' order kept."""
        table = self.tables[dataframe]
        rows = queries.select(KEY, TIME).join(table.frame, left_on=KEY, right_on=table.index, how="left", maintain_order="left")
        return rows.with_columns(pl.col(KEY).alias(table.index))

    def evaluate(self, dataframe: str, features: list[FeatureBase], queries: pl.DataFrame) -> pl.DataFrame:
        """One column per feature, aligned with `queries` (columns __key: a row of `dataframe`, __t: its cutoff)."""
        table = self.tables[dataframe]
        work = self._rows(dataframe, queries).with_row_index(ROW)
        visible = _visible(table)
        needed = _same_dataframe_closure(features)
        work = self._add_direct(work, [f for f in needed if type(f) is DirectFeature])
        work = self._add_aggregations(work, [f for f in needed if type(f) is AggregationFeature])
        for f in (f for f in needed if type(f) is TransformFeature):
            work = work.with_columns(self._transform(f, work))
        return work.select(
            pl.when(visible).then(pl.col(f.get_name())).otherwise(_literal(f.default_value)).alias(f.get_name()) for f in features
        )

    def _add_direct(self, work: pl.DataFrame, features: list[DirectFeature]) -> pl.DataFrame:
        by_relationship: dict[object, list[DirectFeature]] = defaultdict(list)
        for f in features:
            by_relationship[f.relationship_path[0][1]].append(f)
        for rel, group in by_relationship.items():
            bases = list({f.base_features[0].unique_name(): f.base_features[0] for f in group}.values())
            queries = work.select(pl.col(rel._child_column_name).alias(KEY), TIME)
            parent = self.evaluate(rel.parent_dataframe.ww.name, bases, queries)
            work = work.with_columns(
                parent[f.base_features[0].get_name()].alias(f.get_name()).fill_null(_literal(f.default_value)) for f in group
            )
        return work

    def _add_aggregations(self, work: pl.DataFrame, features: list[AggregationFeature]) -> pl.DataFrame:
        by_path: dict[tuple[str, str], list[AggregationFeature]] = defaultdict(list)
        for f in features:
            by_path[f.relationship_path_name(), f.use_previous.get_name() if f.use_previous else ""].append(f)
        for group in by_path.values():
            path = group[0].relationship_path
            rows = self._expand(work, path, group[0].use_previous.delta_obj if group[0].use_previous else None)
            leaf = path[-1][1].child_dataframe.ww.name
            bases = list({f.base_features[0].unique_name(): f.base_features[0] for f in group}.values())
            values = pl.concat([rows.select(ROW, TIME, POSITION), self.evaluate(leaf, bases, rows)], how="horizontal")
            aggregated = self._aggregate(values, [f for f in group if f.primitive.name != "mode"])
            for f in (f for f in group if f.primitive.name == "mode"):
                aggregated = aggregated.join(_mode(values, f), on=ROW, how="left")
            work = work.join(aggregated, on=ROW, how="left", maintain_order="left").with_columns(
                _in_units(f).fill_null(_literal(f.default_value)) for f in group
            )
        return work

    def _expand(self, work: pl.DataFrame, path, window: pd.Timedelta | None) -> pl.DataFrame:
        """(query row, child key, cutoff, child position) for every child row on the path visible at the query's cutoff.

        With a `window` (featuretools' use_previous), the last child's rows must also be
        stamped at or after cutoff - window.
        """
        rows = work.select(ROW, KEY, TIME)
        for hop, (_, rel) in enumerate(path, start=1):
            child = self.tables[rel.child_dataframe.ww.name]
            columns = [rel._child_column_name, child.index, POSITION] + ([child.time_index] if child.time_index else [])
            rows = rows.select(ROW, KEY, TIME).join(child.frame.select(columns), left_on=KEY, right_on=rel._child_column_name, how="inner")
            if child.time_index:
                rows = rows.filter(pl.col(child.time_index) <= pl.col(TIME))
                if window is not None and hop == len(path):
                    rows = rows.filter(pl.col(child.time_index) >= pl.col(TIME) - window.to_pytimedelta())
            rows = rows.select(ROW, pl.col(child.index).alias(KEY), TIME, POSITION)
        return rows

    def _aggregate(self, values: pl.DataFrame, features: list[AggregationFeature]) -> pl.DataFrame:
        return values.group_by(ROW).agg([pl.len().alias("__n")] + [_aggregation(f).alias(f.get_name()) for f in features]).drop("__n")

    def _transform(self, feature: TransformFeature, work: pl.DataFrame) -> pl.Series:
        inputs = [work[b.get_name()].to_pandas() for b in feature.base_features]
        result = pd.Series(np.asarray(feature.get_function()(*inputs)))
        return pl.from_pandas(result).alias(feature.get_name())


def _visible(table: _Table) -> pl.Expr:
    """Row exists and, if the dataframe has a time index, its time is known and <= the cutoff."""
    visible = pl.col(EXISTS).fill_null(False)
    if table.time_index:
        visible = visible & (pl.col(table.time_index) <= pl.col(TIME)).fill_null(False)
    return visible


def _same_dataframe_closure(features: list[FeatureBase]) -> list[FeatureBase]:
    """The features plus the transform inputs they need on the same dataframe, dependencies first."""
    ordered: dict[str, FeatureBase] = {}

    def visit(f: FeatureBase) -> None:
        if f.unique_name() in ordered:
            return
        if type(f) is TransformFeature:
            for b in f.base_features:
                visit(b)
        ordered[f.unique_name()] = f

    for f in features:
        visit(f)
    return list(ordered.values())


def _literal(value: object) -> pl.Expr:
    return pl.lit(None if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else value)


def _aggregation(feature: AggregationFeature) -> pl.Expr:
    x = pl.col(feature.base_features[0].get_name())
    name = feature.primitive.name
    if name == "count":
        return x.count()
    if name in ("sum", "mean", "max", "min"):
        return getattr(x, name)()
    if name == "std":
        return x.std(ddof=1)
    if name == "skew":
        return _skew(x)
    if name == "num_unique":
        return x.drop_nulls().n_unique()
    if name == "percent_true":
        return x.fill_null(False).cast(pl.Float64).mean()
    in_order = x.sort_by(POSITION)  # featuretools' row order: the entity set's, by time index
    if name == "last":
        return in_order.last()
    if name == "previous":
        return in_order.reverse().slice(1, 1).first()
    if name == "true_streak":
        return in_order.reverse().cast(pl.Int64).cum_prod().sum()  # trailing 1s: cum_prod stays 1 until the first False
    return _duration(name, x, in_order)


def _duration(name: str, x: pl.Expr, in_order: pl.Expr) -> pl.Expr:
    """DURATIONS in seconds (_in_units converts them after grouping); featuretools' definitions, NaN with too few values."""
    if name == "avg_time_between":
        n = x.count()
        span = pl.when(n >= 2).then(x.max() - x.min())
        return span.dt.total_nanoseconds() / 1e9 / (n - 1)
    if name == "last_time_between":
        return x.drop_nulls().sort().tail(2).diff().last().dt.total_nanoseconds() / 1e9
    # values.iloc[0] / iloc[-1] in featuretools' row order
    edge = in_order.first() if name == "time_since_first" else in_order.last()
    return (pl.col(TIME).first() - edge).dt.total_nanoseconds() / 1e9


def _in_units(feature: AggregationFeature) -> pl.Expr:
    """DURATIONS' seconds in the primitive's unit, with featuretools' own conversion."""
    column = pl.col(feature.get_name())
    if feature.primitive.name not in DURATIONS:
        return column
    convert = lambda s: pl.Series(convert_time_units(s.to_numpy(), feature.primitive.unit)).fill_nan(None)  # noqa: E731
    return column.map_batches(convert, return_dtype=pl.Float64)


def _skew(x: pl.Expr) -> pl.Expr:
    """pandas' Series.skew: bias-corrected G1 from centred moments; 0 when the variance is 0, NaN below 3 values."""
    n = x.count().cast(pl.Float64)
    centred = x.cast(pl.Float64) - x.cast(pl.Float64).mean()
    m2 = (centred**2).sum()
    m3 = (centred**3).sum()
    m2 = pl.when(m2.abs() < 1e-14).then(0.0).otherwise(m2)
    m3 = pl.when(m3.abs() < 1e-14).then(0.0).otherwise(m3)
    g1 = n * (n - 1).sqrt() / (n - 2) * m3 / m2.pow(1.5)
    return pl.when(n < 3).then(None).when(m2 == 0).then(0.0).otherwise(g1)


def _mode(values: pl.DataFrame, feature: AggregationFeature) -> pl.DataFrame:
    """Most frequent value per query row, the smallest one on ties (pandas' Series.mode()[0])."""
    x = feature.base_features[0].get_name()
    counts = values.select(ROW, x).drop_nulls().group_by(ROW, x).len()
    return (
        counts.sort([ROW, "len", x], descending=[False, True, False])
        .group_by(ROW, maintain_order=True)
        .first()
        .select(ROW, pl.col(x).alias(feature.get_name()))
    )
