"""Feature step on real AdventureWorks: columnar engine vs featuretools, and the engine's growth with data size.

Usage: AW_DATA_DIR=/path/to/csvs .venv/bin/python -m bench.feature_engine [--skip-featuretools]

Both engines get the same DFS definitions, entity set and cutoff times (one per labelled
order, tie-broken as the pipeline does) and must return equal matrices. Growth: customers
(with their orders and lines) replicated 1x, 2x, 4x under shifted ids; the exponent is the
slope of log(seconds) over log(labelled orders). Writes bench/results/feature_engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import featuretools as ft
import numpy as np
import pandas as pd

from pipeline.data.extract import extract_tables
from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder
from pipeline.feature_engine import calculate_feature_matrix
from pipeline.features import _with_instants, build_entityset, cutoff_times, foreign_keys
from pipeline.labels import label_orders
from pipeline.spec import load_spec

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
        defs, es, cutoff = prepare(tables, primitives)
        engine_s, matrix = timed(calculate_feature_matrix, defs, es, cutoff)
        entry = {
            "features": len(defs),
            "orders": len(cutoff),
            "distinct_cutoffs": int(cutoff.time.nunique()),
            "engine_seconds": round(engine_s, 2),
        }
        if not args.skip_featuretools:
            ft_s, expected = timed(
                ft.calculate_feature_matrix, defs, es, cutoff_time=cutoff, include_cutoff_time=True, cutoff_time_in_index=False
            )
            pd.testing.assert_frame_equal(expected, matrix, check_exact=False, rtol=1e-9)
            entry.update(featuretools_seconds=round(ft_s, 1), engine_speedup=round(ft_s / engine_s, 1), equal=True)
        report[set_name] = entry
        print(set_name, entry, flush=True)
    growth = {}
    for times in (1, 2, 4):
        defs, es, cutoff = prepare(replicate(tables, times), PRIMITIVE_SETS["default"])
        growth[times] = {"orders": len(cutoff), "engine_seconds": round(timed(calculate_feature_matrix, defs, es, cutoff)[0], 2)}
        print("replicated", times, growth[times], flush=True)
    rows = np.log([g["orders"] for g in growth.values()])
    secs = np.log([g["engine_seconds"] for g in growth.values()])
    report["engine_growth"] = {str(k): v for k, v in growth.items()}
    report["engine_growth_exponent"] = round(float(np.polyfit(rows, secs, 1)[0]), 2)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
