"""The scale-out topology as local processes, for tests and for users without Docker.

`up()` starts (or reuses) SeaweedFS for S3, a Prefect server on PostgreSQL, an MLflow server
on PostgreSQL that proxies artifacts to S3, a `process` work pool with the training and
tuning-shard deployments, N Prefect workers for the tuning shards (queue `default`) plus one
`trainer` worker for the training runs (queue `training`, so a training run waiting for its
shards does not hold a shard worker's slot), all with an environment that points the pipeline at
those services. Databases, buckets, the pool and the deployments are created idempotently.

What is running is recorded in `<state_dir>/stack.json` (pids, password-free URLs, log
paths) so `down()` and `status()` work from another process; the secrets go to
`<state_dir>/secrets.json`, readable only by the owner, and are printed only by `stack env`
and `stack credentials`. Process handling relies on Linux `/proc`.

Security (see README, "Logins and secrets"): the Prefect API wants HTTP basic auth
(`PREFECT_SERVER_API_AUTH_STRING`), MLflow runs its basic-auth app (an admin user for the
pipeline, a read-only `viewer` for people), every secret is generated here and reaches the
servers through their environment, never a command line. Least privilege: Prefect and MLflow
log in to PostgreSQL as their own roles that own only their database; the Optuna user is
per stack and limited to its own database; SeaweedFS gets one S3 identity per role (admin:
buckets; pipeline: data bucket read/write, MLflow bucket read-only; MLflow: its bucket only).
The work pool's job template accepts no command, environment or working-directory override.

Ports: Prefect `prefect_port` (4200), MLflow `mlflow_port` (5500) and, when SeaweedFS is
started here, `s3_port`..`s3_port+4` (S3, master, volume, filer, admin; 8333-8337) plus each
+10000 for gRPC (18333-18337). WebDAV, Iceberg and Lance are disabled.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.masking import mask_url, scrub, url_password

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_DEPLOYMENTS = {
    "training": "pipeline/flows/training.py:training_flow",
    "tuning-shard": "pipeline/flows/tuning.py:tuning_shard_flow",
    "scoring": "pipeline/flows/scoring.py:scoring_flow",
}
# Work queues of the pool: training runs only wait for their shards, so they get their own queue
# and worker (`trainer`) instead of holding a shard worker's only slot (as in docker-compose.yml).
DEFAULT_QUEUE = "default"
TRAINER_QUEUE = "training"
DEPLOYMENT_QUEUES = {"training": TRAINER_QUEUE, "tuning-shard": DEFAULT_QUEUE, "scoring": DEFAULT_QUEUE}
TRAINER = "trainer"  # worker name of the training queue; shard workers are worker-1..N
STATE_FILE = "stack.json"
SECRETS_FILE = "secrets.json"
SERVERS = ("mlflow", "prefect-server", "seaweedfs")  # stopped together, after the workers
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # kept so this process can reap what it started


class StackError(RuntimeError):
    """A service could not be reached or started; the message names it and its URL (no password)."""


PREFECT_AUTH_USER = "churn"
MLFLOW_ADMIN = "admin"  # the pipeline's user (creates experiments, registers models)
MLFLOW_VIEWER = "viewer"  # read-only, for people browsing the UI


def _default_work_pool() -> str:
    from pipeline.config import load_config

    return load_config().prefect.work_pool


@dataclass
class StackSettings:
    """What to start and where; secrets are kept out of `repr` so test reports don't show them."""

    postgres_url: str = field(default_factory=lambda: os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL), repr=False)
    mysql_url: str | None = field(default=None, repr=False)  # Optuna storage; generated if bootstrapping
    mysql_bootstrap_socket: str | None = None  # create database + user as root through this socket
    s3_endpoint: str | None = None  # None: start SeaweedFS on s3_port
    s3_access_key: str | None = field(default=None, repr=False)  # default: AWS_* for s3_endpoint, else generated
    s3_secret_key: str | None = field(default=None, repr=False)
    data_bucket: str = "churn-data"
    mlflow_bucket: str = "mlflow-artifacts"
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5500
    s3_port: int = 8333
    workers: int = 2  # tuning-shard workers; the trainer worker comes on top
    state_dir: Path = Path(".pipeline/stack")
    work_pool: str = field(default_factory=_default_work_pool)
    prefect_db: str = "prefect"
    mlflow_db: str = "mlflow"
    project_dir: Path = PROJECT_DIR
    deployments: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEPLOYMENTS))
    pipeline_env: dict[str, str] = field(default_factory=dict, repr=False)  # extra PIPELINE__* for workers
    worker_query_seconds: int = 1
    mlflow_workers: int = 1
    timeout: float = 120.0  # per wait


@dataclass
class Proc:
    """One started process: `marker` must appear in its command line, which guards against pid reuse."""

    pid: int
    log: str
    marker: str
    url: str | None = None


@dataclass
class StackSecrets:
    """Every credential of one stack; generated once, kept in `secrets.json` (0600), reused by later `up`s."""

    optuna_storage: str = ""  # the Optuna URL, with its per-stack user and password
    s3_access_key: str = ""  # the pipeline's S3 identity (workers)
    s3_secret_key: str = ""
    s3_admin_key: str = ""  # creates buckets; used only by `up`
    s3_admin_secret: str = ""
    mlflow_s3_key: str = ""  # the MLflow server's S3 identity (its artifacts bucket only)
    mlflow_s3_secret: str = ""
    prefect_auth: str = ""  # "user:password" of the Prefect API (basic auth)
    mlflow_admin_password: str = ""
    mlflow_viewer_password: str = ""
    mlflow_flask_secret: str = ""  # signs MLflow's CSRF tokens and sessions
    prefect_db_password: str = ""
    mlflow_db_password: str = ""
    pipeline_env: dict[str, str] = field(default_factory=dict)  # extra PIPELINE__* for workers

    def values(self) -> list[str]:
        """Values that must never appear in logs, printed URLs, parameters or command lines."""
        found = [
            getattr(self, f)
            for f in self.__dataclass_fields__
            if f not in {"optuna_storage", "pipeline_env", "s3_access_key", "s3_admin_key", "mlflow_s3_key"}
        ]
        found += [url_password(self.optuna_storage), *map(url_password, self.pipeline_env.values())]
        found.append(self.prefect_auth.partition(":")[2])
        return [s for s in found if s]


def _token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class StackInfo:
    """A running stack as recorded in the state dir; `env` is what a worker or client needs."""

    state_dir: Path
    prefect_api_url: str
    mlflow_url: str
    s3_endpoint: str
    work_pool: str
    data_bucket: str
    mlflow_bucket: str
    project_dir: str
    worker_query_seconds: int
    deployments: list[str] = field(default_factory=list)
    processes: dict[str, Proc] = field(default_factory=dict)
    secrets: StackSecrets = field(default_factory=StackSecrets, repr=False)

    @property
    def env(self) -> dict[str, str]:
        return worker_env(self)

    @property
    def worker_pids(self) -> dict[str, int]:
        """The tuning-shard workers (default queue); the trainer is `trainer_pid`."""
        return {name: p.pid for name, p in self.processes.items() if name.startswith("worker-")}

    @property
    def trainer_pid(self) -> int | None:
        proc = self.processes.get(TRAINER)
        return proc.pid if proc else None

    @property
    def all_worker_names(self) -> list[str]:
        return sorted(self.worker_pids) + ([TRAINER] if TRAINER in self.processes else [])

    def secret_values(self) -> list[str]:
        return self.secrets.values()

    def save(self) -> None:
        """Write state (no secrets) and secrets (mode 0600) atomically."""
        data = asdict(self)
        private = data.pop("secrets")
        data["state_dir"] = str(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.state_dir / STATE_FILE, data, 0o644)
        _write_json(self.state_dir / SECRETS_FILE, private, 0o600)

    @classmethod
    def load(cls, state_dir: str | Path) -> StackInfo | None:
        state_dir = Path(state_dir).resolve()
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
            private = json.loads((state_dir / SECRETS_FILE).read_text())
        except FileNotFoundError:
            return None
        data["processes"] = {k: Proc(**v) for k, v in data["processes"].items()}
        known = {k: v for k, v in private.items() if k in StackSecrets.__dataclass_fields__}
        return cls(**{**data, "secrets": StackSecrets(**known), "state_dir": state_dir})


def _write_json(path: Path, data: dict[str, Any], mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def client_env(info: StackInfo) -> dict[str, str]:
    """What a client of the stack (CLI, tests, a notebook) needs: API URLs and their logins."""
    s = info.secrets
    return {
        "PREFECT_API_URL": info.prefect_api_url,
        "PREFECT_API_AUTH_STRING": s.prefect_auth,
        "MLFLOW_TRACKING_URI": info.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
        "MLFLOW_TRACKING_PASSWORD": s.mlflow_admin_password,
    }


def worker_env(info: StackInfo) -> dict[str, str]:
    """Environment for a worker (inherited by its flow runs) or a client of the stack.

    Pipeline config goes through `PIPELINE__*` variables, not deployment parameters, so no
    secret is stored in Prefect. MLflow artifacts are proxied by the server: no S3 setup for it.
    """
    s = info.secrets
    env = {
        **client_env(info),
        "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline,optuna,lightgbm,featuretools",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_WORKER_QUERY_SECONDS": str(info.worker_query_seconds),
        "AWS_ACCESS_KEY_ID": s.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_key,
        "PIPELINE_PROJECT_DIR": info.project_dir,  # used by prefect.yaml's pull step
        "PIPELINE__TUNING__DISPATCH": "prefect",
        "PIPELINE__TUNING__STORAGE": s.optuna_storage,
        "PIPELINE__STORAGE__URI": f"s3://{info.data_bucket}",
        "PIPELINE__STORAGE__S3_ENDPOINT_URL": info.s3_endpoint,
        "PIPELINE__TRACKING__TRACKING_URI": info.mlflow_url,
        "PIPELINE__TRACKING__ARTIFACT_LOCATION": "",  # empty = null: the server proxies artifacts
        "PIPELINE__PREFECT__WORK_POOL": info.work_pool,
    }
    return {**env, **s.pipeline_env}


# --- processes -----------------------------------------------------------------------------------


def _bin(name: str) -> str:
    """A console script of this venv (weed, prefect, mlflow), which need not be on PATH."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise StackError(f"{name} not found next to {sys.executable}; install the dev requirements")
    return str(path)


def _spawn(cmd: list[str], env: dict[str, str], log: Path, marker: str, cwd: Path, url: str | None = None) -> Proc:
    """Start a detached process in its own session (so its group can be signalled), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _CHILDREN[proc.pid] = proc
    return Proc(pid=proc.pid, log=str(log), marker=marker, url=url)


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.poll()
        return
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def process_running(pid: int, marker: str = "") -> bool:
    """Running (not a zombie) and, if `marker` is given, still the process we started."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
        _reap(pid)
        return False
    return marker in cmdline


def descendants(pid: int) -> set[int]:
    """All processes below `pid`, including flow runs that the worker put in their own sessions."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    """Signal the process group `pid` leads: every process started here leads its own session."""
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_process(pid: int, *, hard: bool = False, timeout: float = 15.0, second_term_after: float | None = None) -> None:
    """Stop `pid`, its process group and every descendant; idempotent.

    SIGTERM (again after `second_term_after` s if still alive), SIGKILL at `timeout`; then
    descendants that left the group (flow runs get their own session) are killed too.
    `hard` skips straight to SIGKILL, like a crashed host.
    """
    if not process_running(pid):
        return
    tree = descendants(pid)
    now = time.monotonic()
    deadline = now + timeout
    second_term = None if second_term_after is None else now + second_term_after
    if not hard:
        _signal(pid, signal.SIGTERM)
        while process_running(pid) and time.monotonic() < deadline:
            if second_term is not None and time.monotonic() >= second_term:
                _signal(pid, signal.SIGTERM)
                second_term = None
            tree |= descendants(pid)
            time.sleep(0.1)
    _signal(pid, signal.SIGKILL)
    for child in tree:
        if process_running(child):
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    for p in [pid, *tree]:
        while process_running(p) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    _reap(pid)


def _tail(log: str | Path, secrets_: list[str], lines: int = 20) -> str:
    try:
        text = "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"
    return scrub(text, secrets_)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # health checks are local


def _probe(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
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


def _wait_http(
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
        status, body = _probe(url, auth)
        elapsed = time.monotonic() - start
        if ok(status, body):
            print(f"ok ({elapsed:.1f} s)", flush=True)
            return elapsed
        died = not process_running(proc.pid)
        if died or elapsed > timeout:
            print("failed", flush=True)
            why = "exited" if died else f"not healthy after {timeout:.0f} s"
            last = f"HTTP {status}" if status else body.decode(errors="replace")
            tail = _tail(proc.log, secrets_)
            raise StackError(f"{service} at {mask_url(url)} {why} (last answer: {last}); last lines of {proc.log}:\n{tail}")
        time.sleep(0.25)


# --- databases and S3 ------------------------------------------------------------------------------


def _connect_error(kind: str, url: str, exc: Exception) -> StackError:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    detail = scrub(lines[0] if lines else type(exc).__name__, [url_password(url)])
    return StackError(f"{kind} unreachable at {mask_url(url)}: {detail}")


def check_database(kind: str, url: str) -> None:
    """Log in once (5 s timeout) so a wrong URL fails here, naming the server, not in a worker."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise _connect_error(kind, url, exc) from None
    finally:
        engine.dispose()


def ensure_postgres_databases(admin_url: str, names: list[str]) -> None:
    """Create the databases that are missing (PostgreSQL has no CREATE DATABASE IF NOT EXISTS)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    for name in names:
        _check_identifier(name)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            existing = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
            for name in names:
                if name not in existing:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        raise _connect_error("PostgreSQL", admin_url, exc) from None
    finally:
        engine.dispose()


def ensure_postgres_owned_databases(admin_url: str, owners: dict[str, str]) -> None:
    """For each `{name: password}`: a login role `name` (password reset) owning database `name`.

    The servers log in as these roles, which own their database and nothing else, instead of
    the superuser; PUBLIC loses CONNECT on them. A database that exists with another owner
    (made by an older version of the stack) is refused rather than re-owned behind its back.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    for name in owners:
        _check_identifier(name)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            for name, password in owners.items():
                exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
                verb = "ALTER" if exists else "CREATE"
                literal = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar_one()
                conn.execute(text(f'{verb} ROLE "{name}" LOGIN PASSWORD {literal}'))
                owner = conn.execute(
                    text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :n"), {"n": name}
                ).scalar_one_or_none()
                if owner is None:
                    conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
                elif owner != name:
                    raise StackError(
                        f"PostgreSQL database {name!r} exists but is owned by {owner!r}, not by its own role: "
                        f"drop it or choose another name (--prefect-db / --mlflow-db)"
                    )
                conn.execute(text(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC'))
    except SQLAlchemyError as exc:
        raise _connect_error("PostgreSQL", admin_url, exc) from None
    finally:
        engine.dispose()


def _role_url(admin_url: str, drivername: str, role: str, password: str) -> str:
    """The admin URL's host and port, logged in as `role` (which owns the database of the same name)."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(drivername=drivername, database=role, username=role, password=password)
    return url.render_as_string(hide_password=False)


def _check_identifier(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise StackError(f"{name!r} is not a plain database/user name (letters, digits, underscore)")


def bootstrap_mysql(socket_path: str, url: str) -> None:
    """Create the Optuna database and a user limited to it, as root through the unix socket.

    Root uses unix_socket authentication, so it cannot log in over TCP; the user created here
    can. A TCP login from 127.0.0.1 is `user@127.0.0.1` when the server skips name resolution,
    `user@localhost` otherwise, so local URLs get all loopback hosts. Idempotent; resets the password.
    """
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if not (u.username and u.password and u.database):
        raise StackError(f"MySQL URL {mask_url(url)} needs a user, a password and a database")
    _check_identifier(u.username)
    _check_identifier(u.database)
    local = ("localhost", "127.0.0.1", "::1")
    hosts = local if u.host in (None, *local) else ("%",)
    try:
        conn = pymysql.connect(unix_socket=socket_path, user="root", connect_timeout=5, autocommit=True)
    except pymysql.MySQLError as exc:
        raise StackError(f"MySQL unreachable as root through socket {socket_path}: {exc}") from None
    grants = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES"
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{u.database}`")
        for host in hosts:
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (u.username, host, u.password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (u.username, host, u.password))
            cur.execute(f"GRANT {grants} ON `{u.database}`.* TO %s@%s", (u.username, host))


def ensure_buckets(endpoint: str, buckets: list[str], access_key: str, secret_key: str) -> None:
    """Create missing buckets; an unreachable endpoint or rejected keys fail within seconds."""
    from pipeline.storage import S3Settings, S3Store

    settings = S3Settings(endpoint_url=endpoint, access_key_id=access_key, secret_access_key=secret_key, max_attempts=3, retry_seconds=3)
    for bucket in buckets:
        try:
            S3Store(bucket, settings=settings).ensure_bucket()
        except (ConnectionError, PermissionError) as exc:
            raise StackError(f"S3 unreachable or refusing access at {mask_url(endpoint)}: {exc}") from None


def s3_identity(name: str, key: str, secret: str, actions: list[str]) -> dict[str, Any]:
    """One SeaweedFS identity; actions are `Read`, `Write`, `List`, `Tagging`, `Admin`, optionally `:bucket`."""
    return {"name": name, "credentials": [{"accessKey": key, "secretKey": secret}], "actions": actions}


def role_identities(s: StackSecrets, data_bucket: str, mlflow_bucket: str) -> list[dict[str, Any]]:
    """Least privilege per role: the pipeline cannot touch registered models, MLflow cannot read run data."""
    return [
        s3_identity(
            "pipeline", s.s3_access_key, s.s3_secret_key, [*_read_write(data_bucket), f"Read:{mlflow_bucket}", f"List:{mlflow_bucket}"]
        ),
        s3_identity("mlflow", s.mlflow_s3_key, s.mlflow_s3_secret, _read_write(mlflow_bucket)),
    ]


def _read_write(bucket: str) -> list[str]:
    return [f"{action}:{bucket}" for action in ("Read", "Write", "List", "Tagging")]


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
    _write_json(config, {"identities": [admin, *identities]}, 0o600)
    cmd = [
        _bin("weed"), "mini", f"-dir={state_dir / 's3'}", f"-ip={host}", f"-ip.bind={host}", f"-s3.config={config}",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.port={port}", f"-master.port={port + 1}", f"-volume.port={port + 2}", f"-filer.port={port + 3}", f"-admin.port={port + 4}",
    ]  # fmt: skip
    (state_dir / "s3").mkdir(exist_ok=True)
    # AWS_* in weed's environment would add a second identity ("mini"); keep one source of truth.
    env = {k: v for k, v in os.environ.items() if k not in {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"}}
    url = f"http://{host}:{port}"
    proc = _spawn(cmd, env, state_dir / "logs" / "seaweedfs.log", "weed", state_dir, f"{url}/healthz")
    try:
        _wait_http("SeaweedFS S3", f"{url}/healthz", lambda s, _: s == 200, proc, timeout, [secret_key])
    except StackError:
        stop_process(proc.pid)  # not recorded anywhere yet, so nobody else could stop it
        raise
    return proc


# --- Prefect ---------------------------------------------------------------------------------------


@contextmanager
def prefect_settings(api_url: str, auth: str | None = None) -> Iterator[None]:
    """Prefect settings bound to this stack's API and login, whatever the caller's profile says."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(updates=updates):
        yield


@contextmanager
def prefect_client(api_url: str, auth: str | None = None) -> Iterator[Any]:
    """A sync client bound to this stack's API."""
    from prefect.client.orchestration import get_client

    with prefect_settings(api_url, auth), get_client(sync_client=True) as client:
        yield client


# Job variables an API user could set on a flow run to run anything on a worker: not offered.
_UNSAFE_JOB_VARIABLES = ("command", "env", "working_dir")


def hardened_job_template() -> dict[str, Any]:
    """The process worker's base job template without the command, env and working-dir variables.

    With the default template, anyone who may create a flow run can pass
    `job_variables={"command": "..."}` and run it on a worker, with the worker's secrets in its
    environment. Without those variables (and with unknown ones refused) a flow run always
    starts the deployment's flow, in the worker's own environment.
    """
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    for key in _UNSAFE_JOB_VARIABLES:
        template["job_configuration"].pop(key, None)
        template["variables"]["properties"].pop(key, None)
    template["variables"]["additionalProperties"] = False
    return template


def ensure_work_pool(api_url: str, name: str, auth: str | None = None) -> None:
    """Create the `process` work pool with the hardened job template, or harden an existing one."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    template = hardened_job_template()
    with prefect_client(api_url, auth) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                return
            except ObjectAlreadyExists:
                pool = client.read_work_pool(name)
        if pool.base_job_template != template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def register_deployments(
    api_url: str,
    project_dir: Path,
    deployments: dict[str, str],
    work_pool: str,
    queues: dict[str, str] | None = None,
    auth: str | None = None,
) -> list[str]:
    """Create or update deployments `{name: entrypoint}` whose code is pulled from `project_dir`.

    Each goes to work queue `queues[name]` (default: DEPLOYMENT_QUEUES, else the pool's
    default queue): `training` on the trainer's queue, `tuning-shard` on the workers' one.

    `flow.deploy(build=False)` is rejected without an image, so the flow is loaded with
    `from_source(<local dir>)`, which stores a `set_working_directory` pull step. No
    parameters are stored: workers take the pipeline config from their environment.
    """
    from prefect import Flow

    names = []
    with prefect_settings(api_url, auth):
        for name, entrypoint in deployments.items():
            flow = Flow.from_source(source=str(project_dir.resolve()), entrypoint=entrypoint)
            queue = (DEPLOYMENT_QUEUES if queues is None else queues).get(name, DEFAULT_QUEUE)
            # = .deploy() minus its console table; the server creates a missing queue
            flow.to_deployment(name=name, work_pool_name=work_pool, work_queue_name=queue).apply()
            names.append(f"{flow.name}/{name}")
    return names


def _process_env(extra: dict[str, str], drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **extra}


def start_worker(info: StackInfo, name: str, queue: str | None = None) -> Proc:
    """Start one `--limit 1` worker on one queue of the pool with the stack's env; recorded in the state file.

    `queue` defaults to TRAINER_QUEUE for the worker named TRAINER, else DEFAULT_QUEUE (shards).
    """
    env = _process_env(worker_env(info))
    queue = queue or (TRAINER_QUEUE if name == TRAINER else DEFAULT_QUEUE)
    cmd = [_bin("prefect"), "worker", "start", "--pool", info.work_pool, "--work-queue", queue, "--limit", "1", "--name", name]
    proc = _spawn(cmd, env, info.state_dir / "logs" / f"{name}.log", f"--name {name}", Path(info.project_dir))
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
                    f"worker {name} {why} (Prefect API {info.prefect_api_url}); last lines of {log}:\n{_tail(log, info.secret_values())}"
                )
            time.sleep(0.5)


# --- up / down / status ----------------------------------------------------------------------------


def _running(info: StackInfo, name: str) -> bool:
    proc = info.processes.get(name)
    return proc is not None and process_running(proc.pid, proc.marker)


def _optuna_url(settings: StackSettings, previous: StackSecrets | None) -> str:
    """The given URL, else the one generated by an earlier `up`, else a new per-stack user and
    database (so two stacks on one MySQL server never share, or re-password, one user)."""
    if settings.mysql_url:
        return settings.mysql_url
    if previous and previous.optuna_storage:
        return previous.optuna_storage
    if not settings.mysql_bootstrap_socket:
        raise StackError("no Optuna storage: give a MySQL URL (user with a password) or a socket to bootstrap one")
    name = f"optuna_{secrets.token_hex(4)}"
    return f"mysql+pymysql://{name}:{_token()}@127.0.0.1:3306/{name}"


def _stack_secrets(settings: StackSettings, previous: StackSecrets | None) -> StackSecrets:
    """Reuse every secret of an earlier `up` of this state dir (its servers' data keep them); make the missing ones.

    S3 keys: for our SeaweedFS one random identity per role; for an external S3 the given keys
    or AWS_* serve every role (that server's own policies then decide what each may do).
    """
    s = StackSecrets(**{k: v for k, v in asdict(previous).items()}) if previous else StackSecrets()
    s.optuna_storage = _optuna_url(settings, previous)
    s.pipeline_env = dict(settings.pipeline_env)
    if settings.s3_endpoint:
        key = settings.s3_access_key or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = settings.s3_secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (key and secret):
            raise StackError(f"S3 at {settings.s3_endpoint} needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        s.s3_access_key = s.s3_admin_key = s.mlflow_s3_key = key
        s.s3_secret_key = s.s3_admin_secret = s.mlflow_s3_secret = secret
    else:
        for role in ("s3_access_key", "s3_admin_key", "mlflow_s3_key"):
            if not getattr(s, role):
                setattr(s, role, "stack" + secrets.token_hex(6))
        for role in ("s3_secret_key", "s3_admin_secret", "mlflow_s3_secret"):
            if not getattr(s, role):
                setattr(s, role, secrets.token_hex(20))
    s.prefect_auth = s.prefect_auth or f"{PREFECT_AUTH_USER}:{_token()}"
    for name in ("mlflow_admin_password", "mlflow_viewer_password", "mlflow_flask_secret", "prefect_db_password", "mlflow_db_password"):
        if not getattr(s, name):
            setattr(s, name, _token())
    return s


def _start_prefect_server(settings: StackSettings, info: StackInfo) -> Proc:
    db_url = _role_url(settings.postgres_url, "postgresql+asyncpg", settings.prefect_db, info.secrets.prefect_db_password)
    env = _process_env(
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
    cmd = [_bin("prefect"), "server", "start", "--host", settings.host, "--port", str(settings.prefect_port)]
    return _spawn(
        cmd, env, info.state_dir / "logs" / "prefect-server.log", "server start", info.state_dir, f"{info.prefect_api_url}/health"
    )


def _mlflow_auth_config(info: StackInfo) -> Path:
    """MLflow's basic-auth settings: users in a SQLite file of the state dir, READ for every user
    by default; the admin password comes from the environment, not from this file.

    The user store is made anew at each server start (its users are `admin` and `viewer`, both
    from secrets.json), so a rotated password applies at the next `up`, as in the compose stack.
    """
    (info.state_dir / "mlflow-auth.db").unlink(missing_ok=True)
    path = info.state_dir / "mlflow-auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{info.state_dir / 'mlflow-auth.db'}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return path


def _start_mlflow(settings: StackSettings, info: StackInfo) -> Proc:
    s = info.secrets
    env = _process_env(
        {
            "MLFLOW_BACKEND_STORE_URI": _role_url(settings.postgres_url, "postgresql+psycopg2", settings.mlflow_db, s.mlflow_db_password),
            "MLFLOW_AUTH_CONFIG_PATH": str(_mlflow_auth_config(info)),
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
        _bin("mlflow"), "server", "--app-name", "basic-auth",
        "--artifacts-destination", f"s3://{settings.mlflow_bucket}", "--serve-artifacts",
        "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", str(settings.mlflow_workers),
        "--allowed-hosts", allowed,
    ]  # fmt: skip
    return _spawn(cmd, env, info.state_dir / "logs" / "mlflow.log", "mlflow server", info.state_dir, f"{info.mlflow_url}/health")


def ensure_mlflow_user(mlflow_url: str, admin_password: str, username: str, password: str) -> None:
    """Create `username` through MLflow's auth API (as admin), or reset its password if it exists."""
    import requests

    session = requests.Session()
    session.trust_env = False  # a local server: no proxy
    session.auth = (MLFLOW_ADMIN, admin_password)
    body = {"username": username, "password": password}
    resp = session.post(f"{mlflow_url}/api/2.0/mlflow/users/create", json=body, timeout=10)
    if resp.status_code == 200:
        return
    if "RESOURCE_ALREADY_EXISTS" in resp.text:
        resp = session.patch(f"{mlflow_url}/api/2.0/mlflow/users/update-password", json=body, timeout=10)
        if resp.status_code == 200:
            return
    raise StackError(f"MLflow at {mlflow_url} refused to create user {username!r}: HTTP {resp.status_code} {resp.text[:200]}")


def up(settings: StackSettings) -> StackInfo:
    """Start what is not already running, create what is missing, wait until all is healthy.

    On failure raises StackError naming the service and URL, with its log tail; what was
    started stays up for inspection and `down()` stops it.
    """
    t0 = time.monotonic()
    state_dir = settings.state_dir.resolve()
    previous = StackInfo.load(state_dir)
    stack_secrets = _stack_secrets(settings, previous.secrets if previous else None)
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
    for name, start in (("prefect-server", _start_prefect_server), ("mlflow", _start_mlflow)):
        if not _running(info, name):
            print(f"starting {name}", flush=True)
            started[name] = time.monotonic()
            info.processes[name] = start(settings, info)
            info.save()

    prefect = info.processes["prefect-server"]
    _wait_http(
        "Prefect server",
        f"{info.prefect_api_url}/health",
        lambda s, b: s == 200 and b.strip() == b"true",
        prefect,
        settings.timeout,
        secrets_,
        started.get("prefect-server"),
    )
    print(f"ensuring work pool {settings.work_pool} and deployments {', '.join(settings.deployments)}", flush=True)
    ensure_work_pool(info.prefect_api_url, settings.work_pool, s.prefect_auth)
    info.deployments = register_deployments(
        info.prefect_api_url, settings.project_dir, settings.deployments, settings.work_pool, auth=s.prefect_auth
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
    _wait_http(
        "MLflow server", f"{info.mlflow_url}/health", lambda s, b: s == 200, mlflow, settings.timeout, secrets_, started.get("mlflow")
    )
    artifacts = f"{info.mlflow_url}/api/2.0/mlflow-artifacts/artifacts?path="
    _wait_http(
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
        healthy = (running and _probe(proc.url)[0] == 200) if proc.url else None
        rows.append(ServiceStatus(name, proc.pid, running, healthy, proc.url, proc.log))
    return rows


# --- CLI -------------------------------------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `stack up|down|status|env`; each handler is `args.func(args) -> exit code`."""
    stack = subparsers.add_parser("stack", help="run Prefect, MLflow, S3 and workers as local processes")
    sub = stack.add_subparsers(dest="stack_command", required=True)
    commands = {
        "up": (_cmd_up, "start the topology (idempotent)"),
        "down": (_cmd_down, "stop every process of the stack"),
        "status": (_cmd_status, "show processes and health"),
        "env": (_cmd_env, "print `export` lines for a shell (includes secrets)"),
        "credentials": (_cmd_credentials, "print the UI logins (Prefect, MLflow admin and read-only viewer)"),
    }
    for name, (handler, help_) in commands.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--state-dir", type=Path, default=StackSettings.state_dir, help="default: %(default)s")
        p.set_defaults(func=handler)
        if name == "up":
            _add_up_options(p)


def _add_up_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="tuning-shard workers, besides the trainer (default 2)")
    p.add_argument("--postgres-url", help=f"admin URL (default: $TEST_POSTGRES_URL or {DEFAULT_POSTGRES_URL})")
    p.add_argument("--mysql-url", help="Optuna storage, a user with a password (default: generated with --mysql-bootstrap-socket)")
    p.add_argument("--mysql-bootstrap-socket", help="create the Optuna database and user as root through this socket")
    p.add_argument("--s3-endpoint", help="use this S3 (keys from AWS_*) instead of starting SeaweedFS")
    p.add_argument("--s3-port", type=int, help="SeaweedFS ports: this..this+4 and +10000 (default 8333)")
    p.add_argument("--prefect-port", type=int, help="default 4200")
    p.add_argument("--mlflow-port", type=int, help="default 5500")
    p.add_argument("--work-pool", help="default: prefect.work_pool from the config")
    p.add_argument("--prefect-db", help="PostgreSQL database of the Prefect server (default prefect)")
    p.add_argument("--mlflow-db", help="PostgreSQL database of the MLflow server (default mlflow)")
    p.add_argument("--data-url", help="source database for the workers (PIPELINE__DATA__URL)")


def _cmd_up(args: argparse.Namespace) -> int:
    names = [
        "workers", "postgres_url", "mysql_url", "mysql_bootstrap_socket", "s3_endpoint", "s3_port",
        "prefect_port", "mlflow_port", "work_pool", "prefect_db", "mlflow_db", "state_dir",
    ]  # fmt: skip
    kwargs = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.data_url:
        kwargs["pipeline_env"] = {"PIPELINE__DATA__URL": args.data_url}
    try:
        info = up(StackSettings(**kwargs))
    except StackError as exc:
        print(f"stack up failed: {exc}\n(`python -m pipeline stack down` stops what was started)", file=sys.stderr)
        return 1
    print(f"Prefect UI/API: {info.prefect_api_url.removesuffix('/api')}  MLflow: {info.mlflow_url}  S3: {info.s3_endpoint}")
    state = "" if args.state_dir == StackSettings.state_dir else f" --state-dir {shlex.quote(str(args.state_dir))}"
    print(f'client environment: eval "$(python -m pipeline stack env{state})"')
    print(f"UI logins (Prefect, MLflow): python -m pipeline stack credentials{state}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    return 1 if down(args.state_dir) else 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = status(args.state_dir)
    if not rows:
        print(f"no stack recorded in {args.state_dir}")
        return 1
    for r in rows:
        health = "" if r.healthy is None else ("healthy" if r.healthy else "UNHEALTHY")
        print(f"{r.name:15} pid {r.pid:<8} {'running' if r.running else 'STOPPED':8} {health:10} {r.url or ''}  log {r.log}")
    return 0 if all(r.running and r.healthy is not False for r in rows) else 1


def _cmd_credentials(args: argparse.Namespace) -> int:
    info = StackInfo.load(args.state_dir)
    if info is None:
        print(f"no stack recorded in {args.state_dir}", file=sys.stderr)
        return 1
    print(f"Prefect UI  {info.prefect_api_url.removesuffix('/api')}  login (user:password, in its one field): {info.secrets.prefect_auth}")
    print(f"MLflow UI   {info.mlflow_url}  read-only: user {MLFLOW_VIEWER}  password {info.secrets.mlflow_viewer_password}")
    print(f"            admin (the pipeline's user): user {MLFLOW_ADMIN}  password {info.secrets.mlflow_admin_password}")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    info = StackInfo.load(args.state_dir)
    if info is None:
        print(f"no stack recorded in {args.state_dir}", file=sys.stderr)
        return 1
    for key, value in worker_env(info).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
