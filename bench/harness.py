"""What every benchmark module shares: the source databases, the configuration, and the pipeline's
steps called directly (no Prefect), timed, in this process or in a fresh one for its peak memory.

Measurements call the same plain step functions as the training flow (`pipeline.steps`,
`pipeline.dispatch.tune`), so a number here is a number of the product, not of a re-implementation.
The step cache is off: every step really runs.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import steps
from pipeline.config import Config, deep_merge, load_config
from pipeline.data.db import write_tables
from pipeline.data.load_csv import PRIMARY_KEYS, SPEC_TABLES, read_csv_folder
from pipeline.feature_partitions import peak_rss_mb

# (table, column) pairs that identify a customer's rows; the replicas shift each by k x (max + 1)
REPLICA_IDS = {
    "Customer": ["CustomerID"],
    "SalesOrderHeader": ["SalesOrderID", "CustomerID"],
    "SalesOrderDetail": ["SalesOrderDetailID", "SalesOrderID"],
}
STEPS = ("extract", "labels", "features", "split", "tuning", "final_fit", "baselines")


def source_tables(quick: bool, synthetic_customers: int = 400) -> dict[str, pd.DataFrame]:
    """The raw tables the AdventureWorks spec reads: the real CSVs (`AW_DATA_DIR`), or in QUICK mode synthetic ones."""
    if quick:
        from pipeline.data.synthetic import generate_tables

        return generate_tables(customers=synthetic_customers, seed=7)
    folder = os.environ.get("AW_DATA_DIR")
    if not folder:
        raise SystemExit("set AW_DATA_DIR to the AdventureWorks CSV folder (or run with --quick on synthetic data)")
    return read_csv_folder(folder, SPEC_TABLES)


def replicate(tables: dict[str, pd.DataFrame], times: int) -> dict[str, pd.DataFrame]:
    """Customers with their orders and lines `times` over; copy k shifts every id by k x (largest id + 1)."""
    if times == 1:
        return tables
    span = {col: int(tables[table][col].max()) + 1 for table, cols in REPLICA_IDS.items() for col in cols[:1]}
    out = dict(tables)
    for table, cols in REPLICA_IDS.items():
        out[table] = pd.concat(
            [tables[table].assign(**{c: tables[table][c] + k * span[c] for c in cols}) for k in range(times)], ignore_index=True
        )
    return out


def write_source(tables: dict[str, pd.DataFrame], path: Path) -> str:
    """The tables as an SQLite database (the pipeline reads it with the spec's SQL); returns its URL."""
    url = f"sqlite:///{path}"
    write_tables(tables, url, keys={name: PRIMARY_KEYS[name] for name in tables if name in PRIMARY_KEYS})
    return url


def bench_overrides(work_dir: Path, url: str, *layers: dict[str, Any]) -> dict[str, Any]:
    """Config overrides of one measured run: its own work dir and source, no step cache, then `layers`."""
    base: dict[str, Any] = {
        "paths": {"work_dir": str(work_dir)},
        "data": {"url": url, "generate_if_missing": False},
        "cache": {"enabled": False},
    }
    for layer in layers:
        base = deep_merge(base, layer)
    return base


def config(overrides: dict[str, Any]) -> Config:
    """The run's configuration: defaults + `overrides`, never this shell's PIPELINE__* variables."""
    return load_config(overrides=overrides, environ={})


def new_run_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def run_step(cfg: Config, run_id: str, name: str, tuned: dict[str, Any] | None = None) -> Any:
    """One step of the training flow on the run's artifacts (final_fit needs the tuning's result)."""
    from pipeline import dispatch

    art = steps.run_artifacts(cfg, run_id)
    if name == "tuning":
        return dispatch.tune(cfg, run_id, None, None)
    if name == "final_fit":
        reports = steps.local_report_dir(cfg, run_id)
        return steps.final_fit_and_evaluate(cfg, art, tuned["best_params"], tuned["best_iteration"], reports)
    if name == "baselines":
        return steps.evaluate_baselines(cfg, art, steps.local_report_dir(cfg, run_id))
    data_steps: dict[str, Callable[..., Any]] = {
        "extract": steps.extract,
        "labels": steps.make_labels,
        "features": steps.make_features,
        "split": steps.split_and_encode,
    }
    return data_steps[name](cfg, art)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run_steps(
    cfg: Config, run_id: str, names: tuple[str, ...] = STEPS, earlier: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """The steps in order in this process, after the `earlier` ones: results (earlier included) and seconds per step."""
    results: dict[str, Any] = dict(earlier or {})
    seconds: dict[str, float] = {}
    for name in names:
        results[name], seconds[name] = timed(run_step, cfg, run_id, name, results.get("tuning"))
    return results, seconds


def _isolated(overrides: dict[str, Any], run_id: str, name: str, tuned: dict[str, Any] | None) -> tuple[Any, float, float]:
    result, seconds = timed(run_step, config(overrides), run_id, name, tuned)
    return result, seconds, peak_rss_mb()  # VmHWM: ru_maxrss would carry the parent's peak across exec


def run_steps_isolated(overrides: dict[str, Any], run_id: str) -> dict[str, dict[str, Any]]:
    """Each step in a fresh process, so its peak resident memory (MB, imports included) is its own."""
    out: dict[str, dict[str, Any]] = {}
    tuned = None
    for name in STEPS:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            result, seconds, peak_mb = pool.submit(_isolated, overrides, run_id, name, tuned).result()
        tuned = result if name == "tuning" else tuned
        out[name] = {"seconds": round(seconds, 2), "peak_mb": round(peak_mb, 1)}
    return out


def machine() -> dict[str, Any]:
    """Where and when the numbers were measured."""
    import platform
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.strip(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
