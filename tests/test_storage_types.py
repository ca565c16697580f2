"""Every logical type of a dataset spec survives the artifact store, and declared categoricals reach the model.

Parquet keeps dictionary encoding only for text, so a `category` column with integer
codes (SalesPersonID, TerritoryID, EmailPromotion...) used to come back as plain numbers
and reach LightGBM as an ordered quantity.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from pipeline.storage import LocalStore, RunArtifacts, frame_from_bytes, frame_to_bytes


def typed_frame() -> pd.DataFrame:
    """One column per woodwork logical type the specs use, typed by woodwork as featuretools types them."""
    import woodwork.logical_types as lt

    frame = pd.DataFrame(
        {
            "integer": [1, 2, 3, 4],
            "integer_nullable": [1, None, 3, 4],
            "double": [1.5, np.nan, -2.25, 1e300],
            "boolean": [True, False, True, True],
            "boolean_nullable": [True, None, False, True],
            "categorical_int": [275, 276, 275, 290],
            "categorical_int_with_nulls": [275.0, np.nan, 276.0, 275.0],
            "categorical_str": ["store", "individual", None, "store"],
            "ordinal": ["low", "high", "mid", None],
            "datetime": pd.to_datetime(["2011-05-31 00:00:00", "2014-06-30 13:45:01", None, "2012-02-29 00:00:00"]),
            "text": ["a long comment", None, "another one", ""],
        },
        index=pd.Index([43659, 43660, 43661, 43662], name="SalesOrderID"),
    )
    frame.ww.init(
        logical_types={
            "integer": lt.Integer,
            "integer_nullable": lt.IntegerNullable,
            "double": lt.Double,
            "boolean": lt.Boolean,
            "boolean_nullable": lt.BooleanNullable,
            "categorical_int": lt.Categorical,
            "categorical_int_with_nulls": lt.Categorical,
            "categorical_str": lt.Categorical,
            "ordinal": lt.Ordinal(order=["low", "mid", "high"]),
            "datetime": lt.Datetime,
            "text": lt.NaturalLanguage,
        }
    )
    # an unused category must survive too (a value seen only in other rows or other parts)
    frame["categorical_int"] = frame["categorical_int"].cat.add_categories([999])
    return frame


def assert_same_frame(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    for col, dtype in frame.dtypes.items():
        assert back[col].dtype == dtype, col
        if isinstance(dtype, pd.CategoricalDtype):  # CategoricalDtype equality ignores order when unordered
            pd.testing.assert_index_equal(back[col].cat.categories, dtype.categories, exact=True)
            assert back[col].cat.ordered == dtype.ordered, col


def test_frame_has_the_dtypes_the_test_is_about() -> None:
    frame = typed_frame()
    assert frame["categorical_int"].cat.categories.dtype == "int64"
    assert frame["categorical_int_with_nulls"].cat.categories.dtype == "float64"
    assert frame["ordinal"].cat.ordered and list(frame["ordinal"].cat.categories) == ["low", "mid", "high"]
    assert str(frame["integer_nullable"].dtype) == "Int64" and str(frame["boolean_nullable"].dtype) == "boolean"
    assert str(frame["text"].dtype) == "string"


def test_local_store_round_trip_keeps_every_logical_type(tmp_path) -> None:
    run = RunArtifacts(LocalStore(tmp_path), "run-1")
    frame = typed_frame()
    run.put_frame("features", frame)
    assert_same_frame(run.get_frame("features"), frame)


def test_files_stay_plain_parquet_for_other_readers() -> None:
    frame = typed_frame()
    plain = pd.read_parquet(io.BytesIO(frame_to_bytes(frame)))
    assert plain["categorical_int"].tolist() == [275, 276, 275, 290]  # values, not codes
    assert plain["categorical_str"].tolist()[:2] == ["store", "individual"]


def test_frames_without_categoricals_are_unchanged() -> None:
    frame = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    assert_same_frame(frame_from_bytes(frame_to_bytes(frame)), frame)


# --- the whole path: extract -> labels -> features -> split + encode -> LightGBM --------------


@pytest.fixture(scope="module")
def encoded_run(tmp_path_factory):
    from pipeline import steps
    from pipeline.config import load_config
    from tests.helpers import write_small_source

    work = tmp_path_factory.mktemp("work")
    source = f"sqlite:///{work}/source.db"
    write_small_source(source, customers=120)
    cfg = load_config(
        overrides={
            "paths": {"work_dir": str(work)},
            "data": {"url": source, "generate_if_missing": False},
            "labels": {"horizon_days": 90},
            "features": {"agg_primitives": ["count", "mean"], "trans_primitives": [], "max_depth": 1},
            "split": {"min_rows": 20},
        }
    )
    art = steps.run_artifacts(cfg, "types")
    steps.extract(cfg, art)
    steps.make_labels(cfg, art)
    steps.make_features(cfg, art)
    steps.split_and_encode(cfg, art)
    return cfg, art


def declared_categoricals_in(columns: list[str]) -> list[str]:
    """Feature columns that are a declared Categorical of the orders or one of its parents, as is."""
    from pipeline.spec import load_spec

    spec = load_spec("adventureworks")
    names = [c for c, t in spec.entities["orders"].logical_types.items() if t == "Categorical"]
    names += [f"{e}.{c}" for e, ent in spec.entities.items() if e != "orders" for c, t in ent.logical_types.items() if t == "Categorical"]
    return [c for c in names if c in columns]


def test_declared_categoricals_reach_lightgbm_as_categories(encoded_run) -> None:
    from pipeline import steps
    from pipeline.models import TrainData

    _, art = encoded_run
    features = art.get_frame("features")
    declared = declared_categoricals_in(list(features.columns))
    # the AdventureWorks categoricals with numeric codes are the ones parquet used to turn into numbers
    assert {"SalesPersonID", "TerritoryID", "ShipMethodID", "customers.TerritoryID", "customers.EmailPromotion"} <= set(declared)
    assert [c for c in declared if not isinstance(features[c].dtype, pd.CategoricalDtype)] == []

    encoder = art.get_object("encoder")
    X_train, y_train = steps.load_part(art, "train")
    X_valid, y_valid = steps.load_part(art, "valid")
    used = [c for c in declared if c in encoder.columns]
    assert used and [c for c in used if not isinstance(X_train[c].dtype, pd.CategoricalDtype)] == []
    data = TrainData.build(X_train, y_train, X_valid, y_valid)
    categorical_in_lightgbm = {X_train.columns[i] for i in data.train.params["categorical_column"]}
    assert set(used) <= categorical_in_lightgbm
