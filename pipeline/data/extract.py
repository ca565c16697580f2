"""Extract the spec's tables from any SQLAlchemy database and check them before any expensive work."""

from __future__ import annotations

import logging
import time
import warnings
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
    names = {ent.index, *ent.logical_types, *ent.drop, *ent.snapshot, *ent.categories}
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
    return parsed.set(database=database, query={**parsed.query, "mode": "ro", "uri": "true"}).render_as_string(hide_password=False)


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
                f"spec {spec.name!r}, entity {entity!r}: query file {spec.query_path(entity)} {exc} (the extract only reads the source)"
            ) from None
        queries[entity] = sql
    return queries


def backend_name(url: str) -> str:
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
        log.warning(
            "no read-only session for %s databases: only the SQL check guards the source; use a database user that can only read",
            engine.dialect.name,
        )
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


EXAMPLES = 5  # example keys shown per data problem
# Epoch numbers as dates: the unit whose range of plausible values (years 1973-2286) holds them
EPOCH_UNITS = (("s", 1e8, 1e10), ("ms", 1e11, 1e13), ("us", 1e14, 1e16), ("ns", 1e17, 1e19))
PLAUSIBLE_YEARS = (1900, 2200)


def examples(values: pd.Series) -> str:
    shown = [repr(v.item() if hasattr(v, "item") else v) for v in values.head(EXAMPLES)]
    return ", ".join(shown) + (", ..." if len(values) > EXAMPLES else "")


def _parse_times(df: pd.DataFrame, spec: DatasetSpec, entity: str) -> pd.DataFrame:
    """Datetime columns as datetime64 whatever the driver returns (SQLite returns text).

    Epoch numbers are converted in the unit their magnitude implies (with a warning naming it),
    never read as nanoseconds since 1970; text that is no date, and dates outside 1900-2200, stop
    the run with the column, the count and example rows.
    """
    ent = spec.entities[entity]
    columns = {c for c, t in ent.logical_types.items() if t == "Datetime"} | ({ent.time_index} - {None})
    for col in sorted(columns & set(df.columns)):
        df[col] = _to_datetime(df[col], f"entity {entity!r}, column {col!r}", df[ent.index])
    return df


def _to_datetime(values: pd.Series, where: str, keys: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        magnitude = values.dropna().abs().median() if values.notna().any() else 0
        unit = next((u for u, low, high in EPOCH_UNITS if low <= magnitude < high), None)
        if unit is None:
            raise DataSourceError(f"{where}: holds numbers ({examples(values.dropna())}), not dates, and no epoch unit fits them")
        log.warning("%s: numbers read as epoch %s (e.g. %s)", where, unit, examples(values.dropna()))
        parsed = pd.to_datetime(values, unit=unit)
    else:
        try:
            with warnings.catch_warnings():  # "could not infer format": then it parses value by value, as wanted
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(values)  # one inferred format: fast
        except (ValueError, TypeError, OverflowError):
            parsed = pd.to_datetime(values, errors="coerce", format="mixed")  # value by value, to name the bad ones
        bad = parsed.isna() & values.notna()
        if bad.any():
            raise DataSourceError(
                f"{where}: {int(bad.sum())} value(s) are not dates, e.g. {examples(values[bad])} (rows {examples(keys[bad])})"
            )
    years = parsed.dt.year
    odd = years.notna() & ((years < PLAUSIBLE_YEARS[0]) | (years > PLAUSIBLE_YEARS[1]))
    if odd.any():
        raise DataSourceError(
            f"{where}: {int(odd.sum())} date(s) outside {PLAUSIBLE_YEARS[0]}-{PLAUSIBLE_YEARS[1]}, e.g. {examples(parsed[odd])} (rows {examples(keys[odd])})"
        )
    return parsed


def validate_tables(spec: DatasetSpec, tables: dict[str, pd.DataFrame]) -> None:
    """Stop on an empty table, a missing column, null or duplicate keys, target rows without a
    customer, or keys that do not join; warn on orphans. Each message names the table, the column,
    the count and example keys, before labels are computed."""
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
        if df[index].isna().any():
            raise DataSourceError(f"entity {entity!r}: index column {index!r} is null in {int(df[index].isna().sum())} row(s)")
        dupes = df[index][df[index].duplicated()]
        if len(dupes):
            raise DataSourceError(
                f"entity {entity!r}: index column {index!r} repeats {len(dupes)} key(s), e.g. {examples(dupes.drop_duplicates())}"
            )
        check_categories(spec, entity, df)
    target, key = spec.entities[spec.target.entity], spec.target.customer_key
    orders = tables[spec.target.entity]
    no_customer = orders[key].isna()
    if no_customer.any():
        raise DataSourceError(
            f"entity {spec.target.entity!r}: {int(no_customer.sum())} row(s) have no {key} and cannot be labelled "
            f"(they would all look like churn), e.g. {target.index} {examples(orders.loc[no_customer, target.index])}; "
            "filter them out in the query or fix the source"
        )
    for rel in spec.relationships:
        parent_keys = tables[rel.parent][rel.parent_key]
        child = tables[rel.child]
        child_keys = child[rel.child_key].dropna()
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
        orphans = child_keys[~matched]
        if len(orphans):
            log.warning(
                "relationship %s.%s -> %s: %d row(s) point to no %s, e.g. %s %s",
                rel.child,
                rel.child_key,
                rel.parent,
                len(orphans),
                rel.parent,
                rel.child_key,
                examples(orphans.drop_duplicates()),
            )


def source_fingerprint(url: str, spec: DatasetSpec) -> dict[str, object]:
    """What tells "the source holds the same data" cheaply, for the step cache (`pipeline.cache`).

    A SQLite file: its size and modification time (any write changes them). A server: per entity,
    the row count and latest time index of its query, computed by the database. Not a content hash:
    an UPDATE that changes neither leaves a server source's fingerprint unchanged (`run --no-cache`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        stat = Path(parsed.database).expanduser().resolve().stat()
        return {"sqlite_size": stat.st_size, "sqlite_mtime_ns": stat.st_mtime_ns}
    queries = checked_queries(spec, backend_name(url))
    engine = read_only_engine(url)
    fingerprint: dict[str, object] = {}
    try:
        with connect(engine) as conn:
            for entity, sql in queries.items():
                time_index = spec.entities[entity].time_index
                latest = f"MAX(q.{time_index})" if time_index else "NULL"
                row = conn.execute(sa.text(f"SELECT COUNT(*), {latest} FROM ({sql.strip().rstrip(';')}) q")).one()
                fingerprint[entity] = [int(row[0]), str(row[1])]
    finally:
        engine.dispose()
    return fingerprint


def _as_code(value: object) -> str:
    """'5' for 5, 5.0 and '5': an integer code read as a float (its column has NULLs) is the same code."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_categories(spec: DatasetSpec, entity: str, df: pd.DataFrame) -> None:
    """Values outside the spec's declared `categories` of a column: a warning with count and example
    keys (a new code the model has never seen), or an error when the spec sets `strict_categories`."""
    ent = spec.entities[entity]
    for column, allowed in ent.categories.items():
        values = df[column].dropna()
        unknown = values[~values.map(_as_code).isin([_as_code(v) for v in allowed])]
        if unknown.empty:
            continue
        message = (
            f"entity {entity!r}, column {column!r}: {len(unknown)} value(s) outside the spec's categories, "
            f"e.g. {examples(unknown.drop_duplicates())} ({ent.index} {examples(df.loc[unknown.index, ent.index])})"
        )
        if spec.strict_categories:
            raise DataSourceError(message + "; add them to the spec's categories or fix the source")
        log.warning("%s", message)


def extract_tables(url: str, spec: DatasetSpec) -> dict[str, pd.DataFrame]:
    """Check every query, then run them on one read-only connection and validate the results as a whole."""
    queries = checked_queries(spec, backend_name(url))
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
