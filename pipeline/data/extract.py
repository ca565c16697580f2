"""Extract the spec's tables from any SQLAlchemy database and check them before any expensive work."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipeline.data.db import DataSourceError, connect, describe_url, make_engine
from pipeline.data.sql_guard import UnsafeQueryError, check_read_only, sqlglot_dialect
from pipeline.spec import DatasetSpec, SpecError

log = logging.getLogger(__name__)

# run on each new connection of the extract, so that every transaction on it is read-only. Per-session,
# not per-transaction: MySQL/MariaDB commit implicitly before DDL and would run a DROP TABLE outside a
# `START TRANSACTION READ ONLY` (measured on MariaDB 10.11), and PostgreSQL would run what follows a
# COMMIT inside one query string in a new, writable transaction. SQLite files are opened read-only instead.
READ_ONLY_SESSION = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}
MAX_REASON = 300


def spec_columns(spec: DatasetSpec, entity: str) -> set[str]:
    """Every column the spec names for an entity (keys, time index, types, drops, snapshots)."""
    ent = spec.entities[entity]
    names = {ent.index, *ent.logical_types, *ent.drop, *ent.snapshot}
    if ent.time_index:
        names.add(ent.time_index)
    for rel in spec.relationships:
        if rel.child == entity:
            names.add(rel.child_key)
    if entity == spec.target.entity:
        names.add(spec.target.customer_key)
    return names


def _align_case(df: pd.DataFrame, wanted: set[str]) -> pd.DataFrame:
    """Give columns the spelling the spec uses: SQL folds unquoted names (PostgreSQL to lower case)."""
    by_lower = {name.lower(): name for name in wanted}
    return df.rename(columns={c: by_lower[c.lower()] for c in df.columns if c.lower() in by_lower and c not in wanted})


def read_only_url(url: str) -> str:
    """For a SQLite file, the same file opened read-only (`file:` URI with mode=ro); other URLs unchanged."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # make_engine reports it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    database = parsed.database
    if not database.startswith("file:"):
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise DataSourceError(f"the source database file {path} does not exist (data.url {describe_url(url)})")
        database = path.as_uri()
    return parsed.set(database=database, query={**parsed.query, "mode": "ro", "uri": "true"}).render_as_string(
        hide_password=False
    )


def checked_queries(spec: DatasetSpec, backend: str) -> dict[str, str]:
    """Every entity's SQL, each proved to be one read-only SELECT in the backend's dialect, before connecting."""
    dialect = sqlglot_dialect(backend)
    queries: dict[str, str] = {}
    for entity in spec.entities:
        sql = spec.sql(entity)
        try:
            check_read_only(sql, dialect)
        except UnsafeQueryError as exc:
            raise SpecError(
                f"spec {spec.name!r}, entity {entity!r}: query file {spec.query_path(entity)} {exc} "
                "(the extract only reads the source)"
            ) from None
        queries[entity] = sql
    return queries


def _backend(url: str) -> str:
    """The URL's database backend (sqlite, postgresql, mysql, ...), without connecting."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        make_engine(url)  # raises the DataSourceError that explains the URL format
        raise


def read_only_engine(url: str) -> sa.Engine:
    """An engine whose connections cannot write: the second line of defence behind `checked_queries`."""
    engine = make_engine(read_only_url(url))
    statement = READ_ONLY_SESSION.get(engine.dialect.name)
    if statement:
        @sa.event.listens_for(engine, "connect")
        def _read_only_session(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
            dbapi_connection.commit()  # a PostgreSQL SET is undone if its transaction is rolled back
    elif engine.dialect.name != "sqlite":
        log.warning("no read-only session for %s databases: only the SQL check guards the source; "
                    "use a database user that can only read", engine.dialect.name)
    return engine


def read_entity(conn: sa.Connection, spec: DatasetSpec, entity: str, sql: str) -> pd.DataFrame:
    try:
        df = pd.read_sql(sa.text(sql), conn)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:MAX_REASON]
        raise DataSourceError(
            f"query for entity {entity!r} ({spec.entities[entity].query}) failed: {reason}. "
            "Check that the table and columns it reads exist in the source database "
            "(python -m pipeline generate-data or load-csv creates them)"
        ) from None
    return _parse_times(_align_case(df, spec_columns(spec, entity)), spec, entity)


def _parse_times(df: pd.DataFrame, spec: DatasetSpec, entity: str) -> pd.DataFrame:
    """Datetime columns as datetime64 whatever the driver returns (SQLite returns text)."""
    ent = spec.entities[entity]
    columns = {c for c, t in ent.logical_types.items() if t == "Datetime"} | ({ent.time_index} - {None})
    for col in columns & set(df.columns):
        try:
            df[col] = pd.to_datetime(df[col])
        except (ValueError, TypeError) as exc:
            raise DataSourceError(f"entity {entity!r}: column {col!r} is not a date/time ({exc})") from None
    return df


def validate_tables(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> None:
    """Stop on an empty table, a missing column, a duplicate key or keys that do not join."""
    for entity, df in tables.items():
        missing = spec_columns(spec, entity) - set(df.columns)
        if missing:
            raise DataSourceError(
                f"entity {entity!r}: the query result lacks column(s) {sorted(missing)} named by the spec; "
                f"columns returned: {list(df.columns)}"
            )
        if df.empty:
            raise DataSourceError(f"entity {entity!r}: the extract is empty (query {spec.entities[entity].query})")
        index = spec.entities[entity].index
        if df[index].isna().any() or df[index].duplicated().any():
            raise DataSourceError(f"entity {entity!r}: index column {index!r} has nulls or duplicates")
    for rel in spec.relationships:
        parent_keys = tables[rel.parent][rel.parent_key]
        child_keys = tables[rel.child][rel.child_key].dropna()
        try:
            matched = child_keys.isin(parent_keys)
        except TypeError:
            matched = pd.Series(False, index=child_keys.index)
        if len(child_keys) and not matched.any():
            raise DataSourceError(
                f"relationship {rel.child}.{rel.child_key} -> {rel.parent}.{rel.parent_key}: no key matches "
                f"(e.g. {child_keys.iloc[0]!r} vs {parent_keys.iloc[0]!r}, dtypes {child_keys.dtype} / "
                f"{parent_keys.dtype}); check the spec's keys and the queries' column types"
            )
        orphans = int((~matched).sum())
        if orphans:
            log.warning("relationship %s->%s: %d child rows have no parent", rel.parent, rel.child, orphans)


def extract_tables(url: str, spec: DatasetSpec) -> dict[str, pd.DataFrame]:
    """Check every query, then run them on one read-only connection and validate the results as a whole."""
    queries = checked_queries(spec, _backend(url))
    engine = read_only_engine(url)
    tables: dict[str, pd.DataFrame] = {}
    try:
        with connect(engine) as conn:
            for entity, sql in queries.items():
                started = time.perf_counter()
                tables[entity] = read_entity(conn, spec, entity, sql)
                log.info("extracted %-14s %8d rows in %.1fs", entity, len(tables[entity]), time.perf_counter() - started)
    finally:
        engine.dispose()
    validate_tables(spec, tables)
    return tables
