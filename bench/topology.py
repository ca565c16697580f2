"""The production topology, measured: tuning throughput with 1 and 2 shard workers, and the
orchestration overhead of a whole training run through it against the same steps called directly.

A private local stack (`pipeline.ops.stack`: Prefect server and workers, SeaweedFS for S3,
MLflow server, Optuna on MariaDB; own databases, state dir and free ports) runs the `training`
deployment twice on the same source and overrides:

- 1 shard (`tuning.n_shards=1`, LightGBM on every core): end-to-end wall time from
  `run_deployment` to the flow run's final state (the orchestration overhead), and its throughput;
- 1 shard with one LightGBM thread: one tuning worker as the compose stack deploys it (1 CPU each);
- 2 shards (`n_shards=2`, one LightGBM thread each): two such workers.

The workers ratio is 2 workers / 1 worker (1 CPU each, as deployed); 2 shards / 1 shard on every
core says whether sharding beats LightGBM's own threads on the same 2 cores.

Throughput is finished (complete + pruned) trials per minute of the study, from the first trial's
start to the last one's end (`bench.tuning_throughput.study_throughput`); the time to reach a fixed
validation score uses the lower of the two studies' best scores. The direct run calls the same step
functions in this process with a local artifact folder, a journal-file study and a local MLflow
store. The stack and its databases are removed at the end.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import harness
from bench.tuning_throughput import seconds_to_reach, study_throughput
from pipeline import steps
from pipeline.config import deep_merge

log = logging.getLogger(__name__)
MYSQL_SOCKET = os.environ.get("BENCH_MYSQL_SOCKET", "/run/mysqld/mysqld.sock")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
RUN_TIMEOUT_S = 1800


def free_base(width: int = 1, offsets: tuple[int, ...] = (0,)) -> int:
    """A port `base` such that base..base+width-1, each shifted by every offset, are all free on 127.0.0.1."""
    while True:
        base = random.randrange(20000, 55000)
        with ExitStack() as held:
            try:
                for port in (p + o for p in range(base, base + width) for o in offsets):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base


@contextmanager
def private_stack(work_dir: Path, source_url: str):
    """Up a stack of its own (2 shard workers + trainer); yield its info; down it and drop its databases."""
    from pipeline.ops.stack import down, up
    from pipeline.ops.state import StackSettings

    suffix = secrets.token_hex(4)
    settings = StackSettings(
        postgres_url=POSTGRES_URL,
        mysql_bootstrap_socket=MYSQL_SOCKET,
        prefect_port=free_base(),
        mlflow_port=free_base(),
        s3_port=free_base(5, (0, 10000)),  # SeaweedFS: S3, master, volume, filer, admin; +10000 gRPC
        workers=2,
        state_dir=work_dir / "stack",
        prefect_db=f"bench_prefect_{suffix}",
        mlflow_db=f"bench_mlflow_{suffix}",
        pipeline_env={
            "PIPELINE__PATHS__WORK_DIR": str(work_dir / "stack-work"),
            "PIPELINE__DATA__URL": source_url,
            "PIPELINE__DATA__GENERATE_IF_MISSING": "false",
            "PIPELINE__CACHE__ENABLED": "false",
        },
        alert_webhook_url=None,
        timeout=300,  # per server wait: a loaded 2-core machine needs more than the default
    )
    try:
        yield up(settings)
    finally:
        down(settings.state_dir)
        _drop_databases(settings)


def _drop_databases(settings) -> None:
    import pymysql
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in (settings.prefect_db, settings.mlflow_db):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()
    optuna = make_url(settings.mysql_url or _stack_optuna_url(settings))
    with pymysql.connect(unix_socket=MYSQL_SOCKET, user="root", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{optuna.database}`")
        for host in ("localhost", "127.0.0.1", "::1", "%"):
            cur.execute("DROP USER IF EXISTS %s@%s", (optuna.username, host))


def _stack_optuna_url(settings) -> str:
    from pipeline.ops.state import StackInfo

    return StackInfo.load(settings.state_dir).secrets.optuna_storage


@contextmanager
def client_of(info):
    """This process as a client of the stack: its API URLs, logins and S3 key in the environment."""
    from pipeline.ops.deployments import prefect_settings
    from pipeline.ops.state import worker_env

    env = worker_env(info)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with prefect_settings(info.prefect_api_url, info.secrets.prefect_auth):  # Prefect read its settings at import
            yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def deployment_run(overrides: dict[str, Any]) -> tuple[str, float]:
    """One training deployment run to its final state: flow run id and wall seconds (raises unless Completed)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started = time.perf_counter()
    run = run_deployment(name="training/training", parameters={"overrides": overrides}, timeout=0)
    with get_client(sync_client=True) as client:
        while time.perf_counter() - started < RUN_TIMEOUT_S:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(0.5)
    wall = time.perf_counter() - started
    if not (state and state.is_completed()):
        raise RuntimeError(f"training flow run {run.id} ended {state.name if state else 'unknown'} after {wall:.0f} s")
    return str(run.id), wall


def stack_measurement(env: dict[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """A training run on the stack: wall time, its step timings and its study's trials."""
    import optuna

    run_id, wall = deployment_run(overrides)
    cfg = harness.config(deep_merge(_env_config(env), overrides))
    summary = steps.run_artifacts(cfg, run_id).get_json("summary")
    study = optuna.load_study(study_name=steps.study_name(cfg, run_id), storage=env["PIPELINE__TUNING__STORAGE"])
    trials = study.get_trials(deepcopy=False)
    return {
        "run_id": run_id,
        "wall_seconds": wall,
        "timings": summary["timings"],
        "test_auc": summary["metrics"]["roc_auc"],
        "trials": trials,
    }


def _env_config(env: dict[str, str]) -> dict[str, Any]:
    """The stack's PIPELINE__* variables as config overrides (where its runs keep their artifacts)."""
    from pipeline.config import env_overrides

    return env_overrides(env)


def direct_run(work_dir: Path, url: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The training flow's steps called directly in this process, MLflow logging and registry included."""
    cfg = harness.config(harness.bench_overrides(work_dir, url, overrides))
    run_id = harness.new_run_id("direct")
    started = time.perf_counter()
    results, seconds = harness.run_steps(cfg, run_id, harness.STEPS[:4])
    mlflow_run, seconds["open_tracking"] = harness.timed(steps.open_tracking_run, cfg, run_id)  # needs the split
    results, later = harness.run_steps(cfg, run_id, harness.STEPS[4:], results)
    seconds.update(later)
    fitted = results["final_fit"]
    summary = {
        **{k: fitted[k] for k in ("metrics", "threshold", "calibration")},
        "tuning": results["tuning"],
        "baselines": results["baselines"],
    }
    _, seconds["tracking"] = harness.timed(
        steps.log_results, cfg, steps.run_artifacts(cfg, run_id), mlflow_run, summary, steps.local_report_dir(cfg, run_id)
    )
    return {"wall_seconds": time.perf_counter() - started, "timings": {k: round(v, 2) for k, v in seconds.items()}}


def shard_seconds_per_trial(throughput: dict[str, float], shards: int) -> float:
    """Busy seconds of one shard per finished trial (the study's time stamps have 1 s resolution on MySQL:
    an average over the whole study is precise, single trials are not)."""
    return round(throughput["minutes"] * 60 * shards / throughput["finished"], 3)


def storage_overhead(storage_url: str, n: int = 40) -> float:
    """Seconds per trial of Optuna alone on this storage: sample the search space, report 3 intermediate
    values with a prune check each (what a trial pruned at iteration 30 does), no model. The part of a
    trial that more workers cannot shrink when they share one storage."""
    import optuna

    from pipeline.tuning import create_storage, pruner, sampler, suggest

    cfg = harness.config({})
    study = optuna.create_study(
        storage=create_storage(storage_url),
        study_name=f"bench-overhead-{secrets.token_hex(4)}",
        sampler=sampler(cfg.tuning.seed, cfg.tuning.n_startup_trials),
        pruner=pruner(cfg.tuning.n_startup_trials, cfg.tuning.pruner_warmup_steps),
        direction="maximize",
    )

    def objective(trial: optuna.Trial) -> float:
        suggest(trial, cfg.tuning.search_space)
        for step in (10, 20, 30):
            trial.report(0.5, step)
            trial.should_prune()
        return 0.5

    _, seconds = harness.timed(study.optimize, objective, n_trials=n)
    return round(seconds / n, 4)


def run(work_dir: Path, url: str, n_trials: int) -> dict[str, Any]:
    """Direct run, then three runs on a private stack (1 shard on all cores, 1 worker, 2 workers); ratios of wall time and throughput."""
    threads = os.cpu_count() or 1
    common = {"tuning": {"n_trials": n_trials}, "data": {"generate_if_missing": False}}
    all_cores = deep_merge(common, {"tuning": {"n_shards": 1}, "model": {"num_threads": threads}})
    one = deep_merge(common, {"tuning": {"n_shards": 1}, "model": {"num_threads": 1}})
    two = deep_merge(common, {"tuning": {"n_shards": 2}, "model": {"num_threads": max(1, threads // 2)}})
    direct = direct_run(work_dir / "direct", url, all_cores)
    log.info("direct run: %.1f s", direct["wall_seconds"])
    stack_started = time.perf_counter()
    with private_stack(work_dir, url) as info, client_of(info) as env:
        stack_up_s = time.perf_counter() - stack_started
        runs = {}
        for key, overrides in (("1_shard_all_cores", all_cores), ("1", one), ("2", two)):
            runs[key] = stack_measurement(env, overrides)
            log.info("stack run %s: %.1f s", key, runs[key]["wall_seconds"])
        overhead = {
            "mysql": storage_overhead(env["PIPELINE__TUNING__STORAGE"]),
            "journal_file": storage_overhead(f"journal://{work_dir}/j.log"),
        }
    throughput = {key: study_throughput(m["trials"]) for key, m in runs.items()}
    target = min(max(t.value for t in m["trials"] if t.value is not None) for m in runs.values())
    return {
        "n_trials": n_trials,
        "stack_up_seconds": round(stack_up_s, 1),
        "direct": direct,
        "stack_one_shard": _without_trials(runs["1_shard_all_cores"]),
        "stack_one_worker": _without_trials(runs["1"]),
        "stack_two_shards": _without_trials(runs["2"]),
        "orchestration_overhead_ratio": round(runs["1_shard_all_cores"]["wall_seconds"] / direct["wall_seconds"], 3),
        "tuning_throughput": throughput,
        "workers_throughput_ratio": round(throughput["2"]["per_minute"] / throughput["1"]["per_minute"], 2),
        "shards_over_threads_throughput_ratio": round(throughput["2"]["per_minute"] / throughput["1_shard_all_cores"]["per_minute"], 2),
        "fixed_validation_auc": target,
        "seconds_to_fixed_validation_auc": {key: seconds_to_reach(m["trials"], target) for key, m in runs.items()},
        "shard_seconds_per_trial": {key: shard_seconds_per_trial(throughput[key], 2 if key == "2" else 1) for key in throughput},
        "optuna_seconds_per_trial": overhead,
    }


def _without_trials(measurement: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in measurement.items() if k != "trials"}
