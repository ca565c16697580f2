"""Refuse any extract query that is not exactly one read-only SELECT, using a real SQL parser.

The extract runs the spec's SQL with whatever rights the database URL carries, so a spec file is
code that can drop tables. The rule is checked on the parsed statement (sqlglot, in the dialect of
the URL's backend), never with a regex: one statement whose root is a query (SELECT, WITH ...
SELECT, UNION / INTERSECT / EXCEPT of selects), with no writing node anywhere in its tree (a CTE
holding a DELETE, SELECT ... INTO, row locks). The read-only transaction of the extract is the
second line of defence, for anything the parser could be fooled by.

Messages give the position of a parse error, never the query text: the text may not be SQL at all.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

# SQLAlchemy backend name -> sqlglot dialect, where they differ
_DIALECT_NAMES = {"postgresql": "postgres", "mariadb": "mysql", "mssql": "tsql"}
# nodes that write, change the schema, run arbitrary commands or lock rows, wherever they appear
_WRITING_NODES = (
    exp.DML,  # INSERT, UPDATE, DELETE, MERGE, COPY
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.LoadData,
    exp.Into,
    exp.Lock,
)


class UnsafeQueryError(ValueError):
    """The SQL is not exactly one read-only SELECT; the message says why, without the query text."""


def sqlglot_dialect(backend: str) -> str | None:
    """The sqlglot dialect for a SQLAlchemy backend name, or None (generic SQL) for one sqlglot lacks."""
    name = _DIALECT_NAMES.get(backend, backend)
    return name if name.upper() in sqlglot.Dialects.__members__ else None


def check_read_only(sql: str, dialect: str | None) -> None:
    """Raise `UnsafeQueryError` unless `sql` is a single statement that only reads."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        raise UnsafeQueryError(f"not valid {dialect or 'generic'} SQL{where} ({first.get('description', 'parse error')})") from None
    if len(statements) != 1:
        raise UnsafeQueryError(f"holds {len(statements)} SQL statements; exactly one SELECT is allowed")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise UnsafeQueryError(f"is not a SELECT but {statement.key.upper()}; only a single SELECT is allowed")
    writer = next(statement.find_all(*_WRITING_NODES), None)
    if writer is not None:
        raise UnsafeQueryError(f"contains a writing or locking clause ({writer.key.upper()}); only a plain SELECT is allowed")
