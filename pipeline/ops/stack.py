"""Bring the whole stack up, down, or report its status; see the package docstring for what runs."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import load_config
from pipeline.masking import mask_url
from pipeline.ops.deployments import provision_prefect
from pipeline.ops.provision import (
    bootstrap_mysql,
    check_database,
    ensure_buckets,
    ensure_mlflow_user,
    ensure_postgres_owned_databases,
    role_identities,
)
from pipeline.ops.servers import probe, start_mlflow, start_prefect_server, start_seaweedfs, wait_http
from pipeline.ops.state import MLFLOW_ADMIN, MLFLOW_VIEWER, TRAINER, StackInfo, StackSettings, resolve_secrets
from pipeline.ops.supervise import process_running, stop_process
from pipeline.ops.workers import start_worker, stop_worker, wait_for_workers

SERVERS = ("mlflow", "prefect-server", "seaweedfs")  # stopped together, after the workers


def _running(info: StackInfo, name: str) -> bool:
    proc = info.processes.get(name)
    return proc is not None and process_running(proc.pid, proc.marker)


def up(settings: StackSettings) -> StackInfo:
    """Start what is not already running, create what is missing, wait until all is healthy.

    On failure raises StackError naming the service and URL, with its log tail; what was
    started stays up for inspection and `down()` stops it.
    """
    t0 = time.monotonic()
    state_dir = settings.state_dir.resolve()
    previous = StackInfo.load(state_dir)
    stack_secrets = resolve_secrets(settings, previous.secrets if previous else None)
    optuna = stack_secrets.optuna_storage
    base = f"http://{settings.host}"
    info = StackInfo(
        state_dir=state_dir,
        prefect_api_url=f"{base}:{settings.prefect_port}/api",
        mlflow_url=f"{base}:{settings.mlflow_port}",
        s3_endpoint=settings.s3_endpoint or f"{base}:{settings.s3_port}",
        work_pool=settings.work_pool,
        data_bucket=settings.data_bucket,
        mlflow_bucket=settings.mlflow_bucket,
        project_dir=str(settings.project_dir.resolve()),
        worker_query_seconds=settings.worker_query_seconds,
        processes={n: p for n, p in (previous.processes if previous else {}).items() if process_running(p.pid, p.marker)},
        secrets=stack_secrets,
    )
    info.save()
    secrets_ = info.secret_values()
    s = info.secrets

    print(f"checking PostgreSQL at {mask_url(settings.postgres_url)}", flush=True)
    ensure_postgres_owned_databases(
        settings.postgres_url, {settings.prefect_db: s.prefect_db_password, settings.mlflow_db: s.mlflow_db_password}
    )
    if settings.mysql_bootstrap_socket:
        print(f"creating MySQL database and user for {mask_url(optuna)} through {settings.mysql_bootstrap_socket}", flush=True)
        bootstrap_mysql(settings.mysql_bootstrap_socket, optuna)
    print(f"checking MySQL at {mask_url(optuna)}", flush=True)
    check_database("MySQL", optuna)

    if settings.s3_endpoint is None and not _running(info, "seaweedfs"):
        print(f"starting SeaweedFS on {info.s3_endpoint}", flush=True)
        identities = role_identities(s, settings.data_bucket, settings.mlflow_bucket)
        info.processes["seaweedfs"] = start_seaweedfs(
            state_dir, settings.host, settings.s3_port, s.s3_admin_key, s.s3_admin_secret, settings.timeout, identities
        )
        info.save()
    print(f"checking S3 at {info.s3_endpoint}, buckets {settings.data_bucket}, {settings.mlflow_bucket}", flush=True)
    ensure_buckets(info.s3_endpoint, [settings.data_bucket, settings.mlflow_bucket], s.s3_admin_key, s.s3_admin_secret)

    started: dict[str, float] = {}  # both start at once; a wait reports the time since its server's start
    for name, start in (("prefect-server", start_prefect_server), ("mlflow", start_mlflow)):
        if not _running(info, name):
            print(f"starting {name}", flush=True)
            started[name] = time.monotonic()
            info.processes[name] = start(settings, info)
            info.save()

    prefect = info.processes["prefect-server"]
    wait_http(
        "Prefect server",
        f"{info.prefect_api_url}/health",
        lambda s, b: s == 200 and b.strip() == b"true",
        prefect,
        settings.timeout,
        secrets_,
        started.get("prefect-server"),
    )
    alerting = "on" if settings.alert_webhook_url else "off (no alerts.webhook_url / ALERT_WEBHOOK_URL)"
    print(f"ensuring work pool {settings.work_pool}, deployments {', '.join(settings.deployments)}, alerts {alerting}", flush=True)
    cfg = load_config(overrides={"prefect": {"work_pool": settings.work_pool}})
    info.deployments = provision_prefect(
        info.prefect_api_url, settings.project_dir, cfg, settings.alert_webhook_url, settings.deployments, auth=s.prefect_auth
    )

    # N shard workers on the default queue, plus the trainer on the training queue
    wanted = [f"worker-{i}" for i in range(1, settings.workers + 1)] + [TRAINER]
    for name in [n for n in info.worker_pids if n not in wanted]:
        stop_worker(info.processes.pop(name).pid)
    for name in wanted:
        if not _running(info, name):
            print(f"starting {name}", flush=True)
            start_worker(info, name)

    mlflow = info.processes["mlflow"]
    wait_http(
        "MLflow server", f"{info.mlflow_url}/health", lambda s, b: s == 200, mlflow, settings.timeout, secrets_, started.get("mlflow")
    )
    artifacts = f"{info.mlflow_url}/api/2.0/mlflow-artifacts/artifacts?path="
    wait_http(
        f"MLflow artifact proxy to s3://{settings.mlflow_bucket}",
        artifacts,
        lambda s, _: s == 200,
        mlflow,
        settings.timeout,
        secrets_,
        auth=(MLFLOW_ADMIN, s.mlflow_admin_password),
    )
    ensure_mlflow_user(info.mlflow_url, s.mlflow_admin_password, MLFLOW_VIEWER, s.mlflow_viewer_password)
    wait_for_workers(info, wanted, settings.timeout)
    info.save()
    print(f"stack up in {time.monotonic() - t0:.1f} s (state in {state_dir})", flush=True)
    return info


_STACK_COMMANDS = ("prefect worker", "prefect server", "mlflow server", "weed mini")


def stray_processes(info: StackInfo) -> list[int]:
    """Servers and workers of this stack that its state does not record: started again by hand
    with the stack's environment (`stack env`), so `down` must find them by that environment."""
    import psutil

    recorded = {p.pid for p in info.processes.values()}
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    urls = {info.prefect_api_url, info.mlflow_url}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if proc.pid in recorded | mine or not any(c in command for c in _STACK_COMMANDS):
            continue
        try:
            env = proc.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if urls & {env.get("PREFECT_API_URL"), env.get("MLFLOW_TRACKING_URI")} or str(info.state_dir) in command:
            found.append(proc.pid)
    return found


def held_ports(info: StackInfo, own_s3: bool) -> dict[int, int | None]:
    """The stack's ports that something still listens on: {port: pid (None if unknown)}."""
    from urllib.parse import urlsplit

    import psutil

    ports = {urlsplit(info.prefect_api_url).port, urlsplit(info.mlflow_url).port}
    base = urlsplit(info.s3_endpoint).port if own_s3 else None
    if base:  # SeaweedFS: base..base+4 and each +10000 for gRPC
        ports |= {base + i + grpc for i in range(5) for grpc in (0, 10000)}
    listening = {c.laddr.port: c.pid for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return {port: listening[port] for port in sorted(p for p in ports if p) if port in listening}


def down(state_dir: str | Path) -> dict[int, int | None]:
    """Stop workers (with their flow runs), then MLflow, Prefect and SeaweedFS, then any process of
    this stack started again by hand; idempotent. Returns the stack's ports still held (should be none)."""
    info = StackInfo.load(state_dir)
    if info is None:
        return {}
    own_s3 = "seaweedfs" in info.processes

    def stop(name: str) -> None:
        proc = info.processes[name]
        if process_running(proc.pid, proc.marker):
            sys.stdout.write(f"stopping {name} (pid {proc.pid})\n")  # one write: threads print at once
            (stop_worker if name in workers else stop_process)(proc.pid)

    # Workers first, so none sees the API vanish mid-run; each group stops in parallel.
    workers = info.all_worker_names
    for group in (workers, [n for n in SERVERS if n in info.processes]):
        with ThreadPoolExecutor(max_workers=max(len(group), 1)) as pool:
            list(pool.map(stop, group))
        for name in group:
            del info.processes[name]
        info.save()
    for pid in stray_processes(info):
        print(f"stopping pid {pid}: a process of this stack not in its state (started again by hand?)", flush=True)
        stop_process(pid, second_term_after=1.5)
    held = held_ports(info, own_s3)
    for port, pid in held.items():
        print(f"warning: port {port} of this stack is still held by pid {pid}", flush=True)
    return held


@dataclass
class ServiceStatus:
    name: str
    pid: int
    running: bool
    healthy: bool | None  # None: no health URL (workers)
    url: str | None
    log: str


def status(state_dir: str | Path) -> list[ServiceStatus]:
    """Each recorded process: alive or not, and for servers whether the health URL answers 200."""
    info = StackInfo.load(state_dir)
    if info is None:
        return []
    rows = []
    for name, proc in info.processes.items():
        running = process_running(proc.pid, proc.marker)
        healthy = (running and probe(proc.url)[0] == 200) if proc.url else None
        rows.append(ServiceStatus(name, proc.pid, running, healthy, proc.url, proc.log))
    return rows
