"""Scoring: the champion of a small training run scores the active customers, as of the latest date or a past one."""

import json
import shutil
import uuid
from pathlib import Path

import featuretools as ft
import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from pipeline import scoring
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.data.extract import extract_tables
from pipeline.features import build_entityset, point_in_time_entityset
from pipeline.labels import LABEL
from pipeline.spec import load_spec, spec_path
from pipeline.steps import artifact_store, run_artifacts
from pipeline.storage import frame_from_bytes
from tests.dbfixtures import postgres_url  # noqa: F401 - fixture
from tests.helpers import write_small_source
from tests.test_flow import overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run (few trials): its overrides, config, summary and the source tables."""
    from pipeline.flows.training import training_flow

    tmp = tmp_path_factory.mktemp("scoring")
    source = f"sqlite:///{tmp}/source.db"
    write_small_source(source, customers=150)
    over = overrides(tmp / "work", source, n_trials=3)
    summary = training_flow(overrides=over)
    cfg = load_config(overrides=over)
    spec = load_spec(cfg.data.spec)
    return {"overrides": over, "cfg": cfg, "summary": summary, "spec": spec, "tables": extract_tables(source, spec), "tmp": tmp}


def config(trained, **scoring_keys):
    return load_config(overrides={**trained["overrides"], "scoring": scoring_keys})


def test_one_row_per_active_customer_scored_like_featuretools_would(trained):
    cfg = config(trained, active_days=200)
    result = scoring.score(cfg)
    scores, orders = result.scores, trained["tables"]["orders"]
    as_of = pd.to_datetime(orders["OrderDate"]).max().normalize()
    recent = orders[pd.to_datetime(orders["OrderDate"]) > as_of + pd.Timedelta(days=1) - pd.Timedelta(days=200)]
    assert sorted(scores["customer_id"]) == sorted(recent["CustomerID"].unique())  # one row each, no other customer
    latest = orders.sort_values(["OrderDate", "SalesOrderID"]).groupby("CustomerID")["SalesOrderID"].last()
    assert (scores["order_id"].to_numpy() == latest.loc[scores["customer_id"]].to_numpy()).all()
    assert (scores["as_of"] == as_of.date().isoformat()).all() and scores["churn_probability"].is_monotonic_decreasing
    model = scoring.load_model(cfg)
    assert set(scores["risk_band"]) <= {"high", "medium", "low"}
    assert ((scores["churn_probability"] >= model.threshold) == (scores["risk_band"] == "high")).all()
    assert scores[["model_name", "model_version", "training_run_id"]].drop_duplicates().to_numpy().tolist() == [
        [cfg.tracking.registered_model, 1, trained["summary"]["mlflow_run_id"]]
    ]
    pushes = scores["reason_1_shap"].dropna()
    assert len(pushes) > 0 and (pushes > 0).all() and (scores["reason_1_shap"].fillna(0) >= scores["reason_2_shap"].fillna(0)).all()

    # a few customers recomputed by featuretools itself on the saved definitions, without tie-breaking: cutoff = the
    # order's date, when the customer's latest order of that day is (with all its earlier ones) visible
    some = scores.sample(5, random_state=0)
    cutoff = pd.DataFrame({"SalesOrderID": some["order_id"].to_numpy(), "time": pd.to_datetime(some["order_time"]).to_numpy()})
    entityset = build_entityset(trained["spec"], trained["tables"])
    matrix = ft.calculate_feature_matrix(model.features, entityset, cutoff_time=cutoff, cutoff_time_in_index=False)
    booster = mlflow.lightgbm.load_model(f"models:/{cfg.tracking.registered_model}@champion")
    X = model.encoder.transform(matrix)[list(result.features.columns)]
    expected = model.calibrator.transform(booster.predict(X))
    np.testing.assert_allclose(some["churn_probability"].to_numpy(), expected, rtol=1e-9)

    summary = result.summary
    assert summary["customers"] == len(scores) and abs(sum(summary["bands"].values()) - 1) < 1e-9
    left_out = summary["drift"]["left_out"]  # the order's date parts: they follow the scoring date
    assert left_out and set(left_out) <= {"MONTH(OrderDate)", "WEEKDAY(OrderDate)"} and not set(left_out) & set(summary["psi"])
    assert len(summary["drift"]["top_psi"]) == 5 and summary["drift"]["features"] == result.features.shape[1] - len(left_out)


def test_drift_is_measured_against_the_customers_active_when_the_training_data_ends(trained, caplog):
    from pipeline import steps

    model = scoring.load_model(trained["cfg"])
    art = run_artifacts(trained["cfg"], trained["summary"]["run_id"])
    test_start = pd.Timestamp(art.get_json("protocol")["split"]["test_start"])
    day = (test_start.normalize() - pd.Timedelta(days=1)).date().isoformat()
    assert model.drift_reference["as_of"] == day
    result = scoring.score(config(trained, as_of=day))  # the reference's own population: no drift at all
    assert result.summary["drift"]["reference_as_of"] == day and result.summary["customers"] == model.drift_reference["customers"]
    assert result.summary["drift"]["max_psi"] < 1e-9
    assert f"PSI vs the customers active on {day}" in "\n".join(scoring.summary_lines(result.summary))

    # no customer active then (a test period starting before any order): the refit rows, said in the log
    early = steps.model_drift_reference(trained["cfg"], art, model.inputs, {"split": {"test_start": "1990-01-01"}})
    assert early["as_of"] is None and set(early["features"]) == set(model.drift_reference["features"])
    assert "against the rows the model was refit on instead" in caplog.text


def test_past_as_of_reproduces_the_training_features_of_that_day(trained):
    art = run_artifacts(trained["cfg"], trained["summary"]["run_id"])
    training = pd.concat([art.get_frame(part) for part in ("train", "valid", "test")]).drop(columns=[LABEL])
    orders = trained["tables"]["orders"]
    days = np.sort(pd.to_datetime(orders["OrderDate"]).unique())
    day = pd.Timestamp(days[len(days) // 2])  # a day in the middle of the history
    result = scoring.score(config(trained, as_of=day.date().isoformat()))
    assert (pd.to_datetime(result.scores["order_time"]) <= day).all()  # nothing placed after the scoring date is used
    that_day = result.scores.loc[pd.to_datetime(result.scores["order_time"]) == day, "order_id"]
    both = [key for key in that_day if key in training.index]
    assert len(both) >= 5
    pd.testing.assert_frame_equal(result.features.loc[both], training.loc[both, result.features.columns], check_exact=False, rtol=1e-12)


def test_rerun_replaces_its_rows_and_the_cli_prints_the_top(trained, capsys):
    from pipeline.flows.scoring import scoring_flow

    cfg = trained["cfg"]
    config_file = trained["tmp"] / "config.yaml"
    config_file.write_text(yaml.safe_dump(trained["overrides"]))
    assert main(["score", "--config", str(config_file), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 customers at risk" in out and "pushed_up_by" in out and "drift" in out
    engine = sa.create_engine(cfg.scoring.table_url)
    count = sa.text("SELECT as_of, COUNT(*), COUNT(DISTINCT customer_id) FROM scores GROUP BY as_of ORDER BY as_of")
    with engine.connect() as conn:
        first = conn.execute(count).all()
    summary = scoring_flow(overrides=trained["overrides"])  # the same scoring again, through the Prefect flow
    with engine.connect() as conn:
        again = conn.execute(count).all()
    assert first == again and again[-1] == (summary["as_of"], summary["customers"], summary["customers"])
    key = f"scores/{summary['as_of']}/{cfg.tracking.registered_model}-v1.parquet"
    stored = frame_from_bytes(artifact_store(cfg).get_bytes(key))
    assert len(stored) == summary["customers"] and stored["churn_probability"].is_monotonic_decreasing
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.run_name == f"score-{summary['as_of']}" and run.data.tags["model_version"] == "1"
    assert run.data.metrics["customers"] == summary["customers"]


def test_a_model_of_another_spec_or_other_columns_is_refused(trained, tmp_path, capsys):
    spec_dir = tmp_path / "spec"
    shutil.copytree(spec_path("adventureworks").parent, spec_dir)
    (spec_dir / "sql" / "orders.sql").write_text((spec_dir / "sql" / "orders.sql").read_text() + "\n-- changed\n")
    (spec_dir / "spec.yaml").rename(spec_dir / "adventureworks.yaml")  # same {spec} name: same registered model
    other = {**trained["overrides"], "data": {**trained["overrides"]["data"], "spec": str(spec_dir / "adventureworks.yaml")}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(other))
    assert main(["score", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert "was trained on spec 'adventureworks'" in err and "YAML or SQL changed" in err

    model = scoring.load_model(trained["cfg"])
    tables = {**trained["tables"], "orders": trained["tables"]["orders"].drop(columns=["Freight"])}
    with pytest.raises(scoring.ScoringError, match=r"column orders\.Freight is missing"):
        scoring.check_definitions(model.features, point_in_time_entityset(trained["spec"], tables))


def test_risk_bands_and_population_stability():
    proba = np.array([0.9, 0.7, 0.4, 0.3, 0.2, 0.1])
    bands = scoring.risk_bands(proba, 0.6, "high", {"medium": 0.5, "low": 0.0})
    assert bands.tolist() == ["high", "high", "medium", "medium", "low", "low"]
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=2000), "c": pd.Categorical(rng.choice(["a", "b"], 2000))})
    reference = scoring.drift_reference(train, bins=10)
    same = scoring.population_stability(reference, train)
    shifted = scoring.population_stability(reference, train.assign(x=train["x"] + 1, c=pd.Categorical(["a"] * 2000, categories=["a", "b"])))
    assert same.max() < 1e-9 and shifted["x"] > 0.25 and shifted["c"] > 0.25
    # a model registered before the reference was a scored population stored only the distributions
    assert scoring._with_population(reference) == {"as_of": None, "customers": None, "features": reference}


@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
def test_the_scores_table_is_replaced_per_model_version_and_date(server, tmp_path, request):
    url = f"sqlite:///{tmp_path}/scores.db" if server == "sqlite" else request.getfixturevalue("postgres_url")
    table = f"scores_{uuid.uuid4().hex[:8]}"

    def rows(version: int, as_of: str, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": range(n),
                "as_of": as_of,
                "order_time": pd.Timestamp("2014-01-01"),
                "churn_probability": np.linspace(0.9, 0.1, n),
                "reason_1": [None] + ["x"] * (n - 1),
                "model_name": "churn",
                "model_version": version,
            }
        )

    engine = sa.create_engine(url)
    try:
        for version, as_of, n in [(1, "2014-06-30", 5), (1, "2014-06-30", 3), (1, "2014-05-31", 4), (2, "2014-06-30", 2)]:
            assert scoring.write_table(rows(version, as_of, n), url, table) == n
        with engine.connect() as conn:
            counts = conn.execute(sa.text(f"SELECT model_version, as_of, COUNT(*) FROM {table} GROUP BY 1, 2 ORDER BY 1, 2")).all()
        assert [tuple(row) for row in counts] == [(1, "2014-05-31", 4), (1, "2014-06-30", 3), (2, "2014-06-30", 2)]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_the_scoring_deployment_is_scheduled_with_the_configured_cron():
    from prefect.client.schemas.schedules import CronSchedule

    from pipeline.ops.deployments import DEFAULT_DEPLOYMENTS

    deployments = {d["name"]: d for d in yaml.safe_load((Path(__file__).parents[1] / "prefect.yaml").read_text())["deployments"]}
    scoring_deployment = deployments["scoring"]
    assert scoring_deployment["entrypoint"] == DEFAULT_DEPLOYMENTS["scoring"]
    [schedule] = scoring_deployment["schedules"]
    assert schedule["cron"] == load_config().scoring.cron and schedule["active"]
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # a valid cron for Prefect
