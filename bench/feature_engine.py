"""Feature step on real AdventureWorks: columnar engine vs featuretools, the engine's growth with data size,
peak memory of both, and of the feature step split by customer (features.partitions).

Usage: AW_DATA_DIR=/path/to/csvs .venv/bin/python -m bench.feature_engine [--skip-featuretools]

Both engines get the same DFS definitions, entity set and cutoff times (one per labelled
order, tie-broken as the pipeline does) and must return equal matrices. Each engine runs in
its own spawned process, whose peak resident memory (ru_maxrss) is reported beside that of
a process that only prepares the inputs (loading, entity set, DFS): the difference is what
computing the matrix costs. Growth: customers (with their orders and lines) replicated 1x,
2x, 4x, 8x under shifted ids; the exponent is the slope of log(seconds) over log(labelled
orders). Partitions: the 8x data in 1 and in 4 customer parts (`pipeline.feature_partitions`),
each part in its own process: peak memory per part. Writes bench/results/feature_engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import featuretools as ft
import numpy as np
import pandas as pd

from bench import harness
from pipeline import feature_partitions
from pipeline.data.extract import extract_tables
from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder
from pipeline.dispatch import run_processes
from pipeline.feature_engine import calculate_feature_matrix
from pipeline.features import _with_instants, build_entityset, cutoff_times, foreign_keys
from pipeline.labels import label_orders
from pipeline.spec import load_spec
from pipeline.storage import LocalStore, RunArtifacts

SPEC = load_spec("adventureworks")
PRIMITIVE_SETS = {
    "default": dict(
        agg_primitives=["count", "sum", "mean", "max", "num_unique", "time_since_first"],
        trans_primitives=["month", "weekday"],
        max_features=150,
    ),
    "depth2_std_min_mode": dict(
        agg_primitives=["count", "sum", "mean", "max", "min", "std", "mode", "num_unique", "time_since_first"],
        trans_primitives=["month"],
        max_features=200,
    ),
}
RESULTS = Path(__file__).with_name("results") / "feature_engine.json"


def replicate(tables: dict[str, pd.DataFrame], times: int) -> dict[str, pd.DataFrame]:
    """The customers, their orders and lines `times` over, copy k with every id shifted by k x (max id + 1)."""
    ids = {"customers": ["CustomerID"], "orders": ["SalesOrderID", "CustomerID"], "order_details": ["SalesOrderDetailID", "SalesOrderID"]}
    out = dict(tables)
    for name, columns in ids.items():
        copies = []
        for k in range(times):
            copy = tables[name].copy()
            for col in columns:
                copy[col] = copy[col] + k * (int(tables[_owner(col)][col].max()) + 1)
            copies.append(copy)
        out[name] = pd.concat(copies, ignore_index=True)
    return out


def _owner(column: str) -> str:
    return {"CustomerID": "customers", "SalesOrderID": "orders", "SalesOrderDetailID": "order_details"}[column]


def prepare(tables: dict[str, pd.DataFrame], primitives: dict) -> tuple[list, ft.EntitySet, pd.DataFrame]:
    labels = label_orders(tables["orders"], "SalesOrderID", "CustomerID", "OrderDate", 180)
    es = build_entityset(SPEC, _with_instants(SPEC, tables))
    defs = ft.dfs(
        entityset=es, target_dataframe_name="orders", max_depth=2, ignore_columns=foreign_keys(SPEC), features_only=True, **primitives
    )
    return defs, es, cutoff_times(SPEC, tables, labels)


def timed(fn, *args, **kwargs) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def compute(tables: dict[str, pd.DataFrame], primitives: dict, engine: str | None) -> dict:
    """In a fresh process: prepare the inputs, compute the matrix with `engine` (None: prepare only);
    seconds, the matrix and the process's peak resident memory."""
    warnings.filterwarnings("ignore")
    defs, es, cutoff = prepare(tables, primitives)
    out = {"features": len(defs), "orders": len(cutoff), "distinct_cutoffs": int(cutoff.time.nunique())}
    if engine == "engine":
        out["seconds"], out["matrix"] = timed(calculate_feature_matrix, defs, es, cutoff)
    elif engine == "featuretools":
        out["seconds"], out["matrix"] = timed(
            ft.calculate_feature_matrix, defs, es, cutoff_time=cutoff, include_cutoff_time=True, cutoff_time_in_index=False
        )
    return {**out, "peak_mb": feature_partitions.peak_rss_mb()}


def in_process(*args) -> dict:
    """`compute(*args)` in its own spawned process, so its peak memory is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(compute, *args).result()


def partitioned_peaks(tables: dict[str, pd.DataFrame], primitives: dict, n_parts: int, folder: str) -> dict:
    """The matrix computed in `n_parts` customer parts, each in its own process: rows and peak memory per part."""
    defs, es, cutoff = prepare(tables, primitives)
    art = RunArtifacts(LocalStore(folder), f"parts-{n_parts}")
    token = feature_partitions.write_parts(SPEC, es, cutoff, ft.save_features(defs), art, n_parts)
    del defs, es
    run_processes(_part, [(art, i, token) for i in range(n_parts)], concurrent=1)
    manifests = [feature_partitions.part_artifacts(art, i).read_manifest() for i in range(n_parts)]
    matrix = feature_partitions.gather_parts(art, n_parts, cutoff)
    return {"rows": [m["rows"] for m in manifests], "peak_mb": [m["peak_rss_mb"] for m in manifests], "matrix": matrix}


def _part(art: RunArtifacts, index: int, token: str) -> None:
    warnings.filterwarnings("ignore")
    feature_partitions.compute_part(SPEC, art, index, token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-featuretools", action="store_true", help="engine timings only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    aw = os.environ.get("AW_DATA_DIR")
    if not aw:
        raise SystemExit("set AW_DATA_DIR to the AdventureWorks CSV folder")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/aw.db"
        load_csv_folder(Path(aw), url, tables=SPEC_TABLES)
        tables = extract_tables(url, SPEC)
    report: dict = {"dataset": "AdventureWorks (real)", "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    for set_name, primitives in PRIMITIVE_SETS.items():
        inputs = in_process(tables, primitives, None)
        engine = in_process(tables, primitives, "engine")
        entry = {
            **{k: engine[k] for k in ("features", "orders", "distinct_cutoffs")},
            "engine_seconds": round(engine["seconds"], 2),
            "inputs_peak_mb": inputs["peak_mb"],
            "engine_peak_mb": engine["peak_mb"],
        }
        if not args.skip_featuretools:
            featuretools = in_process(tables, primitives, "featuretools")
            pd.testing.assert_frame_equal(featuretools["matrix"], engine["matrix"], check_exact=False, rtol=1e-9)
            entry.update(
                featuretools_seconds=round(featuretools["seconds"], 1),
                featuretools_peak_mb=featuretools["peak_mb"],
                engine_speedup=round(featuretools["seconds"] / engine["seconds"], 1),
                equal=True,
            )
        report[set_name] = entry
        print(set_name, entry, flush=True)
    growth = {}
    for times in (1, 2, 4, 8):
        run = in_process(replicate(tables, times), PRIMITIVE_SETS["default"], "engine")
        growth[times] = {"orders": run["orders"], "engine_seconds": round(run["seconds"], 2), "engine_peak_mb": run["peak_mb"]}
        print("replicated", times, growth[times], flush=True)
    rows = np.log([g["orders"] for g in growth.values()])
    secs = np.log([g["engine_seconds"] for g in growth.values()])
    report["engine_growth"] = {str(k): v for k, v in growth.items()}
    report["engine_growth_exponent"] = round(float(np.polyfit(rows, secs, 1)[0]), 2)
    with tempfile.TemporaryDirectory() as folder:
        big = replicate(tables, 8)
        parts = {n: partitioned_peaks(big, PRIMITIVE_SETS["default"], n, folder) for n in (1, 4)}
    pd.testing.assert_frame_equal(parts[4].pop("matrix"), parts[1].pop("matrix"), check_exact=True)
    report["engine_partitions_8x"] = {str(n): p for n, p in parts.items()} | {"equal": True}
    print("partitions", report["engine_partitions_8x"], flush=True)
    machine = harness.machine()
    report["measured"] = {k: machine[k] for k in ("date_utc", "commit", "load_average_at_start")}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
