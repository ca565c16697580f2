"""Accounts and storage the servers need: PostgreSQL roles and databases, the MySQL Optuna user,
S3 buckets and per-role S3 identities, MLflow users. Everything is idempotent, so `up` can run again.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.masking import mask_url, scrub, url_password
from pipeline.ops.state import MLFLOW_ADMIN, StackError, StackSecrets


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


def role_url(admin_url: str, drivername: str, role: str, password: str) -> str:
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
