"""Small database helpers shared by the data loaders: engines, masked URLs and bulk table writes.

Every writer in the project goes through `write_tables`, so that the same dialect rules apply to
the synthetic database and to the real AdventureWorks CSV load:

* PostgreSQL folds unquoted identifiers to lower case, so the pipeline's `.sql` files (which use
  unquoted CamelCase names such as `SalesOrderHeader`) only find tables whose names were written
  lower-case there. On MySQL/MariaDB (case-sensitive table names on Linux) and SQLite the
  AdventureWorks CamelCase names are kept.
* Rows go in through SQLAlchemy's executemany, which on PostgreSQL and MySQL/MariaDB sends
  multi-row INSERTs of 1,000 rows ("insertmanyvalues": small packets, one compiled statement).
  pandas' `method="multi"` was measured 4-10x slower here (SQLAlchemy compiles one statement with
  thousands of bound parameters per chunk), so it is not used.
* Key columns get a unique index, so that the joins of the spec's queries do not degrade into
  nested-loop scans on MariaDB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

log = logging.getLogger(__name__)

MAX_VARCHAR = 255


class DataSourceError(RuntimeError):
    """The database cannot be reached or used; the message names the masked URL and a likely fix."""


def describe_url(url: str) -> str:
    """The URL as it may appear in logs and error messages: with the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    """An engine that re-checks pooled connections; for SQLite files the parent folder is created.

    Bad URLs and missing drivers become a `DataSourceError` here instead of an SQLAlchemy traceback.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DataSourceError(
            f"invalid database URL {url!r}: expected e.g. sqlite:///path/to.db, "
            "mysql+pymysql://user:pass@host:3306/db or postgresql+psycopg2://user@host:5432/db"
        ) from exc
    sqlite_path = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if sqlite_path and not parsed.database.startswith("file:"):  # a file: URI (read-only extract) creates nothing
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DataSourceError(
            f"no database driver for {describe_url(url)} ({exc}): use mysql+pymysql://... "
            "or postgresql+psycopg2://..., the drivers installed with the pipeline"
        ) from exc


def connect(engine: Engine) -> Connection:
    """Open a connection, turning 'cannot connect' into a `DataSourceError` with a likely fix."""
    try:
        return engine.connect()
    except (OperationalError, InterfaceError) as exc:
        raise DataSourceError(_unreachable_message(engine, exc)) from exc


def _unreachable_message(engine: Engine, exc: Exception) -> str:
    url = engine.url
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        fix = "check that the path is correct and its folder is writable"
    else:
        fix = (
            f"check that the server is running and reachable at {url.host}:{url.port or 'default port'}, "
            f"that user {url.username!r} and its password are right, "
            f"and that database {url.database!r} exists (CREATE DATABASE {url.database})"
        )
    return f"cannot connect to {shown}: {reason}. Fix: {fix}."


def is_postgres(engine_or_conn: Engine | Connection) -> bool:
    """PostgreSQL needs lower-case names for the unquoted identifiers of the spec's SQL."""
    return engine_or_conn.dialect.name == "postgresql"


def write_tables(
    tables: Mapping[str, pd.DataFrame],
    url: str,
    if_exists: Literal["fail", "replace", "append"] = "replace",
    chunksize: int = 10_000,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, int]:
    """Write each DataFrame as a table and return the row count per (original) table name.

    `chunksize` rows are converted and sent per executemany call (bounding memory, not packets).
    `keys` maps a table name to its primary-key columns; they get a unique index after the load.
    Each table is written in its own transaction, so a failed table is not left half-loaded.
    """
    engine = make_engine(url)
    keys = keys or {}
    counts: dict[str, int] = {}
    try:
        with connect(engine) as conn:
            for name, frame in tables.items():
                started = time.perf_counter()
                with conn.begin():
                    _write_one(conn, name, frame, if_exists, chunksize, keys.get(name, ()))
                counts[name] = len(frame)
                log.info("wrote %s: %s rows in %.1f s to %s", name, f"{len(frame):,}", time.perf_counter() - started, describe_url(url))
    finally:
        engine.dispose()
    return counts


def _write_one(
    conn: Connection,
    name: str,
    frame: pd.DataFrame,
    if_exists: Literal["fail", "replace", "append"],
    chunksize: int,
    key: Sequence[str],
) -> None:
    if is_postgres(conn):
        name, key = name.lower(), [column.lower() for column in key]
        frame = frame.rename(columns=str.lower)
    frame.to_sql(
        name,
        conn,
        if_exists=if_exists,
        index=False,
        chunksize=chunksize,
        dtype={column: sql_type(frame[column], conn.dialect.name) for column in frame.columns},
    )
    if key:
        table = sa.Table(name, sa.MetaData(), *(sa.Column(column) for column in key))
        sa.Index(f"ux_{name}_key", *table.columns, unique=True).create(conn, checkfirst=True)


def sql_type(series: pd.Series, dialect: str) -> sa.types.TypeEngine:
    """A column type for `series`: exact integers, doubles, DATETIME (ms on MySQL), bounded VARCHAR."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        values = series.dropna()
        return sa.BigInteger() if len(values) and values.abs().max() >= 2**31 else sa.Integer()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return mysql.DATETIME(fsp=3) if dialect in ("mysql", "mariadb") else sa.DateTime()
    longest = int(series.dropna().astype(str).str.len().max()) if series.notna().any() else 0
    if longest > MAX_VARCHAR:
        return sa.Text()
    return sa.String(length=max(16, 1 << (max(longest, 1) - 1).bit_length()))
