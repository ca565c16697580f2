"""The feature step split by customer into `features.partitions` parts that run on separate workers.

A target row's features come from its customer's own history (their orders and order lines
up to the cutoff) and from shared parent tables (products, subcategories, categories). So the
rows are split by a hash of the customer key:

- *owned* tables, whose every row belongs to one customer, are split: the target (by its
  customer key), the customer table (by its index) and every table below either of them
  through the spec's relationships (a row goes where its parent row went, e.g. an order line
  with its order; a row without a known parent goes to part 0);
- *shared* tables (every other one, e.g. products) go whole to every part: a product's row
  and its parents' are the same whichever customer's order line points at it.

Features that aggregate an owned table from a shared parent (a product's number of sales
across customers as of the cutoff) or transform an owned table across rows (a percentile
over all orders) need every customer's rows. Computing them once on the whole data would
bring back the very memory bound the parts exist to avoid, so they are refused when
partitions > 1, naming them; DFS on orders at depth <= 2 produces none.

The orchestrator (`pipeline.steps.make_features`) builds the whole entity set once, to let
DFS pick the definitions and to fix every column's type on the whole data (a part without
NULLs in a column must still give it the nullable type, and the same categories), writes
each part's inputs to the run's artifact store, launches the parts through
`pipeline.dispatch` and concatenates their matrices in the original row order. Each part
reads its inputs, computes, and writes its matrix and then its manifest (`token` names the
launch, so a manifest left by an earlier attempt is never taken for this one).
"""

from __future__ import annotations

import logging
import os
import resource
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import featuretools as ft
import numpy as np
import pandas as pd
from featuretools.feature_base import AggregationFeature, FeatureBase, TransformFeature

from pipeline.feature_engine import ROW_WISE_TRANSFORMS
from pipeline.features import calculate_features
from pipeline.spec import DatasetSpec
from pipeline.storage import RunArtifacts

log = logging.getLogger(__name__)

PARTS = "feature-parts"


class PartitionError(ValueError):
    """The features cannot be computed per customer part (they need every customer's rows)."""


@dataclass(frozen=True)
class Owner:
    """How an owned table's rows find their part: by hashing `key`, or through `parent`'s rows (`key` -> `parent_key`)."""

    key: str
    parent: str | None = None
    parent_key: str | None = None


def owned_tables(spec: DatasetSpec) -> dict[str, Owner]:
    """The tables whose rows each belong to one customer, in an order where parents come first."""
    target = spec.target
    owners = {target.entity: Owner(target.customer_key)}
    for rel in spec.relationships:
        if rel.child == target.entity and rel.child_key == target.customer_key:
            owners[rel.parent] = Owner(rel.parent_key)  # the customer table: its index is the customer key
    grew = True
    while grew:
        grew = False
        for rel in spec.relationships:
            if rel.parent in owners and rel.child not in owners:
                owners[rel.child] = Owner(rel.child_key, rel.parent, rel.parent_key)
                grew = True
    return owners


def customer_part(keys: pd.Series, n_parts: int) -> np.ndarray:
    """Part of each customer key: a stable hash (the same in every process and on every machine), modulo n.

    Keys are compared as integers when they are numeric (a key read as float because of a
    NULL elsewhere still lands where its integer twin does); missing keys go to part 0.
    """
    values = pd.to_numeric(keys, errors="coerce").astype("Int64") if pd.api.types.is_numeric_dtype(keys) else keys.astype("string")
    parts = pd.util.hash_array(values.fillna(values.dropna().iloc[0] if values.notna().any() else 0).to_numpy()) % n_parts
    return np.where(values.isna().to_numpy(), 0, parts).astype(np.int64)


def row_parts(spec: DatasetSpec, frames: dict[str, pd.DataFrame], n_parts: int) -> dict[str, np.ndarray]:
    """Part of every row of every owned table (parents first, so children look their part up)."""
    parts: dict[str, np.ndarray] = {}
    for name, owner in owned_tables(spec).items():
        keys = frames[name][owner.key].reset_index(drop=True)
        if owner.parent is None:
            parts[name] = customer_part(keys, n_parts)
            continue
        parent_parts = pd.Series(parts[owner.parent], index=frames[owner.parent][owner.parent_key].to_numpy())
        parts[name] = keys.map(parent_parts).fillna(0).astype(np.int64).to_numpy()
    return parts


def cross_customer_features(spec: DatasetSpec, features: list[FeatureBase]) -> list[str]:
    """Names of features that read other customers' rows: aggregations of owned rows under a shared
    parent, and transforms of owned rows that are not row-wise (they rank or accumulate across rows)."""
    owned = set(owned_tables(spec))
    return [f.get_name() for f in features if any(_reads_across_customers(dep, owned) for dep in [f, *f.get_dependencies(deep=True)])]


def _reads_across_customers(feature: FeatureBase, owned: set[str]) -> bool:
    if isinstance(feature, AggregationFeature):
        path = {name for _, rel in feature.relationship_path for name in (rel.parent_dataframe.ww.name, rel.child_dataframe.ww.name)}
        return feature.dataframe_name not in owned and bool(path & owned)
    if isinstance(feature, TransformFeature):
        return feature.dataframe_name in owned and feature.primitive.name not in ROW_WISE_TRANSFORMS
    return False


def check_partitionable(spec: DatasetSpec, features: list[FeatureBase]) -> None:
    across = cross_customer_features(spec, features)
    if across:
        raise PartitionError(
            f"features.partitions > 1 splits the data by customer, but {len(across)} feature(s) need every customer's rows "
            f"(aggregations of customers' rows under a shared table, or transforms across rows): {', '.join(across[:10])}"
            f"{' ...' if len(across) > 10 else ''}. Set features.partitions: 1, or drop the primitives or depth that make them."
        )


# --- orchestrator side ---------------------------------------------------------------------------


def part_artifacts(art: RunArtifacts, index: int) -> RunArtifacts:
    """A part's own folder in the run (`runs/<run>/feature-parts/<i>/`), with its own manifest."""
    return RunArtifacts(art.store, f"{art.run_id}/{PARTS}/{index}")


def write_parts(spec: DatasetSpec, es: ft.EntitySet, cutoff: pd.DataFrame, definitions_json: str, art: RunArtifacts, n_parts: int) -> str:
    """Each part's tables (the whole entity set's frames, typed as on the whole), cutoff rows and the
    shared definitions and types into the store; returns the launch token the parts sign their manifests with."""
    check_partitionable(spec, ft.load_features(definitions_json))
    frames = {name: es[name].reset_index(drop=True) for name in spec.entities}
    parts = row_parts(spec, frames, n_parts)
    target = spec.target.entity
    cutoff_parts = pd.Series(parts[target], index=frames[target][spec.entities[target].index].to_numpy())
    cutoff_part = cutoff.iloc[:, 0].map(cutoff_parts).to_numpy()
    token = uuid.uuid4().hex
    types = {name: dict(es[name].ww.logical_types) for name in spec.entities}
    for i in range(n_parts):
        part = part_artifacts(art, i)
        for name, frame in frames.items():
            part.put_frame(f"tables/{name}", frame[parts[name] == i] if name in parts else frame)
        part.put_frame("cutoff", cutoff[cutoff_part == i].reset_index(drop=True))
        part.put_bytes("feature_definitions.json", definitions_json.encode())
        part.put_object("logical_types", types)
    log.info("features split into %d parts by customer: %s target rows", n_parts, np.bincount(cutoff_part, minlength=n_parts).tolist())
    return token


def finished_parts(art: RunArtifacts, n_parts: int, token: str) -> list[int]:
    """Parts whose manifest, signed with this launch's token, vouches for intact outputs."""
    done = []
    for i in range(n_parts):
        part = part_artifacts(art, i)
        if part.has("manifest.json") and part.read_manifest().get("token") == token and not part.verify():
            done.append(i)
    return done


def gather_parts(art: RunArtifacts, n_parts: int, cutoff: pd.DataFrame) -> pd.DataFrame:
    """The parts' matrices as one, rows in the cutoff frame's order (as one partition returns them)."""
    matrices = [part_artifacts(art, i).get_frame("features") for i in range(n_parts)]
    matrix = pd.concat([m for m in matrices if len(m)] or matrices[:1])
    for col in matrix.columns:
        if any(isinstance(m[col].dtype, pd.CategoricalDtype) for m in matrices) and not isinstance(matrix[col].dtype, pd.CategoricalDtype):
            # parts saw different categories: the whole matrix has the sorted union, as one partition would
            matrix[col] = pd.Categorical(matrix[col], categories=sorted(matrix[col].dropna().unique()))
    return matrix.loc[cutoff.iloc[:, 0].to_numpy()]


def run_partitioned(
    spec: DatasetSpec,
    es: ft.EntitySet,
    cutoff: pd.DataFrame,
    definitions_json: str,
    art: RunArtifacts,
    n_parts: int,
    launch: Callable[[list[int], str], object],
    engine: str = "columnar",
) -> pd.DataFrame:
    """Write the parts, `launch(parts, token)` them, launch the missing ones once more, compute any
    still missing here (FEATURES FALLBACK: same values, this process's memory), gather."""
    token = write_parts(spec, es, cutoff, definitions_json, art, n_parts)
    launch(list(range(n_parts)), token)
    missing = sorted(set(range(n_parts)) - set(finished_parts(art, n_parts, token)))
    if missing:
        log.warning("feature parts %s left no manifest: launching them once more", missing)
        launch(missing, token)
        missing = sorted(set(range(n_parts)) - set(finished_parts(art, n_parts, token)))
    for i in missing:
        log.warning("FEATURES FALLBACK: part %d failed twice: computing it in this process", i)
        compute_part(spec, art, i, token, engine)
    return gather_parts(art, n_parts, cutoff)


# --- part side -----------------------------------------------------------------------------------


def compute_part(spec: DatasetSpec, art: RunArtifacts, index: int, token: str, engine: str = "columnar") -> dict[str, object]:
    """One part: its tables and cutoff rows in, its feature matrix and then its manifest out."""
    part = part_artifacts(art, index)
    types = part.get_object("logical_types")
    es = ft.EntitySet(id=spec.name)
    for name, ent in spec.entities.items():
        frame = part.get_frame(f"tables/{name}")
        es.add_dataframe(dataframe_name=name, dataframe=frame, index=ent.index, time_index=ent.time_index, logical_types=types[name])
    for rel in spec.relationships:
        es.add_relationship(rel.parent, rel.parent_key, rel.child, rel.child_key)
    features = ft.load_features(part.get_bytes("feature_definitions.json").decode())
    matrix = calculate_features(features, es, part.get_frame("cutoff"), engine)
    part.put_frame("features", matrix)
    summary = {
        "token": token,
        "part": index,
        "rows": len(matrix),
        "peak_rss_mb": peak_rss_mb(),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    part.write_manifest(summary)
    log.info("feature part %d: %d rows, peak RSS %.0f MB", index, len(matrix), summary["peak_rss_mb"])
    return summary


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux: VmHWM, the high-water mark of this program's own memory. Not ru_maxrss, which a
    spawned process inherits from the parent that forked it (Linux keeps it across exec), so
    a part started by an orchestrator holding the whole data would report the orchestrator's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1)  # macOS: bytes
