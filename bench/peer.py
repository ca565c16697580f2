"""The getML peer on exactly our rows: export a quality run's tables and split, run
`bench/getml_peer.py` in the getML environment, score its test predictions like ours.

The population is the run's labelled orders with their own columns and their customer's columns,
each tagged with its part (train / valid / test) in the run's split, so getML trains, early-stops
and is tested on the same orders as our model. The peripheral tables are all orders and all order
lines (with their product's columns), stamped with the pipeline's tie-broken order instants.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench import harness
from pipeline import steps
from pipeline.evaluation import score
from pipeline.features import _with_instants
from pipeline.spec import load_spec

log = logging.getLogger(__name__)
GETML_PYTHON = Path(__file__).resolve().parent.parent / ".venv-getml" / "bin" / "python"
ORDER_COLUMNS = ["CustomerID", "OrderDate", "SubTotal", "TaxAmt", "Freight", "TotalDue", "OnlineOrderFlag"]
CATEGORIES = ["SalesPersonID", "TerritoryID", "ShipMethodID", "CustomerType", "CountryRegionCode", "PersonType", "EmailPromotion"]
LINE_NUMBERS = ["OrderQty", "UnitPrice", "UnitPriceDiscount", "LineTotal", "ListPrice", "StandardCost", "DaysToManufacture"]
LINE_CATEGORIES = ["ProductID", "SpecialOfferID", "Color", "ProductLine", "Class", "Style", "Size"]


def available() -> bool:
    return GETML_PYTHON.exists()


def export(cfg, run_id: str, out: Path) -> None:
    """population / orders / lines parquet files and their getML roles, from the run's artifacts."""
    spec = load_spec(cfg.data.spec)
    art = steps.run_artifacts(cfg, run_id)
    tables = _with_instants(spec, steps.load_tables(spec, art))
    orders = tables["orders"].merge(tables["customers"].drop(columns=["TerritoryID"]), on="CustomerID", how="left")
    part = pd.concat([pd.Series(p, index=steps.load_part(art, p)[0].index) for p in ("train", "valid", "test")])
    labels = art.get_frame("labels").set_index("SalesOrderID")["churn"]
    population = orders.set_index("SalesOrderID").loc[part.index].assign(churn=labels.loc[part.index], part=part)
    lines = (
        tables["order_details"].drop(columns=["OrderDate"]).merge(orders[["SalesOrderID", "CustomerID", "OrderDate"]], on="SalesOrderID")
    )
    lines = lines.merge(tables["products"], on="ProductID", how="left")
    as_text = {c: population[c].astype("string") for c in CATEGORIES}
    frames = {
        "population": population[ORDER_COLUMNS + ["churn", "part"]].assign(**as_text),
        "orders": orders[ORDER_COLUMNS].assign(**{c: orders[c].astype("string") for c in CATEGORIES}),
        "lines": lines[["CustomerID", "OrderDate", *LINE_NUMBERS]].assign(**{c: lines[c].astype("string") for c in LINE_CATEGORIES}),
    }
    numbers = ["SubTotal", "TaxAmt", "Freight", "TotalDue", "OnlineOrderFlag"]
    roles = {
        "population": {
            "join_key": ["CustomerID"],
            "time_stamp": ["OrderDate"],
            "target": ["churn"],
            "numerical": numbers,
            "categorical": CATEGORIES,
            "unused_string": ["part"],
        },
        "orders": {"join_key": ["CustomerID"], "time_stamp": ["OrderDate"], "numerical": numbers, "categorical": CATEGORIES},
        "lines": {"join_key": ["CustomerID"], "time_stamp": ["OrderDate"], "numerical": LINE_NUMBERS, "categorical": LINE_CATEGORIES},
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet")
    (out / "roles.json").write_text(json.dumps(roles))


def measure(overrides: dict[str, Any], run_id: str, work_dir: Path) -> dict[str, Any]:
    """getML on the rows of quality run `run_id`: test AUC on our test rows, features, wall times."""
    cfg = harness.config(overrides)
    exchange = work_dir / f"getml-{run_id}"
    export(cfg, run_id, exchange)
    started = time.perf_counter()
    subprocess.run(
        [
            str(GETML_PYTHON),
            str(Path(__file__).with_name("getml_peer.py")),
            "--data",
            str(exchange),
            "--home",
            str(work_dir / "getml-home"),
            "--out",
            str(exchange / "result.json"),
            "--threads",
            str(os.cpu_count() or 1),
        ],
        check=True,
    )
    wall = time.perf_counter() - started
    result = json.loads((exchange / "result.json").read_text())
    y_test = steps.load_part(steps.run_artifacts(cfg, run_id), "test")[1]
    proba = pd.Series(result["test_proba"], index=result["test_index"]).loc[y_test.index]
    return {
        "test_auc": score("roc_auc", y_test, proba.to_numpy()),
        "test_rows": len(y_test),
        "features": result["features"],
        "fit_seconds": round(result["fit_seconds"], 1),
        "wall_seconds": round(wall, 1),
    }
