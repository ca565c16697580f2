"""The extract only reads: a spec query that writes is refused before connecting, a write that got
past the SQL check is refused by the read-only connection, and query files stay inside the spec folder.

Real SQLite, PostgreSQL and MariaDB, each with a user that could write (see tests/dbfixtures.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline.data.db import DataSourceError
from pipeline.data.extract import (
    checked_queries,
    extract_tables,
    read_entity,
    read_only_engine,
)
from pipeline.spec import SpecError, load_spec
from tests.dbfixtures import *  # noqa: F403  (postgres_url, mysql_url)

ROWS = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "cust": [10, 10, 11],
        "t": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01"]),
        "v": [1.5, 2.5, 3.5],
    }
)
WRITES = {
    "drop": "DROP TABLE {table}",
    "update": "UPDATE {table} SET v = 0",
    "insert": "INSERT INTO {table} (id, cust, t, v) VALUES (9, 9, '2020-04-01', 9)",
    "delete in a CTE": "WITH gone AS (DELETE FROM {table} RETURNING id) SELECT id FROM gone",
    "select into": "SELECT * INTO {table}_copy FROM {table}",
    "two statements": "SELECT id, cust, t, v FROM {table}; DROP TABLE {table}",
}
UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-folder/source.db",
    "postgresql": "postgresql+psycopg2://u:pw@127.0.0.1:1/x",
    "mariadb": "mysql+pymysql://u:pw@127.0.0.1:1/x",
}


@contextmanager
def writable_table(url: str) -> Iterator[str]:
    """A fresh table holding ROWS, written with the URL's (writing) user; dropped afterwards."""
    table = f"ro_guard_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ROWS.to_sql(table, conn, index=False)
    try:
        yield table
    finally:
        with engine.begin() as conn:
            for name in (table, f"{table}_copy", f"{table}_new"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        engine.dispose()


def assert_unchanged(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            stored = pd.read_sql(sa.text(f"SELECT id, v FROM {table} ORDER BY id"), conn)
    finally:
        engine.dispose()
    assert {f"{table}_copy", f"{table}_new"}.isdisjoint(names)
    pd.testing.assert_frame_equal(stored, ROWS[["id", "v"]], check_dtype=False)


def write_spec(folder: Path, query: str = "items.sql", sql: str | None = None) -> str:
    """A one-entity spec in `folder` whose entity `items` reads `query` (written with `sql` if given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(
        "name: guard\ntarget: {entity: items, customer_key: cust, time_index: t}\n"
        f"entities:\n  items: {{query: '{query}', index: id, time_index: t}}\n"
    )
    if sql is not None:
        (folder / query).write_text(sql)
    return str(folder / "spec.yaml")


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def source(request, tmp_path_factory) -> Iterator[tuple[str, str, str]]:
    """(backend, url, table): a table in a real database that the URL's user can write."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('readonly')}/source.db"
    else:
        url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    with writable_table(url) as table:
        yield request.param, url, table


@pytest.mark.parametrize("write", WRITES)
def test_writing_query_is_refused_before_connecting(source, write, tmp_path):
    backend, url, table = source
    spec = load_spec(write_spec(tmp_path, sql=WRITES[write].format(table=table)))
    with pytest.raises(SpecError, match=r"spec 'guard', entity 'items': query file .*items\.sql") as err:
        extract_tables(url, spec)
    assert "only" in str(err.value)
    assert_unchanged(url, table)
    with pytest.raises(SpecError):  # the check needs no server: nothing was connected to
        extract_tables(UNREACHABLE[backend], spec)


def test_select_still_extracts(source, tmp_path):
    _, url, table = source
    spec = load_spec(write_spec(tmp_path, sql=f"WITH x AS (SELECT id, cust, t, v FROM {table}) SELECT * FROM x"))
    items = extract_tables(url, spec)["items"]
    assert items.sort_values("id")["v"].tolist() == ROWS["v"].tolist()
    assert pd.api.types.is_datetime64_any_dtype(items["t"])


@pytest.mark.parametrize("write", ["DROP TABLE {table}", "UPDATE {table} SET v = 0", "CREATE TABLE {table}_new (x INT)"])
def test_read_only_connection_refuses_what_the_check_would_have_stopped(source, write, tmp_path):
    _, url, table = source
    spec = load_spec(write_spec(tmp_path, sql="SELECT 1"))
    engine = read_only_engine(url)
    try:
        with engine.connect() as conn, pytest.raises(DataSourceError, match=r"(?i)read.?only"):
            read_entity(conn, spec, "items", write.format(table=table))
    finally:
        engine.dispose()
    assert_unchanged(url, table)


def test_commit_inside_one_query_string_does_not_leave_read_only(postgres_url, tmp_path):
    """psycopg2 sends several statements at once; the one after a COMMIT must still be read-only."""
    spec = load_spec(write_spec(tmp_path, sql="SELECT 1"))
    with writable_table(postgres_url) as table:
        engine = read_only_engine(postgres_url)
        try:
            with engine.connect() as conn, pytest.raises(DataSourceError, match="read-only transaction"):
                read_entity(conn, spec, "items", f"SELECT 1; COMMIT; DROP TABLE {table}")
        finally:
            engine.dispose()
        assert_unchanged(postgres_url, table)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql", "mariadb"])
def test_packaged_queries_pass_the_check(backend):
    spec = load_spec("adventureworks")
    assert set(checked_queries(spec, backend)) == set(spec.entities)


def outside_file(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.sql"
    secret.parent.mkdir()
    secret.write_text("SELECT 'TOPSECRET-CONTENT' AS id")
    return secret


@pytest.mark.parametrize("kind", ["parent", "etc-passwd", "absolute", "symlink", "not-sql"])
def test_query_path_outside_the_spec_folder_is_refused_unread(kind, tmp_path, capsys, caplog):
    secret = outside_file(tmp_path)
    folder = tmp_path / "spec"
    folder.mkdir()
    query = {
        "parent": "../outside/secret.sql",
        "etc-passwd": "../" * len(folder.parts) + "etc/passwd",
        "absolute": str(secret),
        "symlink": "link.sql",
        "not-sql": "notes.txt",
    }[kind]
    if kind == "symlink":
        (folder / "link.sql").symlink_to(secret)
    if kind == "not-sql":
        (folder / "notes.txt").write_text("TOPSECRET-CONTENT")
    with pytest.raises(SpecError, match=r"entity 'items': query .* must be a relative path to a \.sql file") as err:
        load_spec(write_spec(folder, query=query))
    assert query in str(err.value)
    shown = str(err.value) + "".join(capsys.readouterr()) + caplog.text
    assert "TOPSECRET" not in shown and "root:" not in shown


def test_symlink_inside_the_spec_folder_is_followed(tmp_path):
    folder = tmp_path / "spec"
    write_spec(folder, query="real.sql", sql="SELECT 1 AS id")
    (folder / "items.sql").symlink_to(folder / "real.sql")
    assert load_spec(write_spec(folder)).sql("items") == "SELECT 1 AS id"


def test_unparseable_query_is_named_by_position_not_text(tmp_path):
    spec = load_spec(write_spec(tmp_path, sql="TOPSECRET: not sql at all"))
    with pytest.raises(SpecError, match=r"entity 'items'.*not valid sqlite SQL at line 1") as err:
        checked_queries(spec, "sqlite")
    assert "TOPSECRET" not in str(err.value)
