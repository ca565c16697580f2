"""features.partitions: the feature step split by customer into parts computed apart gives the one-partition matrix."""

from __future__ import annotations

import logging
from pathlib import Path

import featuretools as ft
import pandas as pd
import pytest

from pipeline import feature_partitions, steps
from pipeline.config import load_config
from pipeline.feature_partitions import PartitionError, customer_part, owned_tables, part_artifacts
from pipeline.features import cutoff_times, point_in_time_entityset, synthesize
from pipeline.spec import load_spec
from tests.helpers import write_small_source

SPEC = load_spec("adventureworks")
# min/std/mode too: categorical and NaN-bearing outputs must come out with the whole matrix's dtypes
PRIMITIVES = {"agg_primitives": ["count", "sum", "mean", "max", "min", "std", "mode", "num_unique"], "trans_primitives": ["month"]}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/small.db"
    write_small_source(url, customers=150)
    return url


def config(work: Path, source: str, **features):
    return load_config(
        overrides={
            "paths": {"work_dir": str(work)},
            "data": {"url": source, "generate_if_missing": False},
            "labels": {"horizon_days": 90},
            "features": {**PRIMITIVES, "max_depth": 2, **features},
            "cache": {"enabled": False},
        }
    )


def run_to_labels(cfg, run_id: str):
    art = steps.run_artifacts(cfg, run_id)
    steps.extract(cfg, art)
    steps.make_labels(cfg, art)
    return art


@pytest.fixture(scope="module")
def whole(tmp_path_factory, source) -> pd.DataFrame:
    cfg = config(tmp_path_factory.mktemp("whole"), source)
    art = run_to_labels(cfg, "whole")
    steps.make_features(cfg, art)
    return art.get_frame("features")


def test_owned_and_shared_tables_of_adventureworks() -> None:
    owners = owned_tables(SPEC)
    assert set(owners) == {"orders", "customers", "order_details"}  # products and its parents go whole to every part
    assert owners["order_details"].parent == "orders"


def test_customer_part_is_the_same_for_integer_and_float_keys_and_spreads_them() -> None:
    keys = pd.Series(range(1000))
    parts = customer_part(keys, 4)
    assert (parts == customer_part(keys.astype(float), 4)).all()
    assert pd.Series(parts).value_counts().min() > 200  # a hash, not a range split: every part gets a share


def test_three_parts_in_local_processes_equal_one_partition(tmp_path, source, whole) -> None:
    cfg = config(tmp_path, source, partitions=3)
    art = run_to_labels(cfg, "parts")
    summary = steps.make_features(cfg, art)
    matrix = art.get_frame("features")
    pd.testing.assert_frame_equal(matrix, whole, check_exact=True)
    assert summary["orders"] == len(whole)
    manifests = [part_artifacts(art, i).read_manifest() for i in range(3)]
    assert len({m["token"] for m in manifests}) == 1
    assert sum(m["rows"] for m in manifests) == len(whole)
    assert all(m["rows"] > 0 and m["peak_rss_mb"] > 0 for m in manifests)
    assert "features.parquet" in manifests[0]["artifacts"]


def test_parts_that_leave_no_manifest_are_launched_once_more_then_computed_here(tmp_path, source, whole, caplog) -> None:
    cfg = config(tmp_path, source, partitions=2)
    art = run_to_labels(cfg, "lost")
    launches = []
    with caplog.at_level(logging.WARNING, logger="pipeline.feature_partitions"):
        steps.make_features(cfg, art, launch_parts=lambda parts, token: launches.append(parts))
    assert launches == [[0, 1], [0, 1]]
    assert caplog.text.count("FEATURES FALLBACK") == 2
    pd.testing.assert_frame_equal(art.get_frame("features"), whole, check_exact=True)


def test_a_manifest_from_another_launch_is_not_taken_for_this_one(tmp_path, source) -> None:
    cfg = config(tmp_path, source, partitions=2)
    art = run_to_labels(cfg, "stale")
    spec = SPEC

    def in_process(parts, token):  # the parts' own code, without the cost of starting processes
        for i in parts:
            feature_partitions.compute_part(spec, art, i, token)

    steps.make_features(cfg, art, launch_parts=in_process)
    assert len(feature_partitions.finished_parts(art, 2, part_artifacts(art, 0).read_manifest()["token"])) == 2
    assert feature_partitions.finished_parts(art, 2, "another-launch") == []


def test_features_over_shared_parents_are_refused_naming_them(tmp_path, source) -> None:
    """At depth 3, DFS aggregates a product's order lines across customers: no part holds them all."""
    cfg = config(tmp_path, source, max_depth=3, partitions=2)
    art = run_to_labels(cfg, "deep")
    tables = steps.load_tables(SPEC, art)
    labels = art.get_frame("labels")
    result = synthesize(SPEC, tables, labels.iloc[:0], max_depth=3, max_features=400, **PRIMITIVES)
    assert "products.COUNT(order_details)" in result.definitions_json
    es, cutoff = point_in_time_entityset(SPEC, tables), cutoff_times(SPEC, tables, labels)
    with pytest.raises(PartitionError, match=r"need every customer's rows.*order_details\.products\.COUNT\(order_details\)"):
        feature_partitions.write_parts(SPEC, es, cutoff, result.definitions_json, art, 2)
    across = feature_partitions.cross_customer_features(SPEC, ft.load_features(result.definitions_json))
    assert across and all("products." in name for name in across)
