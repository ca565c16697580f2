"""The stack's servers (SeaweedFS, Prefect, MLflow): started with their secrets in the environment,
never on a command line, and waited for until their health URL answers.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.masking import mask_url
from pipeline.ops.provision import role_url, s3_identity
from pipeline.ops.state import MLFLOW_ADMIN, Proc, StackError, StackInfo, StackSettings, write_json
from pipeline.ops.supervise import console_script, log_tail, process_env, process_running, spawn, stop_process

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # health checks are local


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(width: int = 5, grpc_offset: int = 10000) -> int:
    """A base port such that base..base+width-1 and each +grpc_offset are free (`start_seaweedfs`'s layout)."""
    for _ in range(200):
        base = random.randrange(20000, 65535 - grpc_offset - width)
        if all(_port_free(p + o) for p in range(base, base + width) for o in (0, grpc_offset)):
            return base
    raise StackError("no free block of ports for SeaweedFS")


def probe(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET, 0 when nothing answers; `auth` = HTTP basic (user, password)."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with _NO_PROXY.open(request, timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc).encode()


def wait_http(
    service: str,
    url: str,
    ok: Callable[[int, bytes], bool],
    proc: Proc,
    timeout: float,
    secrets_: list[str],
    since: float | None = None,
    auth: tuple[str, str] | None = None,
) -> float:
    """Poll `url` until `ok(status, body)`; fail fast if the process dies, else after `timeout`."""
    print(f"waiting for {service} at {mask_url(url)} ...", end=" ", flush=True)
    start = since if since is not None else time.monotonic()
    while True:
        status, body = probe(url, auth)
        elapsed = time.monotonic() - start
        if ok(status, body):
            print(f"ok ({elapsed:.1f} s)", flush=True)
            return elapsed
        died = not process_running(proc.pid)
        if died or elapsed > timeout:
            print("failed", flush=True)
            why = "exited" if died else f"not healthy after {timeout:.0f} s"
            last = f"HTTP {status}" if status else body.decode(errors="replace")
            tail = log_tail(proc.log, secrets_)
            raise StackError(f"{service} at {mask_url(url)} {why} (last answer: {last}); last lines of {proc.log}:\n{tail}")
        time.sleep(0.25)


def start_seaweedfs(
    state_dir: Path,
    host: str,
    port: int,
    access_key: str,
    secret_key: str,
    timeout: float = 30.0,
    identities: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> Proc:
    """`weed mini` with an admin S3 identity (+ `identities`), data under `<state_dir>/s3`, on ports
    port..port+4 (+10000 gRPC). The identities file is rewritten on every start.

    Stopped again if it does not get healthy within `timeout`.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "s3.json"
    admin = s3_identity("admin", access_key, secret_key, ["Admin", "Read", "Write", "List", "Tagging"])
    write_json(config, {"identities": [admin, *identities]}, 0o600)
    cmd = [
        console_script("weed"), "mini", f"-dir={state_dir / 's3'}", f"-ip={host}", f"-ip.bind={host}", f"-s3.config={config}",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.port={port}", f"-master.port={port + 1}", f"-volume.port={port + 2}", f"-filer.port={port + 3}", f"-admin.port={port + 4}",
    ]  # fmt: skip
    (state_dir / "s3").mkdir(exist_ok=True)
    # AWS_* in weed's environment would add a second identity ("mini"); keep one source of truth.
    env = {k: v for k, v in os.environ.items() if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"}}
    url = f"http://{host}:{port}"
    proc = spawn(cmd, env, state_dir / "logs" / "seaweedfs.log", "weed", state_dir, f"{url}/healthz")
    try:
        wait_http("SeaweedFS S3", f"{url}/healthz", lambda s, _: s == 200, proc, timeout, [secret_key])
    except StackError:
        stop_process(proc.pid)  # not recorded anywhere yet, so nobody else could stop it
        raise
    return proc


def start_prefect_server(settings: StackSettings, info: StackInfo) -> Proc:
    db_url = role_url(settings.postgres_url, "postgresql+asyncpg", settings.prefect_db, info.secrets.prefect_db_password)
    env = process_env(
        {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
            "PREFECT_SERVER_API_AUTH_STRING": info.secrets.prefect_auth,
            "PREFECT_API_AUTH_STRING": info.secrets.prefect_auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": info.prefect_api_url,
            "PREFECT_HOME": str(info.state_dir / "prefect-home"),
        },
        drop=("PREFECT_API_DATABASE_CONNECTION_URL",),
    )
    cmd = [console_script("prefect"), "server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    return spawn(cmd, env, info.state_dir / "logs" / "prefect-server.log", "server start", info.state_dir, f"{info.prefect_api_url}/health")


def _mlflow_auth_config(settings: StackSettings, info: StackInfo) -> Path:
    """MLflow's basic-auth settings: users in a SQLite file of the state dir, READ for every user
    by default; the admin password comes from the environment, not from this file.

    The user store is made anew at each server start (its users are `admin` and `viewer`, both
    from secrets.json), so a rotated password applies at the next `up`, as in the compose stack.
    A verified login is cached for `settings.mlflow_auth_cache_seconds` (0: off): each check is a scrypt hash
    (about 0.1 s of CPU), paid per request without it, which made MLflow the training's bottleneck.
    """
    (info.state_dir / "mlflow-auth.db").unlink(missing_ok=True)
    path = info.state_dir / "mlflow-auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{info.state_dir / 'mlflow-auth.db'}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {settings.mlflow_auth_cache_seconds}\n"
    )
    return path


def start_mlflow(settings: StackSettings, info: StackInfo) -> Proc:
    s = info.secrets
    env = process_env(
        {
            "MLFLOW_BACKEND_STORE_URI": role_url(settings.postgres_url, "postgresql+psycopg2", settings.mlflow_db, s.mlflow_db_password),
            "MLFLOW_AUTH_CONFIG_PATH": str(_mlflow_auth_config(settings, info)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": s.mlflow_admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": s.mlflow_flask_secret,
            "MLFLOW_S3_ENDPOINT_URL": info.s3_endpoint,
            "AWS_ACCESS_KEY_ID": s.mlflow_s3_key,
            "AWS_SECRET_ACCESS_KEY": s.mlflow_s3_secret,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else 7 job consumers of ~250 MB each
        },
        drop=("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"),
    )
    allowed = ",".join(dict.fromkeys([f"{settings.host}:*", "localhost:*", "127.0.0.1:*"]))
    cmd = [
        console_script("mlflow"), "server", "--app-name", "basic-auth",
        "--artifacts-destination", f"s3://{settings.mlflow_bucket}", "--serve-artifacts",
        "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", str(settings.mlflow_workers),
        "--allowed-hosts", allowed,
    ]  # fmt: skip
    return spawn(cmd, env, info.state_dir / "logs" / "mlflow.log", "mlflow server", info.state_dir, f"{info.mlflow_url}/health")
