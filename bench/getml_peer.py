"""getML FastProp + its XGBoost predictor on the rows `bench.peer` exported: the peer, measured here.

Runs in the getML virtual environment (`.venv-getml`, from bench/getml-requirements.lock: getML
pins numpy < 2.3, pandas < 2.3, pyarrow < 20 and rich 13, which the project's lock cannot hold),
so it imports nothing from the pipeline. Reads population.parquet (one row per labelled order:
its own columns, the label and the part it belongs to in our split), orders.parquet and
lines.parquet, and roles.json; writes the test predictions and the timings as JSON.

Point in time: both peripheral tables join the population on CustomerID with
`time_stamps="OrderDate"`, so an order sees only rows whose time stamp is at or before its own.
The time stamps are the pipeline's tie-broken order instants (several orders of one customer at
the same time are a microsecond apart in order-key order), so an order never sees a same-day order
that comes after it, exactly the rows our features see.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import getml
import pandas as pd


def launch(home: Path) -> None:
    getml.engine.launch(
        home_directory=str(home), in_memory=True, launch_browser=False, allow_push_notifications=False, quiet=True, log=False
    )
    getml.engine.set_project("churn_bench")


def fit_and_predict(data: Path, threads: int) -> dict:
    roles = json.loads((data / "roles.json").read_text())
    frames = {name: pd.read_parquet(data / f"{name}.parquet") for name in roles}
    started = time.perf_counter()
    tables = {name: getml.data.DataFrame.from_pandas(frame, name=name, roles=roles[name]) for name, frame in frames.items()}
    parts = frames["population"]["part"]
    population = tables["population"]
    container = getml.data.Container(population=population, split=population["part"])
    container.add(orders=tables["orders"], lines=tables["lines"])
    model = getml.data.DataModel(population=population.to_placeholder("population"))
    model.add(getml.data.to_placeholder(orders=tables["orders"], lines=tables["lines"]))
    model.population.join(model.orders, on="CustomerID", time_stamps="OrderDate")
    model.population.join(model.lines, on="CustomerID", time_stamps="OrderDate")
    pipe = getml.pipeline.Pipeline(
        data_model=model,
        feature_learners=[getml.feature_learning.FastProp(loss_function="CrossEntropyLoss", num_threads=threads)],
        predictors=[getml.predictors.XGBoostClassifier(n_jobs=threads)],
        include_categorical=True,
    )
    loaded = time.perf_counter()
    pipe.fit(container.train, validation_table=container.valid)
    fitted = time.perf_counter()
    proba = pipe.predict(container.test)[:, 0]
    return {
        "features": len(pipe.features),
        "load_seconds": loaded - started,
        "fit_seconds": fitted - loaded,
        "predict_seconds": time.perf_counter() - fitted,
        "test_index": frames["population"].index[parts == "test"].tolist(),
        "test_proba": proba.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True, help="getML's home folder (engine state, logs)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    launch(args.home)
    try:
        result = fit_and_predict(args.data, args.threads)
    finally:
        getml.engine.shutdown()
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
