"""What a stack is: its settings, its recorded state (pids, password-free URLs, log paths) and its
secrets, kept apart so `stack.json` can be read by anyone and `secrets.json` only by the owner.

`down()` and `status()` work from another process because everything they need is recorded here.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.masking import url_password
from pipeline.ops.deployments import DEFAULT_DEPLOYMENTS

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

TRAINER = "trainer"  # worker name of the training queue; shard workers are worker-1..N
STATE_FILE = "stack.json"
SECRETS_FILE = "secrets.json"
DEFAULT_STATE_DIR = Path(".pipeline/stack")


class StackError(RuntimeError):
    """A service could not be reached or started; the message names it and its URL (no password)."""


PREFECT_AUTH_USER = "churn"
MLFLOW_ADMIN = "admin"  # the pipeline's user (creates experiments, registers models)
MLFLOW_VIEWER = "viewer"  # read-only, for people browsing the UI


def _default_work_pool() -> str:
    from pipeline.config import load_config

    return load_config().prefect.work_pool


def _default_alert_webhook() -> str | None:
    from pipeline.alerts import webhook_url
    from pipeline.config import load_config

    return webhook_url(load_config())


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
    state_dir: Path = DEFAULT_STATE_DIR
    work_pool: str = field(default_factory=_default_work_pool)
    prefect_db: str = "prefect"
    mlflow_db: str = "mlflow"
    project_dir: Path = PROJECT_DIR
    deployments: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEPLOYMENTS))
    pipeline_env: dict[str, str] = field(default_factory=dict, repr=False)  # extra PIPELINE__* for workers
    alert_webhook_url: str | None = field(default_factory=_default_alert_webhook, repr=False)  # None: no alert automations
    worker_query_seconds: int = 1
    mlflow_workers: int = 1
    mlflow_auth_cache_seconds: int = 60  # how long a verified MLflow login is trusted without a new hash check
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
        write_json(self.state_dir / STATE_FILE, data, 0o644)
        write_json(self.state_dir / SECRETS_FILE, private, 0o600)

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


def write_json(path: Path, data: dict[str, Any], mode: int) -> None:
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


def resolve_secrets(settings: StackSettings, previous: StackSecrets | None) -> StackSecrets:
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
