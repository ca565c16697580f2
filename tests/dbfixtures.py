"""Throwaway PostgreSQL and MariaDB databases for tests that write to real servers.

Import into a test module with `from tests.dbfixtures import *`. Server addresses come from:
  TEST_POSTGRES_URL  an admin URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/postgres)
  TEST_MYSQL_ADMIN   an admin URL (e.g. mysql+pymysql://root:pw@host:3306/); by default root logs
                     in through the unix socket /run/mysqld/mysqld.sock and creates the user
                     churn/churn, which the tests then use over TCP at 127.0.0.1:3306.
An unreachable server skips the tests with the reason, except under CI (env `CI` set), where it
fails them: CI must never pass by skipping the database tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest
import sqlalchemy as sa

from pipeline.data.db import describe_url

__all__ = ["postgres_url", "mysql_url", "unavailable"]

TEST_DATABASE = "churn_test_data"
DEFAULT_POSTGRES_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
MYSQL_TEST_URL = f"mysql+pymysql://churn:churn@127.0.0.1:3306/{TEST_DATABASE}"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: database tests must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the throwaway PostgreSQL database churn_test_data (created if missing)."""
    admin = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN)
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": TEST_DATABASE}).first()
            if not exists:
                conn.execute(sa.text(f"CREATE DATABASE {TEST_DATABASE}"))
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        unavailable(f"PostgreSQL not reachable at {describe_url(admin)}: {reason}")
    finally:
        engine.dispose()
    return sa.engine.make_url(admin).set(database=TEST_DATABASE).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """URL of the throwaway MariaDB/MySQL database churn_test_data (created if missing)."""
    admin = os.environ.get("TEST_MYSQL_ADMIN")
    try:
        if admin:
            return _mysql_with_admin_url(admin)
        return _mysql_with_socket()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        where = describe_url(admin) if admin else f"socket {MYSQL_SOCKET} as root"
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        unavailable(f"MariaDB/MySQL not reachable ({where}): {reason}")


def _mysql_with_admin_url(admin: str) -> str:
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {TEST_DATABASE}"))
    finally:
        engine.dispose()
    return sa.engine.make_url(admin).set(database=TEST_DATABASE).render_as_string(hide_password=False)


def _mysql_with_socket() -> str:
    import pymysql

    try:
        conn = pymysql.connect(unix_socket=MYSQL_SOCKET, user="root", autocommit=True)
    except pymysql.MySQLError as exc:
        raise OSError(str(exc)) from exc
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {TEST_DATABASE}")
            # TCP connections from 127.0.0.1 match 'churn'@'127.0.0.1', not 'churn'@'localhost'
            for host in ("localhost", "127.0.0.1"):
                cursor.execute(f"CREATE USER IF NOT EXISTS 'churn'@'{host}' IDENTIFIED BY 'churn'")
                cursor.execute(f"GRANT ALL ON *.* TO 'churn'@'{host}'")
    finally:
        conn.close()
    return MYSQL_TEST_URL
