"""The pipeline's steps as plain functions: config + run artifacts in, small summaries out.

Every step reads its inputs from and writes its outputs to the run's artifact store
(a local folder or S3), so a step can run in another process or on another machine
than the one before it. Nothing here needs Prefect: flows in `pipeline.flows` only
wire these together.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.cache import StepCache
from pipeline.config import Config
from pipeline.data.db import DataSourceError, describe_url
from pipeline.data.extract import extract_tables, source_fingerprint
from pipeline.labels import LABEL, check_labels, label_orders
from pipeline.models import LightGBMModel, TrainData
from pipeline.preprocess import Encoder, features_and_label, random_split, time_split, warn_unseen_categories
from pipeline.spec import DatasetSpec, load_spec
from pipeline.storage import ArtifactStore, RunArtifacts, S3Settings, open_store

log = logging.getLogger(__name__)

PartLauncher = Callable[[list[int], str], object]  # launches feature parts by index, signed with a token


def artifact_store(cfg: Config) -> ArtifactStore:
    st = cfg.storage
    s3 = S3Settings(endpoint_url=st.s3_endpoint_url, region=st.s3_region, retry_seconds=st.s3_outage_seconds, retry_mode=st.s3_retry_mode)
    return open_store(cfg.storage.uri, s3)


def run_artifacts(cfg: Config, run_id: str) -> RunArtifacts:
    return RunArtifacts(artifact_store(cfg), run_id)


def study_name(cfg: Config, run_id: str) -> str:
    return f"{cfg.tuning.study_name}-{run_id}"


# --- 1. source ----------------------------------------------------------------------------------


def prepare_source(cfg: Config) -> dict[str, Any]:
    """Write the synthetic database when the configured SQLite file is absent (embedded default)."""
    url = cfg.data.url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        if not cfg.data.generate_if_missing:
            raise DataSourceError(f"source database {describe_url(url)} does not exist and data.generate_if_missing is false")
        from pipeline.data.synthetic import write_synthetic

        log.info("no source database at %s: writing the synthetic AdventureWorks-shaped one", describe_url(url))
        counts = write_synthetic(url, customers=cfg.data.synthetic.customers, seed=cfg.data.synthetic.seed)
        return {"generated": True, "rows": counts}
    return {"generated": False}


# --- 2-3. extract and labels ---------------------------------------------------------------------


def cached(cfg: Config, art: RunArtifacts, step: str, outputs: list[str], compute, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `compute` unless the step cache (`pipeline.cache`) holds its outputs for the same inputs."""
    return StepCache(art.store, cfg.cache.enabled).run(cfg, art, step, outputs, compute, extra)


def extract(cfg: Config, art: RunArtifacts) -> dict[str, int]:
    """The spec's tables into the run; the source's fingerprint and the spec's hash key the cache."""
    spec = load_spec(cfg.data.spec)
    source = {
        "url": describe_url(cfg.data.url),
        "spec_hash": spec_digest(cfg.data.spec),
        "source": source_fingerprint(cfg.data.url, spec),
    }
    outputs = [f"tables/{entity}.parquet" for entity in spec.entities]
    return cached(cfg, art, "extract", outputs, lambda: _extract(cfg, art, spec), source)


def _extract(cfg: Config, art: RunArtifacts, spec: DatasetSpec) -> dict[str, int]:
    tables = handle_snapshot_columns(spec, extract_tables(cfg.data.url, spec), cfg.features.drop_snapshot)
    for entity, frame in tables.items():
        art.put_frame(f"tables/{entity}", frame)
    return {entity: len(frame) for entity, frame in tables.items()}


def handle_snapshot_columns(spec: DatasetSpec, tables: dict[str, pd.DataFrame], drop: bool) -> dict[str, pd.DataFrame]:
    """Warn (once per run: the extract runs once) about the spec's current-snapshot columns, or drop them.

    The extract has already checked that every column the spec marks exists.
    """
    marked = {entity: ent.snapshot for entity, ent in spec.entities.items() if ent.snapshot}
    if not marked:
        return tables
    names = ", ".join(f"{entity}.{col}" for entity, cols in marked.items() for col in cols)
    if drop:
        log.info("features.drop_snapshot: dropping the spec's current-snapshot columns %s", names)
        return {entity: frame.drop(columns=marked.get(entity, [])) for entity, frame in tables.items()}
    log.warning(
        "spec %r marks %s as current snapshots (today's values, not values as of each order): features built "
        "on them may leak the future; set features.drop_snapshot=true to drop them",
        spec.name,
        names,
    )
    return tables


def load_tables(spec: DatasetSpec, art: RunArtifacts) -> dict[str, pd.DataFrame]:
    return {entity: art.get_frame(f"tables/{entity}") for entity in spec.entities}


def make_labels(cfg: Config, art: RunArtifacts) -> dict[str, Any]:
    """Label the target's orders; the summary names the definition so runs can be told apart."""
    return cached(cfg, art, "labels", ["labels.parquet"], lambda: _make_labels(cfg, art))


def _make_labels(cfg: Config, art: RunArtifacts) -> dict[str, Any]:
    spec = load_spec(cfg.data.spec)
    orders = art.get_frame(f"tables/{spec.target.entity}")
    index = spec.entities[spec.target.entity].index
    lc = cfg.labels
    labels = label_orders(orders, index, spec.target.customer_key, spec.target.time_index, lc.horizon_days, lc.definition)
    summary = check_labels(labels)
    art.put_frame("labels", labels)
    return {**summary, "definition": lc.definition, "horizon_days": lc.horizon_days}


# --- 4. features ---------------------------------------------------------------------------------


FEATURE_OUTPUTS = ["features.parquet", "feature_descriptions.json", "feature_definitions.json"]


def make_features(cfg: Config, art: RunArtifacts, launch_parts: PartLauncher | None = None) -> dict[str, int]:
    """The feature matrix; with features.partitions > 1 computed in parts by customer
    (`pipeline.feature_partitions`), launched by `launch_parts` (default: local processes)."""
    return cached(cfg, art, "features", FEATURE_OUTPUTS, lambda: _make_features(cfg, art, launch_parts))


def _make_features(cfg: Config, art: RunArtifacts, launch_parts: PartLauncher | None) -> dict[str, int]:
    from pipeline.features import synthesize

    spec = load_spec(cfg.data.spec)
    f = cfg.features
    tables, labels = load_tables(spec, art), art.get_frame("labels")
    result = synthesize(
        spec,
        tables,
        labels if f.partitions == 1 else labels.iloc[:0],  # in parts: only the definitions, chosen on the whole schema
        max_depth=f.max_depth,
        agg_primitives=f.agg_primitives,
        trans_primitives=f.trans_primitives,
        max_features=f.max_features,
        approximate=f.approximate,
        n_jobs=f.n_jobs,
        engine=f.engine,
        windows=f.windows,
        recency=f.recency,
    )
    matrix = result.matrix if f.partitions == 1 else _matrix_in_parts(cfg, art, spec, tables, labels, result, launch_parts)
    art.put_frame("features", matrix)
    art.put_json("feature_descriptions", result.descriptions)
    art.put_bytes("feature_definitions.json", result.definitions_json.encode())
    return {"orders": len(matrix), "features": len(result.descriptions)}


def _matrix_in_parts(cfg: Config, art: RunArtifacts, spec: DatasetSpec, tables, labels, result, launch_parts) -> pd.DataFrame:
    from pipeline import dispatch, feature_partitions
    from pipeline.features import cutoff_times, point_in_time_entityset

    launch = launch_parts or dispatch.feature_part_launcher(cfg, art.run_id)
    es, cutoff = point_in_time_entityset(spec, tables), cutoff_times(spec, tables, labels)
    n_parts, engine = cfg.features.partitions, cfg.features.engine
    return feature_partitions.run_partitioned(spec, es, cutoff, result.definitions_json, art, n_parts, launch, engine)


def feature_part(cfg: Config, art: RunArtifacts, index: int, token: str) -> dict[str, Any]:
    """One part of a partitioned feature step (`pipeline.feature_partitions`), on whichever worker runs it."""
    from pipeline.feature_partitions import compute_part

    return compute_part(load_spec(cfg.data.spec), art, index, token, cfg.features.engine)


# --- 5. split and encode -------------------------------------------------------------------------


SPLIT_OUTPUTS = ["train.parquet", "valid.parquet", "test.parquet", "encoder.joblib"]


def split_and_encode(cfg: Config, art: RunArtifacts) -> dict[str, Any]:
    return cached(cfg, art, "split", SPLIT_OUTPUTS, lambda: _split_and_encode(cfg, art))


def _split_and_encode(cfg: Config, art: RunArtifacts) -> dict[str, Any]:
    spec = load_spec(cfg.data.spec)
    matrix = art.get_frame("features")
    labels = art.get_frame("labels").set_index(spec.entities[spec.target.entity].index)
    times = labels[spec.target.time_index].reindex(matrix.index)
    s = cfg.split
    if s.method == "time":
        split = time_split(matrix, times, s.test_size, s.valid_size, cfg.labels.horizon_days, s.min_rows, s.purge)
    else:
        split = random_split(matrix, s.test_size, s.valid_size, s.seed, s.min_rows)
    encoder = Encoder().fit(split.train)
    unseen = {part: warn_unseen_categories(encoder, part, getattr(split, part)) for part in ("valid", "test")}
    for part in ("train", "valid", "test"):
        X, y = features_and_label(getattr(split, part), encoder)
        art.put_frame(part, X.assign(**{LABEL: y}))
    art.put_object("encoder", encoder)
    return {
        **split.info,
        "train_rows": len(split.train),
        "valid_rows": len(split.valid),
        "test_rows": len(split.test),
        "features_used": len(encoder.columns),
        "features_dropped": len(encoder.dropped),
        "unseen_categories": {part: counts for part, counts in unseen.items() if counts},
    }


def load_part(art: RunArtifacts, part: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = art.get_frame(part)
    return frame.drop(columns=[LABEL]), frame[LABEL]


# --- 6. tuning -----------------------------------------------------------------------------------


def base_model(cfg: Config) -> LightGBMModel:
    m = cfg.model
    return LightGBMModel(
        params=dict(m.params),
        num_boost_round=m.num_boost_round,
        early_stopping_rounds=m.early_stopping_rounds,
        metric=cfg.tuning.metric,
        num_threads=m.num_threads,
    )


def create_study(cfg: Config, run_id: str):
    from pipeline.tuning import create_storage
    from pipeline.tuning import create_study as _create

    storage = create_storage(cfg.tuning.storage, cfg.tuning.heartbeat_interval)
    return _create(cfg.tuning, study_name(cfg, run_id), storage)


def tuning_shard(
    cfg: Config, art: RunArtifacts, shard_index: int, target_trials: int, tracking_parent: str | None = None
) -> dict[str, Any]:
    """One shard: load train/valid from the store, bin once, run trials on the shared study."""
    from pipeline import tuning

    storage = tuning.create_storage(cfg.tuning.storage, cfg.tuning.heartbeat_interval)
    study = tuning.create_study(cfg.tuning, study_name(cfg, art.run_id), storage, seed_offset=shard_index)
    X_train, y_train = load_part(art, "train")
    X_valid, y_valid = load_part(art, "valid")
    data = TrainData.build(X_train, y_train, X_valid, y_valid)
    objective = tuning.make_objective(data, base_model(cfg), cfg.tuning.search_space, cfg.tuning.pruner_warmup_steps)
    name = f"shard-{shard_index}"
    with _shard_tracking(cfg, tracking_parent, name) as on_trial:
        done = tuning.run_shard(
            study, objective, target_trials, cfg.tuning.timeout_minutes * 60, name, [on_trial], cfg.tuning.storage_outage_seconds
        )
    return {"shard": shard_index, "trials": done, "host": os.uname().nodename, "pid": os.getpid()}


@contextmanager
def _shard_tracking(cfg: Config, parent_run_id: str | None, name: str):
    """A nested MLflow run per shard (when a parent run is given), one metric step per trial, sent in batches."""
    if parent_run_id is None:
        yield lambda study, trial: None
        return
    import mlflow

    from pipeline import tracking

    tracking.setup(cfg.tracking.tracking_uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    with mlflow.start_run(run_name=f"tuning-{name}", nested=True, parent_run_id=parent_run_id) as run:
        mlflow.set_tags({"host": os.uname().nodename, "pid": str(os.getpid()), "shard": name})
        with tracking.batched_metrics(run.info.run_id) as log_metric:

            def on_trial(study, trial) -> None:
                if trial.value is not None:
                    log_metric(f"trial_{cfg.tuning.metric}", trial.value, trial.number)

            yield on_trial


# --- 7. final fit, evaluation, explanation -------------------------------------------------------


def final_fit_and_evaluate(
    cfg: Config, art: RunArtifacts, best: dict[str, Any], best_iteration: int | None, out_dir: Path
) -> dict[str, Any]:
    """Fit, calibrate and pick the threshold on train/valid, refit on train + valid, evaluate on test, explain with SHAP.

    Calibrator and threshold need out-of-sample predictions, which the refit model has for no row.
    So they are learned from the train-only model's predictions on valid (its early stopping and
    the tuning also chose on valid, a small optimism for two calibration numbers) and applied
    unchanged to the model refit on train + valid with proportionally more rounds: the scheme of
    scikit-learn's `CalibratedClassifierCV(ensemble=False)`. The refit keeps the most recent
    training orders (the valid part of a time split) in the model; Platt's smooth two-parameter
    map tolerates the refit's small score shift better than a step function, hence the default.
    """
    from pipeline.evaluation import calibration_report, choose_threshold, compute_metrics, fit_calibrator, save_plots
    from pipeline.explain import explain

    X_train, y_train = load_part(art, "train")
    X_valid, y_valid = load_part(art, "valid")
    X_test, y_test = load_part(art, "test")
    model = base_model(cfg)
    model.params.update(best)
    valid_raw = model.fit(X_train, y_train, X_valid, y_valid).predict_proba(X_valid)
    best_iteration = best_iteration or model.best_iteration
    m = cfg.model
    calibrator = fit_calibrator(m.calibration, y_valid, valid_raw)
    valid_proba = calibrator.transform(valid_raw)
    threshold = (
        m.threshold
        if m.threshold_objective == "fixed"
        else choose_threshold(y_valid, valid_proba, m.threshold_objective, m.min_recall, m.cost_ratio)
    )
    # more rows than during early stopping: scale the number of rounds accordingly
    rounds = round(best_iteration * (len(X_train) + len(X_valid)) / len(X_train))
    model.fit_rounds(pd.concat([X_train, X_valid]), pd.concat([y_train, y_valid]), rounds)
    raw = model.predict_proba(X_test)
    proba = calibrator.transform(raw)
    metrics = compute_metrics(y_test.to_numpy(), proba, threshold)
    valid_at = compute_metrics(y_valid.to_numpy(), valid_proba, threshold)
    threshold_info = {
        "objective": m.threshold_objective,
        "value": threshold,
        "raw": calibrator.raw_threshold(threshold),
        **{f"valid_{k}": valid_at[k] for k in ("f1", "precision", "recall")},
    }
    calibration = {
        **calibrator.to_dict(),
        "test": calibration_report(y_test, raw, proba),
        "valid": calibration_report(y_valid, valid_raw, valid_proba),
    }
    plots = save_plots(y_test.to_numpy(), proba, threshold, out_dir / "plots")
    explanation = explain(model.booster, X_test, out_dir / "shap")
    model.save(out_dir / "model.json")
    art.put_file("model/model.json", out_dir / "model.json")
    art.put_json("metrics", metrics)
    art.put_json("calibration", calibrator.to_dict())
    art.put_json("threshold", threshold_info)
    art.put_frame("predictions", pd.DataFrame({"y_true": y_test.to_numpy(), "raw": raw, "proba": proba}, index=X_test.index))
    for path in [*plots.values(), explanation.summary_plot, explanation.bar_plot, explanation.importance_csv]:
        art.put_file(f"reports/{Path(path).name}", path)
    return {
        "metrics": metrics,
        "rounds": rounds,
        "threshold": threshold_info,
        "calibration": calibration,
        "top_features": explanation.importance.head(10).to_dict("records"),
    }


def evaluate_baselines(cfg: Config, art: RunArtifacts, out_dir: Path) -> dict[str, dict[str, float]]:
    """Score the baselines (`pipeline.baselines`) on the model's test rows; write a table and a bar plot beside the model's."""
    from pipeline import baselines
    from pipeline.features import foreign_keys

    spec = load_spec(cfg.data.spec)
    key = spec.entities[spec.target.entity].index
    orders = art.get_frame(f"tables/{spec.target.entity}")
    parts = {part: load_part(art, part) for part in ("train", "valid", "test")}
    y_fit = pd.concat([parts["train"][1], parts["valid"][1]])
    fit_index, test_index = y_fit.index, parts["test"][0].index
    value = baselines.value_column(orders, cfg.model.baseline_value_column)
    rfm = baselines.rfm_features(orders, key, spec.target.customer_key, spec.target.time_index, value)
    drop = [spec.target.customer_key, *spec.entities[spec.target.entity].drop, *foreign_keys(spec).get(spec.target.entity, [])]
    own = baselines.own_columns(orders, key, drop)
    y_test = parts["test"][1]
    proba = {
        "base_rate": baselines.base_rate(y_fit, len(test_index)),
        "rfm_logreg": baselines.rfm_logreg(rfm.loc[fit_index], y_fit, rfm.loc[test_index]),
        "own_columns_lgbm": baselines.own_columns_lgbm(
            {part: (own.loc[X.index], y) for part, (X, y) in parts.items()},
            cfg.tuning.metric,
            cfg.model.num_threads,
        ),
    }
    scores = {name: baselines.metrics_of(y_test, p) for name, p in proba.items()}
    baselines.save_comparison_plot(art.get_json("metrics"), scores, out_dir / "plots" / "baselines.png")
    (out_dir / "baselines.json").write_text(json.dumps({"value_column": value, "scores": scores}, indent=2))
    art.put_json("baselines", scores)
    return scores


def write_report_files(art: RunArtifacts, out_dir: Path) -> None:
    """Feature descriptions next to the plots, for humans and MLflow."""
    (out_dir / "feature_descriptions.json").write_text(json.dumps(art.get_json("feature_descriptions"), indent=2))


def local_report_dir(cfg: Config, run_id: str) -> Path:
    path = cfg.work_dir / "reports" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- 8. tracking ---------------------------------------------------------------------------------


def spec_digest(spec_ref: str) -> str:
    """The spec's hash (`protocol.spec_hash` of its YAML and SQL files): what the model and scoring must agree on."""
    from pipeline import protocol
    from pipeline.spec import spec_path

    spec = load_spec(spec_ref)
    return protocol.spec_hash(spec_path(spec_ref).read_text(), {spec.entities[e].query: spec.sql(e) for e in spec.entities})


def run_protocol(cfg: Config, art: RunArtifacts) -> dict[str, Any]:
    """The run's protocol fingerprint (`pipeline.protocol`) from the config, the spec files and the run's artifacts."""
    from pipeline import protocol

    spec = load_spec(cfg.data.spec)
    key = spec.entities[spec.target.entity].index
    tables = load_tables(spec, art)
    labels = art.get_frame("labels").set_index(key)
    test_times = labels[spec.target.time_index].reindex(art.get_frame("test").index)
    s = cfg.split
    split = protocol.split_protocol(s.method, test_times.min() if s.method == "time" else None, s.purge, s.test_size, s.valid_size, s.seed)
    source = protocol.source_fingerprint(tables, {e: ent.time_index for e, ent in spec.entities.items()})
    return protocol.fingerprint(
        spec.name,
        spec_digest(cfg.data.spec),
        getattr(cfg.labels, "definition", "within_horizon"),
        cfg.labels.horizon_days,
        split,
        source,
    )


def open_tracking_run(cfg: Config, run_id: str) -> str:
    """Create the MLflow run of this pipeline run: the (redacted) config as params, the protocol fingerprint as tags."""
    import mlflow

    from pipeline import protocol, tracking
    from pipeline.masking import mask_mapping

    art = run_artifacts(cfg, run_id)
    fingerprint = run_protocol(cfg, art)
    art.put_json("protocol", fingerprint)
    resolved = mask_mapping(cfg.model_dump())  # the configuration this run resolved, secrets masked
    art.put_json("config", resolved)
    tracking.setup(cfg.tracking.tracking_uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    with mlflow.start_run(run_name=f"train-{run_id}") as run:
        tracking.log_params(cfg.model_dump())
        mlflow.set_tags({"pipeline_run_id": run_id, "dataset_spec": cfg.data.spec, "source_db": describe_url(cfg.data.url)})
        mlflow.set_tags(protocol.to_tags(fingerprint))
        mlflow.log_dict(fingerprint, "protocol.json")
        mlflow.log_dict(resolved, "config.json")
    return run.info.run_id


def model_drift_reference(cfg: Config, art: RunArtifacts, inputs: Any, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Scoring's drift reference (`scoring.drift_reference_at`) for the model `inputs` rebuild, as of the day
    before the test period (a random split has none: the latest order's day); the refit rows if no customer was active then."""
    from pipeline import scoring

    spec = load_spec(cfg.data.spec)
    tables = load_tables(spec, art)
    test_start = fingerprint["split"].get("test_start")
    if test_start:
        as_of = pd.Timestamp(test_start).normalize() - pd.Timedelta(days=1)
    else:
        as_of = scoring.resolve_as_of("latest", tables[spec.target.entity][spec.target.time_index])
    try:
        reference = scoring.drift_reference_at(cfg, inputs, tables, as_of)
    except scoring.NoActiveCustomers:
        log.warning(
            "drift reference: no customer ordered in the %d days (scoring.active_days) up to %s, the end of the fitted "
            "data; scoring will measure drift against the rows the model was refit on instead",
            cfg.scoring.active_days,
            as_of.date(),
        )
        X_fit = pd.concat([load_part(art, "train")[0], load_part(art, "valid")[0]])
        return {"as_of": None, "customers": None, "features": scoring.drift_reference(X_fit, cfg.scoring.psi_bins)}
    if reference["customers"] < 10 * cfg.scoring.psi_bins:
        log.warning("drift reference: only %d customers active on %s: scoring's PSI will be noisy", reference["customers"], as_of.date())
    return reference


def log_results(cfg: Config, art: RunArtifacts, mlflow_run_id: str, summary: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Metrics, baselines, plots, tables and the model into the run; register it; move the alias only by `pipeline.selection`."""
    import mlflow

    from pipeline import protocol, scoring, selection, tracking
    from pipeline.evaluation import metric_direction, score
    from pipeline.features import load_definitions

    tracking.setup(cfg.tracking.tracking_uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    metrics, metric, t = summary["metrics"], cfg.tuning.metric, cfg.tracking
    baseline_scores = summary.get("baselines", {})
    model = LightGBMModel.load(out_dir / "model.json")
    X_test, y_test = load_part(art, "test")
    fingerprint = art.get_json("protocol")
    threshold = summary["threshold"]
    calibration = summary["calibration"]
    with mlflow.start_run(run_id=mlflow_run_id):
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items()})
        mlflow.log_metrics({k: float(v) for k, v in summary.get("numbers", {}).items()})
        mlflow.log_metrics({f"baseline_{name}_{k}": v for name, values in baseline_scores.items() for k, v in values.items()})
        mlflow.log_metrics({f"calibration_test_{k}": v for k, v in calibration["test"].items()})
        mlflow.log_metrics({"threshold": threshold["value"], "threshold_raw": threshold["raw"]})
        mlflow.log_dict(summary.get("timings", {}), "timings.json")
        mlflow.log_dict(art.get_json("calibration"), "calibration.json")
        mlflow.log_dict(threshold, "threshold.json")
        write_report_files(art, out_dir)
        tracking.log_artifacts_dir(out_dir / "plots", "plots")
        tracking.log_artifacts_dir(out_dir / "shap", "shap")
        mlflow.log_artifact(str(out_dir / "feature_descriptions.json"), "features")
        if (out_dir / "baselines.json").exists():
            mlflow.log_artifact(str(out_dir / "baselines.json"))
        definitions, encoder = art.get_bytes("feature_definitions.json").decode(), art.get_object("encoder")
        mlflow.log_text(definitions, "features/feature_definitions.json")
        # what scoring needs to rebuild the model's inputs and measure drift (pipeline.scoring)
        mlflow.log_dict(scoring.encoder_json(encoder), scoring.ENCODER_ARTIFACT)
        inputs = scoring.ModelInputs("the trained model", load_definitions(definitions), encoder, model.booster)
        mlflow.log_dict(model_drift_reference(cfg, art, inputs, fingerprint), scoring.DRIFT_ARTIFACT)
        info = tracking.log_model(model.booster, X_test.head(50))
        version_tags = {
            **protocol.to_tags(fingerprint),
            f"test_{metric}": repr(float(metrics[metric])),
            "threshold": repr(threshold["value"]),
            "threshold_raw": repr(threshold["raw"]),
            "threshold_objective": threshold["objective"],
            "calibration": calibration["method"],
        }
        partial = selection.partial_run(summary["tuning"]["finished_trials"], cfg.tuning.n_trials)
        direction = metric_direction(metric)
        promotion = tracking.register_and_promote(
            info.model_uri,
            t.registered_model,
            version_tags,
            X_test,
            score_rows=lambda proba: score(metric, y_test, proba),
            decide=lambda champion: selection.decide(
                metric,
                direction,
                float(metrics[metric]),
                {n: v[metric] for n, v in baseline_scores.items()},
                champion,
                t.promotion_margin,
                partial,
                t.promote_partial,
                fingerprint["split"]["method"],
            ),
            alias=t.champion_alias,
        )
        decision = promotion.decision
        for warning in decision.warnings:
            log.warning("%s v%s not promoted: %s", t.registered_model, promotion.version, warning)
        mlflow.log_dict({**decision.to_dict(), "rows": len(X_test), "version": promotion.version}, "promotion.json")
        if decision.champion_score is not None:
            mlflow.log_metric(f"champion_{metric}_same_rows", decision.champion_score)
        mlflow.set_tags(
            {
                "model_version": str(promotion.version),
                "champion": str(promotion.promoted),
                "promotion.decision": "promoted" if promotion.promoted else "not promoted",
                "promotion.reason": decision.reason[:5000],
            }
        )
    return {
        "model_uri": info.model_uri,
        "registered_model": t.registered_model,
        "version": promotion.version,
        "promoted": promotion.promoted,
        "previous_champion": promotion.previous_champion_version,
        "promotion": {**decision.to_dict(), "rows": len(X_test)},
    }


def fail_tracking_run(cfg: Config, mlflow_run_id: str, status: str = "FAILED") -> None:
    """End the MLflow run of a run that stopped: FAILED on an error, KILLED when interrupted."""
    from mlflow.tracking import MlflowClient

    MlflowClient(cfg.tracking.tracking_uri).set_terminated(mlflow_run_id, status)
