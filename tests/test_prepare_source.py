"""The default `make run` path: with no source database, `prepare_source` writes the synthetic one once."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.config import load_config
from pipeline.data.db import DataSourceError
from pipeline.steps import prepare_source


def test_a_missing_default_source_is_generated_once_then_reused(tmp_path):
    cfg = load_config(overrides={"paths": {"work_dir": str(tmp_path)}, "data": {"synthetic": {"customers": 50}}}, environ={})
    database = tmp_path / "data" / "synthetic_adventureworks.db"
    assert cfg.data.url == f"sqlite:///{database}" and not database.exists()

    first = prepare_source(cfg)
    assert first["generated"] is True and database.stat().st_size > 0
    with sqlite3.connect(database) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}
    assert rows == first["rows"] and all(count > 0 for count in rows.values())
    assert 0 < len({c for (c,) in sqlite3.connect(database).execute("SELECT CustomerID FROM Customer")}) <= 50

    modified = database.stat().st_mtime_ns
    assert prepare_source(cfg) == {"generated": False} and database.stat().st_mtime_ns == modified


def test_a_missing_source_is_an_error_when_generation_is_off(tmp_path):
    url = f"sqlite:///{tmp_path}/absent.db"
    cfg = load_config(overrides={"data": {"url": url, "generate_if_missing": False}}, environ={})
    with pytest.raises(DataSourceError, match="does not exist and data.generate_if_missing is false"):
        prepare_source(cfg)
    assert not (tmp_path / "absent.db").exists()
