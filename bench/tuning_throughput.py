"""Tuning throughput: finished trials per minute with 1 and 2 tuning workers on the same features.

Each worker is a separate OS process running the production shard code
(`pipeline.steps.tuning_shard`: Dataset binned once, pruning, early stopping) on
one shared study; LightGBM threads per worker = cores / workers. Features come
from a finished pipeline run (`--config`/`--set` name its artifact store and
`--run-id` the run), e.g. a run on the real AdventureWorks data:

    .venv/bin/python -m pipeline load-csv --dir $AW_DATA_DIR --url sqlite:///.pipeline/data/aw.db
    .venv/bin/python -m pipeline run --set data.url=sqlite:///.pipeline/data/aw.db --set data.generate_if_missing=false
    .venv/bin/python -m bench.tuning_throughput --run-id <run id> --seconds 180

Writes bench/tuning_throughput.md and prints the same table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from pipeline.config import load_config, parse_sets
from pipeline.steps import load_part, run_artifacts

REPORT = Path(__file__).with_name("tuning_throughput.md")


def _worker(config_path, overrides, run_id, index, seconds, threads):
    from pipeline import steps
    from pipeline.logs import setup_logging

    setup_logging()
    overrides = {
        **(overrides or {}),
        "model": {**(overrides or {}).get("model", {}), "num_threads": threads},
        "tuning": {**(overrides or {}).get("tuning", {}), "timeout_minutes": seconds / 60},
    }
    cfg = load_config(config_path, overrides)
    steps.tuning_shard(cfg, steps.run_artifacts(cfg, run_id), index, target_trials=1_000_000)


def measure(config_path, overrides, run_id: str, workers: int, seconds: float) -> dict[str, float]:
    """Start `workers` shard processes on a fresh study for `seconds`; count finished trials."""
    from pipeline import tuning

    journal = Path(tempfile.mkdtemp(prefix="bench-")) / "journal.log"
    overrides = {
        **(overrides or {}),
        "tuning": {**(overrides or {}).get("tuning", {}), "storage": f"journal://{journal}", "study_name": f"bench-{workers}w"},
    }
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(config_path, overrides, run_id, i, seconds, threads)) for i in range(workers)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    cfg = load_config(config_path, overrides)
    study = tuning.create_study(cfg.tuning, f"{cfg.tuning.study_name}-{run_id}", tuning.create_storage(cfg.tuning.storage))
    return {"workers": workers, "threads": threads, **study_throughput(study.get_trials(deepcopy=False)), "wall_s": wall}


def study_throughput(trials: list) -> dict[str, float]:
    """Finished (complete + pruned) trials per minute, from the first trial's start to the last one's end."""
    from pipeline import tuning

    finished = [t for t in trials if t.state in tuning.FINISHED]
    first = min(t.datetime_start for t in finished)
    last = max(t.datetime_complete for t in finished)
    busy_minutes = (last - first).total_seconds() / 60
    return {
        "finished": len(finished),
        "pruned": sum(t.state.name == "PRUNED" for t in finished),
        "minutes": busy_minutes,
        "per_minute": len(finished) / busy_minutes,
    }


def seconds_to_reach(trials: list, value: float) -> float | None:
    """Seconds from the first trial's start until a complete trial scored at least `value` (maximised metric)."""
    from pipeline import tuning

    finished = [t for t in trials if t.state in tuning.FINISHED]
    first = min(t.datetime_start for t in finished)
    reached = [t.datetime_complete for t in finished if t.value is not None and t.state.name == "COMPLETE" and t.value >= value]
    return (min(reached) - first).total_seconds() if reached else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--run-id", required=True, help="a finished pipeline run whose train/valid parts to tune on")
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    overrides = parse_sets(args.set)
    cfg = load_config(args.config, overrides)
    X_train, _ = load_part(run_artifacts(cfg, args.run_id), "train")
    rows = [measure(args.config, overrides, args.run_id, w, args.seconds) for w in args.workers]
    base = rows[0]["per_minute"]
    lines = [
        "# Tuning throughput",
        "",
        f"Run `{args.run_id}`: {len(X_train)} training rows x {X_train.shape[1]} features; "
        f"{os.cpu_count()} cores; {args.seconds:.0f} s per measurement; study on a journal file.",
        "",
        "| workers | LightGBM threads each | finished trials | of which pruned | minutes | trials / minute | vs 1 worker |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['workers']} | {r['threads']} | {r['finished']} | {r['pruned']} | {r['minutes']:.2f} | {r['per_minute']:.1f} | {r['per_minute'] / base:.2f}x |"
            for r in rows
        ),
    ]
    text = "\n".join(lines) + "\n"
    REPORT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
