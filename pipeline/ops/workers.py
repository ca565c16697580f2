"""Prefect workers of the stack: one flow run at a time each (`--limit 1`), on one queue of the pool."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.ops.deployments import DEFAULT_QUEUE, TRAINER_QUEUE, prefect_client
from pipeline.ops.state import TRAINER, Proc, StackError, StackInfo, worker_env
from pipeline.ops.supervise import console_script, log_tail, process_env, process_running, spawn, stop_process


def start_worker(info: StackInfo, name: str, queue: str | None = None) -> Proc:
    """Start one `--limit 1` worker on one queue of the pool with the stack's env; recorded in the state file.

    `queue` defaults to TRAINER_QUEUE for the worker named TRAINER, else DEFAULT_QUEUE (shards).
    """
    env = process_env(worker_env(info))
    queue = queue or (TRAINER_QUEUE if name == TRAINER else DEFAULT_QUEUE)
    cmd = [console_script("prefect"), "worker", "start", "--pool", info.work_pool, "--work-queue", queue, "--limit", "1", "--name", name]
    proc = spawn(cmd, env, info.state_dir / "logs" / f"{name}.log", f"--name {name}", Path(info.project_dir))
    info.processes[name] = proc
    info.save()
    return proc


def stop_worker(pid: int, *, hard: bool = False) -> None:
    """Stop a worker and its flow-run processes (`hard`: SIGKILL all at once, as if the host died).

    A worker that has run flows only forwards the first SIGTERM and keeps polling; the second
    one ends it.
    """
    stop_process(pid, hard=hard, second_term_after=1.5)


def wait_for_workers(info: StackInfo, names: list[str], timeout: float) -> float:
    """Wait until each worker has sent a heartbeat and shows ONLINE in the pool."""
    from prefect.client.schemas.objects import WorkerStatus

    print(f"waiting for {len(names)} worker(s) in pool {info.work_pool} ...", end=" ", flush=True)
    start = time.monotonic()
    with prefect_client(info.prefect_api_url, info.secrets.prefect_auth) as client:
        while True:
            online = {w.name for w in client.read_workers_for_work_pool(info.work_pool) if w.status == WorkerStatus.ONLINE}
            missing = [n for n in names if n not in online]
            elapsed = time.monotonic() - start
            if not missing:
                print(f"ok ({elapsed:.1f} s)", flush=True)
                return elapsed
            dead = [n for n in missing if not process_running(info.processes[n].pid)]
            if dead or elapsed > timeout:
                print("failed", flush=True)
                name = (dead or missing)[0]
                log = info.processes[name].log
                why = "exited" if dead else f"not online after {timeout:.0f} s"
                raise StackError(
                    f"worker {name} {why} (Prefect API {info.prefect_api_url}); last lines of {log}:\n{log_tail(log, info.secret_values())}"
                )
            time.sleep(0.5)
