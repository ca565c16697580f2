"""Scale simulation: the AdventureWorks customers replicated 1x/4x/16x under shifted ids, end to end.

Each replica is a copy of every customer with all their orders and order lines, ids shifted, so
the history per customer and the label balance stay the same while rows grow by the factor. Every
step runs in a fresh process (`bench.harness.run_steps_isolated`): its time and its peak resident
memory are its own (imports included, about 0.3-0.4 GB of the figure). Tuning runs a fixed number
of trials, so its growth is the growth of one trial.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import harness

log = logging.getLogger(__name__)


def growth_exponent(rows: list[int], values: list[float]) -> float:
    """Slope of log(value) over log(rows): 1 is linear growth."""
    return round(float(np.polyfit(np.log(rows), np.log(np.maximum(values, 1e-3)), 1)[0]), 2)


def run(tables: dict[str, pd.DataFrame], work_dir: Path, factors: tuple[int, ...], n_trials: int) -> dict[str, Any]:
    """End-to-end time and peak memory per step at each replication factor, and each step's growth exponent."""
    points: dict[str, Any] = {}
    for factor in factors:
        replica = harness.replicate(tables, factor)
        url = harness.write_source(replica, work_dir / f"source-{factor}x.db")
        overrides = harness.bench_overrides(work_dir / f"work-{factor}x", url, {"tuning": {"n_trials": n_trials}})
        per_step = harness.run_steps_isolated(overrides, harness.new_run_id(f"scale{factor}x"))
        points[str(factor)] = {
            "orders": len(replica["SalesOrderHeader"]),
            "order_lines": len(replica["SalesOrderDetail"]),
            "steps": per_step,
            "end_to_end_seconds": round(sum(s["seconds"] for s in per_step.values()), 1),
            "peak_mb": max(s["peak_mb"] for s in per_step.values()),
        }
        log.info("scale %dx: %s", factor, points[str(factor)])
    orders = [p["orders"] for p in points.values()]
    exponents = {
        step: {
            "seconds": growth_exponent(orders, [p["steps"][step]["seconds"] for p in points.values()]),
            "peak_mb": growth_exponent(orders, [p["steps"][step]["peak_mb"] for p in points.values()]),
        }
        for step in harness.STEPS
    }
    largest = points[str(factors[-1])]["steps"]
    return {
        "n_trials": n_trials,
        "factors": points,
        "growth_exponents": exponents,
        "end_to_end_growth_exponent": growth_exponent(orders, [p["end_to_end_seconds"] for p in points.values()]),
        "slowest_step_at_largest": max(largest, key=lambda s: largest[s]["seconds"]),
        "hungriest_step_at_largest": max(largest, key=lambda s: largest[s]["peak_mb"]),
    }
