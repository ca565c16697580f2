"""The benchmark runner: every measurement in one run, its JSON under <out>/results/, then the report.

    AW_DATA_DIR=/path/to/csvs .venv/bin/python -m bench.run            # make bench: real AdventureWorks
    .venv/bin/python -m bench.run --quick --out /tmp/b                   # make bench QUICK=1: synthetic, minutes

Parts run in order of importance and each writes its JSON as soon as it is done (the report is
regenerated after each), so a run stopped early still leaves a report of what finished. The
getML peer runs when `.venv-getml` exists (`make bench` builds it). The feature-engine part runs
`bench.feature_engine` (real data only, it writes bench/results/feature_engine.json); QUICK mode
and a stopped run report its last committed results instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from bench import harness, peer, quality, reference_tuning, report, scale, topology

log = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
PARTS = ("quality", "peer", "topology", "reference_tuning", "scale", "feature_engine")
SIZES = {  # full (real data, `make bench`) and quick (synthetic, `make bench QUICK=1`)
    False: {"quality_trials": 30, "reference_trials": 100, "topology_trials": 400, "scale_factors": (1, 4, 16), "scale_trials": 5},
    True: {"quality_trials": 3, "reference_trials": 4, "topology_trials": 8, "scale_factors": (1, 2), "scale_trials": 2},
}


def save(out: Path, name: str, data: dict[str, Any]) -> None:
    """The part's JSON, stamped with when and at which commit it was measured, then the report regenerated."""
    if name != "machine":
        machine = harness.machine()
        data = {**data, "measured": {k: machine[k] for k in ("date_utc", "commit", "load_average_at_start")}}
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    report.write(out)


def quality_parts(args: argparse.Namespace, size: dict[str, Any], url: str, work: Path) -> dict[str, Any]:
    """Quality runs, then the getML peer on their rows; returns the config overrides of the leakage-safe run and its id."""
    quality_dir, trials = work / "quality", size["quality_trials"]
    q = quality.run(quality_dir, url, trials)
    save(args.out, "quality", q)
    runs = q["runs"]
    if "peer" in args.parts and peer.available():
        peers = {
            name: peer.measure(quality.overrides(quality_dir, url, trials, name), runs[name]["run_id"], work)
            for name in ("published", "leakage_safe")
        }
        auc = {f"getml_{name}_auc": r["test_auc"] for name, r in peers.items()}
        save(args.out, "peer", {**auc, "runs": peers})
    elif "peer" in args.parts:
        log.warning("no %s: the getML peer is skipped (make bench builds it)", peer.GETML_PYTHON)
    return {"overrides": quality.overrides(quality_dir, url, trials), "run_id": runs["leakage_safe"]["run_id"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic data, few trials: minutes, for the smoke test")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where results/, REPORT.md and the plots go")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    # `kill` (SIGTERM) unwinds like Ctrl-C: the private stack is stopped and its databases dropped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    warnings.filterwarnings("ignore")  # library warnings (pandas fragmentation, LightGBM) of thousands of fits drown the progress
    for noisy in ("optuna", "pipeline", "httpx", "prefect", "mlflow", "alembic", "featuretools", "woodwork"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    size = SIZES[args.quick]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    save(args.out, "machine", {**harness.machine(), "quick": args.quick, "sizes": size})
    tables = harness.source_tables(args.quick)
    url = harness.write_source(tables, work / "source.db")

    if {"quality", "peer", "reference_tuning"} & set(args.parts):
        leakage_safe = quality_parts(args, size, url, work)
    if "topology" in args.parts:
        save(args.out, "topology", topology.run(work / "topology", url, size["topology_trials"]))
    if "reference_tuning" in args.parts:
        result = reference_tuning.run(leakage_safe["overrides"], leakage_safe["run_id"], size["reference_trials"])
        save(args.out, "reference_tuning", result)
    if "scale" in args.parts:
        save(args.out, "scale", scale.run(tables, work / "scale", size["scale_factors"], size["scale_trials"]))
    if "feature_engine" in args.parts and not args.quick:
        subprocess.run([sys.executable, "-m", "bench.feature_engine"], check=True, cwd=BENCH_DIR.parent)
    report.write(args.out)
    log.info("report: %s", args.out / "REPORT.md")


if __name__ == "__main__":
    main()
