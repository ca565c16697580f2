"""Step cache (`pipeline.cache`) on the local artifact store: reuse, invalidation, --no-cache.

The steps run for real on a small synthetic SQLite source. A reuse is proved three ways: the log
line says so, the step's compute function is made to fail if it is called, and the restored
bytes equal the ones the first run wrote.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pipeline import steps
from pipeline.config import load_config
from pipeline.spec import PACKAGED
from tests.helpers import write_small_source

STEPS = ("extract", "labels", "features", "split")
RUNNERS = {
    "extract": steps.extract,
    "labels": steps.make_labels,
    "features": steps.make_features,
    "split": steps.split_and_encode,
}
COMPUTE = {"extract": "_extract", "labels": "_make_labels", "features": "_make_features", "split": "_split_and_encode"}


def config(work: Path, source: str, **sections: dict[str, Any]):
    overrides = {
        "paths": {"work_dir": str(work)},
        "data": {"url": source, "generate_if_missing": False},
        "labels": {"horizon_days": 90},
        "features": {"agg_primitives": ["count", "sum", "mean"], "trans_primitives": ["month"], "max_features": 30},
        "split": {"min_rows": 20},
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(overrides=overrides)


def run_steps(cfg, run_id: str) -> dict[str, Any]:
    art = steps.run_artifacts(cfg, run_id)
    return {step: RUNNERS[step](cfg, art) for step in STEPS}


def digests(cfg, run_id: str) -> dict[str, str]:
    art = steps.run_artifacts(cfg, run_id)
    names = [*(f"tables/{e}.parquet" for e in ("orders", "order_details", "customers", "products")), "labels.parquet"]
    names += [*steps.FEATURE_OUTPUTS, *steps.SPLIT_OUTPUTS]
    return {name: hashlib.sha256(art.get_bytes(name)).hexdigest() for name in names}


def reused(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """{step: source run} of the 'reused from cache' lines logged."""
    found = {}
    for record in caplog.records:
        message = record.getMessage()
        if "reused from cache" in message:
            step = message.split(":", 1)[0]
            found[step] = message.rsplit("(run ", 1)[1].rstrip(")")
    return found


def forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make the named steps' compute functions fail: a reuse must not call them."""
    for step in names:

        def refuse(*_args, step=step):
            raise AssertionError(f"{step} was recomputed")

        monkeypatch.setattr(steps, COMPUTE[step], refuse)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('source')}/source.db"
    write_small_source(url, customers=120)
    return url


def test_a_new_run_on_unchanged_inputs_reuses_every_step(tmp_path, source, caplog, monkeypatch) -> None:
    cfg = config(tmp_path, source)
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        first = run_steps(cfg, "first")
    assert reused(caplog) == {}
    caplog.clear()
    forbid(monkeypatch, *STEPS)
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        second = run_steps(cfg, "second")
    assert reused(caplog) == dict.fromkeys(STEPS, "first")
    assert digests(cfg, "second") == digests(cfg, "first")
    assert second["labels"] == first["labels"] and second["features"] == first["features"]
    assert second["split"]["train_rows"] == first["split"]["train_rows"] > 0
    # the same run id again (a resumed run) reuses too
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(cfg, "second")
    assert reused(caplog) == dict.fromkeys(STEPS, "first")


def test_a_changed_config_section_recomputes_that_step_and_the_ones_after(tmp_path, source, caplog, monkeypatch) -> None:
    run_steps(config(tmp_path, source), "base")
    forbid(monkeypatch, "extract")
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(config(tmp_path, source, labels={"horizon_days": 60}), "horizon")
    assert reused(caplog) == {"extract": "base"}
    caplog.clear()
    forbid(monkeypatch, "extract", "labels")
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(config(tmp_path, source, features={"max_features": 20}), "fewer")
    assert reused(caplog) == {"extract": "base", "labels": "base"}


def test_a_changed_sql_file_or_source_row_recomputes_from_the_extract(tmp_path, source, caplog) -> None:
    spec_dir = tmp_path / "spec"
    shutil.copytree(PACKAGED / "adventureworks", spec_dir)
    db = tmp_path / "source.db"
    shutil.copy(source.removeprefix("sqlite:///"), db)
    url = f"sqlite:///{db}"
    cfg = config(tmp_path, url, data={"spec": str(spec_dir / "spec.yaml")})
    run_steps(cfg, "base")

    sql = spec_dir / "sql" / "products.sql"
    sql.write_text(sql.read_text() + "\n-- a comment changes the spec hash\n")
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(cfg, "sql-edited")
    assert reused(caplog) == {}

    with sqlite3.connect(db) as conn:  # one more order in the source
        conn.execute(
            "INSERT INTO SalesOrderHeader SELECT SalesOrderID + 1000000, " + _other_columns(conn) + " FROM SalesOrderHeader LIMIT 1"
        )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(cfg, "source-grown")
    assert reused(caplog) == {}
    assert steps.run_artifacts(cfg, "source-grown").get_frame("tables/orders").shape[0] == (
        steps.run_artifacts(cfg, "base").get_frame("tables/orders").shape[0] + 1
    )


def _other_columns(conn: sqlite3.Connection) -> str:
    columns = [row[1] for row in conn.execute("PRAGMA table_info(SalesOrderHeader)")]
    return ", ".join(c for c in columns if c != "SalesOrderID")


def test_cache_disabled_recomputes_and_refreshes_the_entry(tmp_path, source, caplog) -> None:
    run_steps(config(tmp_path, source), "base")
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(config(tmp_path, source, cache={"enabled": False}), "forced")
    assert reused(caplog) == {}
    assert sum("computed, cached as" in r.getMessage() for r in caplog.records) == len(STEPS)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(config(tmp_path, source), "after")
    assert reused(caplog) == dict.fromkeys(STEPS, "forced")


def test_a_damaged_cache_object_is_a_miss_not_a_wrong_result(tmp_path, source, caplog) -> None:
    cfg = config(tmp_path, source)
    run_steps(cfg, "base")
    (labels,) = (tmp_path / "artifacts" / "cache" / "labels").glob("*/labels.parquet")
    labels.write_bytes(labels.read_bytes()[:-10])
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(cfg, "again")
    assert reused(caplog) == {"extract": "base", "features": "base", "split": "base"}  # labels' key is unchanged
    assert any("damaged labels.parquet" in r.getMessage() for r in caplog.records)
    assert digests(cfg, "again")["labels.parquet"] == digests(cfg, "base")["labels.parquet"]


def test_run_no_cache_sets_cache_enabled_false() -> None:
    from pipeline.cli import build_parser, run_overrides

    args = build_parser().parse_args(["run", "--set", "labels.horizon_days=90", "--no-cache"])
    assert run_overrides(args) == {"labels": {"horizon_days": 90}, "cache": {"enabled": False}}
    assert run_overrides(build_parser().parse_args(["run"])) is None
