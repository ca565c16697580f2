"""Spec `snapshot` columns (today's values, not values as of each order): validated, warned about once, droppable."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import steps
from pipeline.config import load_config
from pipeline.data.db import DataSourceError
from pipeline.spec import PACKAGED, SpecError, load_spec
from tests.helpers import write_small_source

AW_SNAPSHOT = {"customers": ["PersonType", "EmailPromotion"], "products": ["ListPrice", "StandardCost"]}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/small.db"
    write_small_source(url, customers=80)
    return url


def spec_copy(tmp_path: Path, edit) -> str:
    """The packaged AdventureWorks spec copied to tmp_path, its YAML changed by `edit(raw)`."""
    folder = tmp_path / "spec"
    shutil.copytree(PACKAGED / "adventureworks", folder)
    raw = yaml.safe_load((folder / "spec.yaml").read_text())
    edit(raw)
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    return str(folder / "spec.yaml")


def config(tmp_path: Path, source: str, **features):
    return load_config(
        overrides={
            "paths": {"work_dir": str(tmp_path / "work")},
            "data": {"url": source, "generate_if_missing": False},
            "labels": {"horizon_days": 90},
            "features": {"agg_primitives": ["count", "mean", "max"], "trans_primitives": [], "max_depth": 2, **features},
            "split": {"min_rows": 20},
        }
    )


def test_adventureworks_marks_its_current_value_columns() -> None:
    spec = load_spec("adventureworks")
    assert {e: ent.snapshot for e, ent in spec.entities.items() if ent.snapshot} == AW_SNAPSHOT


@pytest.mark.parametrize(
    "entity, column",
    [("orders", "CustomerID"), ("products", "ProductID"), ("orders", "OrderDate"), ("products", "ProductSubcategoryID")],
    ids=["customer key", "index", "time index", "relationship key"],
)
def test_snapshot_keys_are_refused_with_the_entity_named(tmp_path, entity, column) -> None:
    path = spec_copy(tmp_path, lambda raw: raw["entities"][entity].update(snapshot=[column]))
    with pytest.raises(SpecError, match=rf"entity '{entity}': snapshot column\(s\) \['{column}'\] are keys or the time index"):
        load_spec(path)


def test_snapshot_column_missing_from_the_query_stops_the_extract(tmp_path, source) -> None:
    path = spec_copy(tmp_path, lambda raw: raw["entities"]["customers"]["snapshot"].append("DateFirstPurchase"))
    cfg = load_config(overrides={"paths": {"work_dir": str(tmp_path)}, "data": {"url": source, "spec": path}})
    with pytest.raises(DataSourceError, match=r"entity 'customers': the query result lacks column\(s\) \['DateFirstPurchase'\]"):
        steps.extract(cfg, steps.run_artifacts(cfg, "missing"))


def test_kept_by_default_with_one_warning_listing_them(tmp_path, source, caplog) -> None:
    cfg = config(tmp_path, source)
    art = steps.run_artifacts(cfg, "kept")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        steps.extract(cfg, art)
    warnings = [r.getMessage() for r in caplog.records if "snapshot" in r.getMessage()]
    assert len(warnings) == 1
    assert all(f"{e}.{c}" in warnings[0] for e, cols in AW_SNAPSHOT.items() for c in cols)
    for entity, cols in AW_SNAPSHOT.items():
        assert set(cols) <= set(art.get_frame(f"tables/{entity}").columns)


def test_drop_snapshot_removes_them_before_features(tmp_path, source, caplog) -> None:
    cfg = config(tmp_path, source, drop_snapshot=True)
    art = steps.run_artifacts(cfg, "dropped")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        steps.extract(cfg, art)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "snapshot" in r.getMessage()]
    for entity, cols in AW_SNAPSHOT.items():
        assert not set(cols) & set(art.get_frame(f"tables/{entity}").columns)
    steps.make_labels(cfg, art)
    steps.make_features(cfg, art)
    names = list(art.get_frame("features").columns)
    assert any("customers." in n for n in names) and any("products." in n for n in names)  # the entities still count
    assert [n for n in names if any(c in n for cols in AW_SNAPSHOT.values() for c in cols)] == []
