"""Deep Feature Synthesis with cutoff times: features as of each order's own time, never later.

Each labelled order gets features computed by featuretools from the data known at
its OrderDate (the cutoff time): rows of any table whose time index is after the
cutoff are invisible to its features. Orders often carry day-resolution timestamps,
so when one customer has several orders at the same timestamp, ties are broken by
the order key: an order never sees the orders its customer placed after it that day
(nor their lines, which are stamped with the same tie-broken instant).

featuretools' DFS chooses the features; by default pipeline.feature_engine computes
them (the same matrix as featuretools' calculate_feature_matrix, in about a second
instead of minutes); `engine="featuretools"` uses featuretools itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import featuretools as ft
import pandas as pd

from pipeline.feature_engine import calculate_feature_matrix
from pipeline.feature_windows import window_recency_features
from pipeline.labels import LABEL
from pipeline.spec import DatasetSpec

log = logging.getLogger(__name__)


@dataclass
class FeatureResult:
    matrix: pd.DataFrame  # index: the target entity's key; columns: features + label
    definitions_json: str  # ft.save_features output, to recompute the same features later
    descriptions: dict[str, str]


def tie_broken_instants(orders: pd.DataFrame, index: str, customer_key: str, time_index: str) -> pd.Series:
    """Time index + a microsecond offset by key rank among one customer's orders with equal timestamps.

    Only those orders move, so the number of distinct cutoff times (which drives
    featuretools' cost) stays about the number of distinct order dates.
    """
    times = pd.to_datetime(orders[time_index])
    rank = orders.assign(_t=times).groupby([customer_key, "_t"])[index].rank(method="first") - 1
    return times + pd.to_timedelta(rank.astype("int64"), unit="us")


def _with_instants(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Apply tie-broken instants to the target and to child rows stamped with their parent's time."""
    target = spec.target.entity
    ent = spec.entities[target]
    out = dict(tables)
    orders = tables[target].copy()
    instants = tie_broken_instants(orders, ent.index, spec.target.customer_key, spec.target.time_index)
    orders[spec.target.time_index] = instants
    out[target] = orders
    lookup = pd.Series(instants.to_numpy(), index=orders[ent.index].to_numpy())
    original = pd.Series(pd.to_datetime(tables[target][spec.target.time_index]).to_numpy(), index=lookup.index)
    for rel in spec.relationships:
        child_ent = spec.entities[rel.child]
        if rel.parent != target or not child_ent.time_index:
            continue
        child = tables[rel.child].copy()
        keys = child[rel.child_key]
        child_times = pd.to_datetime(child[child_ent.time_index])
        stamped = child_times.to_numpy() == keys.map(original).to_numpy()
        child.loc[stamped, child_ent.time_index] = keys[stamped].map(lookup).to_numpy()
        out[rel.child] = child
    return out


def _logical_types(df: pd.DataFrame, declared: dict[str, str]) -> dict[str, str]:
    """A woodwork type for every column: the spec's where given, else one read off the pandas dtype.

    Typing every column up front skips woodwork's inference, which costs seconds per
    text column on tables of 100k rows. Integer/Boolean columns with NULLs get the
    nullable forms; undeclared text columns are categorical.
    """
    nullable = {"Integer": "IntegerNullable", "Boolean": "BooleanNullable"}
    types = {}
    for col in df.columns:
        kind = declared.get(col) or _dtype_logical_type(df[col])
        types[col] = nullable.get(kind, kind) if df[col].isna().any() else kind
    return types


def _dtype_logical_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "Boolean"
    if pd.api.types.is_integer_dtype(series):
        return "Integer"
    if pd.api.types.is_float_dtype(series):
        return "Double"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "Datetime"
    return "Categorical"


def _nullable_key_columns(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> set[tuple[str, str]]:
    """(entity, column) pairs on both ends of relationships whose child key has NULLs.

    featuretools gives a child key its parent index's type, and integer types refuse
    NULLs, so such keys (e.g. a product without subcategory) are typed Categorical on both ends.
    """
    pairs: set[tuple[str, str]] = set()
    for rel in spec.relationships:
        if tables[rel.child][rel.child_key].isna().any():
            pairs |= {(rel.child, rel.child_key), (rel.parent, rel.parent_key)}
    return pairs


def build_entityset(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> ft.EntitySet:
    es = ft.EntitySet(id=spec.name)
    categorical_keys = _nullable_key_columns(spec, tables)
    for name, ent in spec.entities.items():
        df = tables[name].drop(columns=[c for c in ent.drop if c in tables[name].columns])
        types = _logical_types(df, ent.logical_types)
        types.update({col: "Categorical" for entity, col in categorical_keys if entity == name})
        es.add_dataframe(dataframe_name=name, dataframe=df.copy(), index=ent.index, time_index=ent.time_index, logical_types=types)
    for rel in spec.relationships:
        es.add_relationship(rel.parent, rel.parent_key, rel.child, rel.child_key)
    return es


def point_in_time_entityset(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> ft.EntitySet:
    """The spec's entity set with orders (and the child rows stamped with them) at their tie-broken instants."""
    return build_entityset(spec, _with_instants(spec, tables))


def order_instants(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Each order's tie-broken instant (its cutoff time), indexed by order key."""
    ent = spec.entities[spec.target.entity]
    orders = tables[spec.target.entity]
    instants = tie_broken_instants(orders, ent.index, spec.target.customer_key, spec.target.time_index)
    return pd.Series(instants.to_numpy(), index=orders[ent.index].to_numpy())


def cutoff_times(spec: DatasetSpec, tables: dict[str, pd.DataFrame], labels: pd.DataFrame) -> pd.DataFrame:
    """featuretools cutoff frame: instance id, its tie-broken order instant, and the label passed through."""
    ent = spec.entities[spec.target.entity]
    instants = order_instants(spec, tables)
    return pd.DataFrame(
        {ent.index: labels[ent.index].to_numpy(), "time": labels[ent.index].map(instants).to_numpy(), LABEL: labels[LABEL].to_numpy()}
    )


def foreign_keys(spec: DatasetSpec) -> dict[str, list[str]]:
    """Child keys per entity: identifiers, not features (their parents' features stand for them)."""
    keys: dict[str, list[str]] = {}
    for rel in spec.relationships:
        keys.setdefault(rel.child, []).append(rel.child_key)
    return keys


def _progress_logger(every: float = 10.0):
    state = {"next": every}

    def callback(update: float, progress_percent: float, time_elapsed: float) -> None:
        if progress_percent >= state["next"] or progress_percent >= 100:
            log.info("feature calculation %3.0f%% (%.0fs)", progress_percent, time_elapsed)
            state["next"] = (progress_percent // every + 1) * every

    return callback


def synthesize(
    spec: DatasetSpec,
    tables: dict[str, pd.DataFrame],
    labels: pd.DataFrame,
    max_depth: int = 2,
    agg_primitives: list[str] | None = None,
    trans_primitives: list[str] | None = None,
    max_features: int = 300,
    approximate: str | None = None,
    n_jobs: int = 1,
    engine: str = "columnar",
    windows: list[str] | None = None,
    recency: bool = False,
) -> FeatureResult:
    """Feature matrix for the labelled orders, each as of its own cutoff time.

    DFS picks the features (names, descriptions and saved definitions are featuretools');
    `windows` (e.g. ["30d", "90d"]) and `recency` add pipeline.feature_windows' definitions
    of the customer's recent past to them (beyond max_features). `engine` computes them:
    "columnar" (pipeline.feature_engine, same values in seconds) or "featuretools" (its
    calculate_feature_matrix, one pass per distinct cutoff time; the only one that honours
    `approximate` and `n_jobs`).
    """
    es = point_in_time_entityset(spec, tables)
    target = spec.target.entity
    cutoff = cutoff_times(spec, tables, labels)
    defs = ft.dfs(
        entityset=es,
        target_dataframe_name=target,
        agg_primitives=agg_primitives,
        trans_primitives=trans_primitives,
        max_depth=max_depth,
        max_features=max_features,
        ignore_columns=foreign_keys(spec),
        features_only=True,
    )
    defs += _not_among(defs, window_recency_features(es, target, spec.target.customer_key, windows or [], recency))
    matrix = calculate_features(defs, es, cutoff, engine, approximate, n_jobs)
    descriptions = {f.get_name(): ft.describe_feature(f) for f in defs}
    return FeatureResult(matrix=matrix, definitions_json=ft.save_features(defs), descriptions=descriptions)


def _not_among(defs: list[ft.FeatureBase], extra: list[ft.FeatureBase]) -> list[ft.FeatureBase]:
    """The `extra` features DFS did not already define (e.g. TIME_SINCE_LAST when it is among the DFS primitives)."""
    names = {f.get_name() for f in defs}
    return [f for f in extra if f.get_name() not in names]


def load_definitions(definitions_json: str) -> list[ft.FeatureBase]:
    """ft.load_features, with this pipeline's own primitives registered (importing pipeline.feature_windows does that)."""
    return ft.load_features(definitions_json)


def calculate_features(
    defs: list[ft.FeatureBase],
    es: ft.EntitySet,
    cutoff: pd.DataFrame,
    engine: str = "columnar",
    approximate: str | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """The features `defs` of the cutoff frame's instances, each as of its cutoff time: training and scoring both compute them here."""
    started = time.perf_counter()
    if engine == "columnar":
        if approximate or n_jobs != 1:
            log.info("features.engine columnar computes exact values in one process: approximate/n_jobs apply to featuretools only")
        matrix = calculate_feature_matrix(defs, es, cutoff)
    elif engine == "featuretools":
        matrix = ft.calculate_feature_matrix(
            defs,
            es,
            cutoff_time=cutoff,
            approximate=approximate,
            n_jobs=n_jobs,
            include_cutoff_time=True,
            cutoff_time_in_index=False,
            progress_callback=_progress_logger(),
            verbose=False,
        )
    else:
        raise ValueError(f"features.engine must be 'columnar' or 'featuretools', got {engine!r}")
    log.info("%s: %d features for %d orders in %.1fs", engine, len(defs), len(matrix), time.perf_counter() - started)
    return matrix
