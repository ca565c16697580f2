"""Score the registered churn model on the active customers as of a date: one row per customer, with reasons.

What is scored, and why the latest order: the model was trained on orders, each labelled "the
customer places no further order within `labels.horizon_days` after this one", with features as
of that order's (tie-broken) instant. So a customer's risk as of a date is the model's answer for
their latest order at or before that date: its features are computed by the same code as in
training (`pipeline.features.point_in_time_entityset` + `calculate_features` on the training
run's saved featuretools definitions, cutoff = that order's instant). Features cut off at the
scoring date itself would ask a question the model never saw: no training row has a cutoff
without an order at it. The score therefore does not grow with the time since that order;
`days_since_order` is reported beside it.

The model comes from the MLflow registry (alias `tracking.champion_alias`, or a version) with
what its inputs need: featuretools definitions, encoder, calibrator, decision threshold, spec
name and hash, and each feature's distribution over the customers active at the end of the training
data (the drift reference, `drift_reference_at`). A model trained on
another spec (YAML or SQL changed) or whose definitions need columns or relationships the current
data lacks is refused (`ScoringError`).

Destinations: parquet in the artifact store (`scores/<as-of>/<model>-v<version>.parquet`) and a
SQL table (`scoring.table_url`, `scoring.table`), replaced per (model, version, as-of) in one
transaction. A summary (score quantiles, share per band, population stability index per feature
against the drift reference) goes to an MLflow run `score-<as-of>` and the log.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import featuretools as ft
import lightgbm
import numpy as np
import pandas as pd
from featuretools.feature_base import FeatureBase, IdentityFeature, TransformFeature

from pipeline.config import Config
from pipeline.evaluation import Calibrator
from pipeline.masking import mask_url
from pipeline.preprocess import Encoder

log = logging.getLogger(__name__)

TOP_REASONS = 3
PSI_TOP = 5
PSI_FLOOR = 1e-4  # share given to an empty bin: PSI has log(actual / expected)
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "max": 1.0}
ENCODER_ARTIFACT = "features/encoder.json"
DRIFT_ARTIFACT = "features/drift_reference.json"
DEFINITIONS_ARTIFACT = "features/feature_definitions.json"


class ScoringError(ValueError):
    """The model cannot score these customers; the message says why and how to fix it."""


class NoActiveCustomers(ScoringError):
    """No customer ordered in the `scoring.active_days` days up to the scoring date."""


@dataclass(frozen=True)
class ModelInputs:
    """What rebuilds a model's input rows from the source tables: its saved featuretools definitions,
    its encoder and its booster (the column order); `label` names the model in errors."""

    label: str
    features: list[FeatureBase]
    encoder: Encoder
    booster: lightgbm.Booster


@dataclass(frozen=True)
class ScoringModel:
    name: str
    version: int
    run_id: str  # the MLflow run that trained it
    booster: lightgbm.Booster
    features: list[FeatureBase]  # featuretools definitions, as saved by the training run
    encoder: Encoder
    calibrator: Calibrator
    threshold: float  # on the calibrated scale
    tags: dict[str, str]  # the version's tags (protocol.* among them)
    drift_reference: dict[str, Any]  # as_of, customers, features: per feature its distribution (`drift_reference_at`)

    @property
    def inputs(self) -> ModelInputs:
        return ModelInputs(f"{self.name} v{self.version}", self.features, self.encoder, self.booster)


@dataclass(frozen=True)
class ScoringResult:
    scores: pd.DataFrame  # one row per active customer, highest churn probability first
    features: pd.DataFrame  # the model's input rows (encoded, model column order), index: order key
    summary: dict[str, Any]


# --- the model and what reproduces its inputs -----------------------------------------------------


def load_model(cfg: Config, version: int | None = None) -> ScoringModel:
    """The registered version (`version`, else the `tracking.champion_alias` one) with its encoder, definitions and threshold."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from pipeline import tracking
    from pipeline.features import load_definitions

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a progress bar per small JSON file otherwise
    t = cfg.tracking
    tracking.setup(t.tracking_uri, t.experiment, t.artifact_location)
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version(t.registered_model, str(version))
            if version
            else client.get_model_version_by_alias(t.registered_model, t.champion_alias)
        )
    except MlflowException as exc:
        which = f"version {version}" if version else f"alias @{t.champion_alias}"
        raise ScoringError(
            f"model {t.registered_model!r} has no {which} in the registry at {mask_url(t.tracking_uri)}: "
            "train one first (python -m pipeline run) or pick a registered version with --version"
        ) from exc
    with tempfile.TemporaryDirectory() as tmp:

        def artifact(path: str) -> str:
            try:
                return Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path=path, dst_path=tmp)).read_text()
            except (MlflowException, OSError) as exc:
                raise ScoringError(
                    f"{t.registered_model} v{mv.version}: its training run {mv.run_id} has no {path} (trained before scoring "
                    "existed): retrain (python -m pipeline run) or score another version with --version"
                ) from exc

        definitions, encoder, reference = (artifact(p) for p in (DEFINITIONS_ARTIFACT, ENCODER_ARTIFACT, DRIFT_ARTIFACT))
    return ScoringModel(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id,
        booster=mlflow.lightgbm.load_model(f"models:/{mv.name}/{mv.version}"),
        features=load_definitions(definitions),
        encoder=Encoder(**json.loads(encoder)),
        calibrator=tracking.run_calibrator(mv),
        threshold=float(mv.tags["threshold"]),
        tags=dict(mv.tags),
        drift_reference=_with_population(json.loads(reference)),
    )


def _with_population(reference: dict[str, Any]) -> dict[str, Any]:
    """Models registered before the reference was a scored population hold only the features' distributions (of the training rows)."""
    if {"as_of", "customers", "features"} <= set(reference) and isinstance(reference["features"], dict):
        return reference
    return {"as_of": None, "customers": None, "features": reference}


def check_spec(model: ScoringModel, spec_name: str, spec_digest: str) -> None:
    """Refuse a model trained on another spec: its queries, keys or types may differ from today's."""
    trained = (model.tags.get("protocol.spec.name"), model.tags.get("protocol.spec.hash"))
    if trained != (spec_name, spec_digest):
        raise ScoringError(
            f"{model.name} v{model.version} was trained on spec {trained[0]!r} (hash {str(trained[1])[:12]}), the current "
            f"spec is {spec_name!r} (hash {spec_digest[:12]}): its YAML or SQL changed since. Score with the spec the "
            "model was trained on (data.spec), or train a model on the current one (python -m pipeline run)"
        )


def check_definitions(features: list[FeatureBase], entityset: ft.EntitySet) -> None:
    """Refuse definitions that need a dataframe, column (of the same logical type) or relationship the data lacks."""
    relationships = {
        (r.parent_dataframe.ww.name, r._parent_column_name, r.child_dataframe.ww.name, r._child_column_name)
        for r in entityset.relationships
    }
    problems: set[str] = set()
    for feature in _with_dependencies(features):
        for _, rel in feature.relationship_path:
            key = (rel.parent_dataframe.ww.name, rel._parent_column_name, rel.child_dataframe.ww.name, rel._child_column_name)
            if key not in relationships:
                problems.add(f"relationship {key[0]}.{key[1]} -> {key[2]}.{key[3]} is missing")
        if type(feature) is IdentityFeature:
            problems |= _column_problems(feature, entityset)
    if problems:
        raise ScoringError(
            "the model's feature definitions do not match the current data: "
            + "; ".join(sorted(problems))
            + ". Score with the spec and features settings the model was trained with, or retrain"
        )


def _with_dependencies(features: list[FeatureBase]) -> list[FeatureBase]:
    seen: dict[str, FeatureBase] = {}
    stack = list(features)
    while stack:
        feature = stack.pop()
        if feature.unique_name() not in seen:
            seen[feature.unique_name()] = feature
            stack.extend(feature.base_features)
    return list(seen.values())


def _column_problems(feature: IdentityFeature, entityset: ft.EntitySet) -> set[str]:
    name, column = feature.dataframe_name, feature.column_name
    if name not in entityset.dataframe_dict or column not in entityset[name].columns:
        return {f"column {name}.{column} is missing"}
    now, then = (str(t).replace("Nullable", "") for t in (entityset[name].ww.logical_types[column], feature.column_schema.logical_type))
    return set() if now == then else {f"column {name}.{column} is {now}, the model was trained on {then}"}


# --- who is scored, on which order -------------------------------------------------------------------


def resolve_as_of(as_of: str, order_times: pd.Series) -> pd.Timestamp:
    """The scoring date: `latest` (the source's latest order date), `now` (today, UTC) or an ISO date."""
    if as_of == "latest":
        return pd.Timestamp(pd.to_datetime(order_times).max()).normalize()
    if as_of == "now":
        return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    return pd.Timestamp(as_of).normalize()


def latest_orders(
    orders: pd.DataFrame, instants: pd.Series, order_key: str, customer_key: str, time_index: str, as_of: pd.Timestamp, active_days: int
) -> pd.DataFrame:
    """Each active customer's latest order placed on or before `as_of` (the whole day counts).

    Active: that order falls in the `active_days` days ending on `as_of`. "Latest" follows the
    tie-broken instants, so of two same-day orders the one with the higher key is the latest, as
    it is for the features.
    """
    end = as_of + pd.Timedelta(days=1)
    frame = pd.DataFrame(
        {
            "customer_id": orders[customer_key].to_numpy(),
            "order_id": orders[order_key].to_numpy(),
            "order_time": pd.to_datetime(orders[time_index]).to_numpy(),
            "instant": orders[order_key].map(instants).to_numpy(),
        }
    )
    placed = frame[(frame["order_time"] < end) & frame["customer_id"].notna()]
    latest = placed.sort_values(["instant", "order_id"], kind="mergesort").groupby("customer_id").tail(1)
    active = latest[latest["order_time"] >= end - pd.Timedelta(days=active_days)]
    return active.sort_values("customer_id", kind="mergesort").reset_index(drop=True)


def customer_features(
    cfg: Config, inputs: ModelInputs, tables: dict[str, pd.DataFrame], as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latest orders of the active customers, the model's input rows for them): training's feature code, cutoff = each order's instant."""
    from pipeline import tracking
    from pipeline.features import calculate_features, order_instants, point_in_time_entityset
    from pipeline.spec import load_spec

    spec = load_spec(cfg.data.spec)
    target = spec.target
    key = spec.entities[target.entity].index
    entityset = point_in_time_entityset(spec, tables)
    check_definitions(inputs.features, entityset)
    instants = order_instants(spec, tables)
    latest = latest_orders(tables[target.entity], instants, key, target.customer_key, target.time_index, as_of, cfg.scoring.active_days)
    if latest.empty:
        newest = pd.to_datetime(tables[target.entity][target.time_index]).max()
        raise NoActiveCustomers(
            f"no active customer as of {as_of.date()}: no order in the {cfg.scoring.active_days} days up to it (the source's "
            f"latest order is of {newest}). Use --as-of latest, an earlier --as-of, or a larger scoring.active_days"
        )
    cutoff = pd.DataFrame({key: latest["order_id"].to_numpy(), "time": latest["instant"].to_numpy()})
    matrix = calculate_features(inputs.features, entityset, cutoff, engine=cfg.features.engine)
    aligned = tracking.aligned_features(inputs.encoder.transform(matrix), inputs.booster)
    if isinstance(aligned, str):
        raise ScoringError(f"{inputs.label}: {aligned.replace('the champion', 'the model')}")
    return latest, aligned


# --- scores, bands, reasons ------------------------------------------------------------------------


def churn_probability(model: ScoringModel, X: pd.DataFrame) -> np.ndarray:
    """Calibrated churn probabilities, as the training run reports them (booster output, then its calibrator)."""
    return model.calibrator.transform(model.booster.predict(X))


def risk_bands(proba: np.ndarray, threshold: float, high_band: str, bands: dict[str, float]) -> np.ndarray:
    """`high_band` at or above the decision threshold; below it, each band from its lower quantile of the remaining scores."""
    out = np.full(len(proba), high_band, dtype=object)
    below = proba < threshold
    if below.any():
        starts = sorted(bands.items(), key=lambda item: item[1])
        cuts = np.quantile(proba[below], [q for _, q in starts])
        which = np.searchsorted(cuts, proba[below], side="right") - 1
        out[below] = np.array([name for name, _ in starts], dtype=object)[np.maximum(which, 0)]
    return out


def top_reasons(booster: lightgbm.Booster, X: pd.DataFrame, n: int = TOP_REASONS) -> pd.DataFrame:
    """Per row, the `n` features pushing the churn score up most (largest positive SHAP values), with their values.

    Fewer than `n` features may push a row up: the remaining reasons are empty.
    """
    from pipeline.explain import shap_values

    values = shap_values(booster, X)
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    columns: dict[str, list] = {}
    for i in range(n):
        j = order[:, i]
        pushes = values[np.arange(len(X)), j] > 0
        names = np.asarray(X.columns, dtype=object)[j]
        columns[f"reason_{i + 1}"] = [name if up else None for name, up in zip(names, pushes, strict=True)]
        columns[f"reason_{i + 1}_value"] = [
            _shown(X.iat[row, col]) if up else None for row, (col, up) in enumerate(zip(j, pushes, strict=True))
        ]
        columns[f"reason_{i + 1}_shap"] = np.where(pushes, values[np.arange(len(X)), j], np.nan)
    return pd.DataFrame(columns, index=X.index)


def _shown(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    return f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)


# --- drift against the population at the end of the training data ----------------------------------


def drift_reference_at(cfg: Config, inputs: ModelInputs, tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> dict[str, Any]:
    """The drift reference stored with a model: the population scoring would have scored on `as_of`
    (the end of the training data), each active customer at their latest order, by scoring's own path.

    Today's scores are then compared like for like. The training rows themselves (every order of
    every customer) would make each history-length feature (order counts, days since the first
    order) drift by construction, and the alert fire on every run."""
    _, X = customer_features(cfg, inputs, tables, as_of)
    return {"as_of": as_of.date().isoformat(), "customers": len(X), "features": drift_reference(X, cfg.scoring.psi_bins)}


def drift_reference(X: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """Each feature's distribution in `X`: numeric ones over quantile bins of it, categorical ones over categories (+ missing).

    Stored with the model (MLflow `features/drift_reference.json`) so scoring measures drift
    without recomputing the reference population.
    """
    reference: dict[str, Any] = {}
    for col in X.columns:
        series = X[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            categories = [str(c) for c in series.cat.categories]
            reference[str(col)] = {"kind": "categorical", "categories": categories, "shares": _categorical_shares(series, categories)}
        else:
            values = series.astype("float64").dropna().to_numpy()
            edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])).tolist() if len(values) else []
            reference[str(col)] = {"kind": "numeric", "edges": edges, "shares": _numeric_shares(series, edges)}
    return reference


def _numeric_shares(series: pd.Series, edges: list[float]) -> list[float]:
    """Shares of the bins cut at `edges` (a value on an edge goes up), then of missing values."""
    values = series.astype("float64").to_numpy()
    bins = np.where(np.isnan(values), len(edges) + 1, np.searchsorted(edges, values, side="right"))
    return (np.bincount(bins, minlength=len(edges) + 2) / max(len(values), 1)).tolist()


def _categorical_shares(series: pd.Series, categories: list[str]) -> list[float]:
    """Shares of each category, then of missing values (unseen categories are missing after encoding too)."""
    text = series.astype("object").where(series.notna(), None).map(lambda v: None if v is None else str(v))
    counts = text.value_counts()
    return [*(float(counts.get(c, 0)) / max(len(series), 1) for c in categories), float(text.isna().mean()) if len(series) else 0.0]


def order_date_parts(features: list[FeatureBase], order_entity: str) -> list[str]:
    """Transforms of the scored order's own date columns only (MONTH(OrderDate), WEEKDAY(OrderDate)):
    for each customer's latest order up to the scoring date they follow that date, not the customers,
    so they are left out of the drift (they would be over any threshold whenever two dates' seasons
    differ). Aggregates over dates (days since the first order) stay in."""
    return [
        f.get_name()
        for f in features
        if isinstance(f, TransformFeature)
        and f.dataframe_name == order_entity
        and all(isinstance(b, IdentityFeature) and b.column_schema.is_datetime for b in f.base_features)
    ]


def population_stability(reference: dict[str, Any], X: pd.DataFrame) -> pd.Series:
    """PSI per feature, sum over bins of (actual - expected) x ln(actual / expected), highest first.

    Rule of thumb: below 0.1 stable, 0.1-0.25 moderate, above 0.25 a shift worth a look.
    """
    psi = {}
    for col, ref in reference.items():
        if col not in X.columns:
            continue
        actual = _numeric_shares(X[col], ref["edges"]) if ref["kind"] == "numeric" else _categorical_shares(X[col], ref["categories"])
        a, e = np.clip(actual, PSI_FLOOR, None), np.clip(ref["shares"], PSI_FLOOR, None)
        psi[col] = float(np.sum((a - e) * np.log(a / e)))
    return pd.Series(psi, dtype="float64").sort_values(ascending=False, kind="stable")


# --- the scoring run -------------------------------------------------------------------------------


def score(cfg: Config, version: int | None = None) -> ScoringResult:
    """Score every active customer as of `scoring.as_of` with `version` (default: the champion); store the rows; return them with a summary."""
    from pipeline import steps
    from pipeline.data.extract import extract_tables
    from pipeline.spec import load_spec

    spec = load_spec(cfg.data.spec)
    model = load_model(cfg, version)
    check_spec(model, spec.name, steps.spec_digest(cfg.data.spec))
    tables = steps.handle_snapshot_columns(spec, extract_tables(cfg.data.url, spec), cfg.features.drop_snapshot)
    when = resolve_as_of(cfg.scoring.as_of, tables[spec.target.entity][spec.target.time_index])
    latest, X = customer_features(cfg, model.inputs, tables, when)
    scores = score_rows(cfg, model, latest, X, when)
    date_parts = [name for name in order_date_parts(model.features, spec.target.entity) if name in X.columns]
    psi = population_stability(model.drift_reference["features"], X.drop(columns=date_parts))
    summary = summarize(cfg, model, scores, psi, when, date_parts)
    summary["scores_uri"] = write_parquet(cfg, scores, model, when)
    summary["table_rows"] = write_table(scores, cfg.scoring.table_url, cfg.scoring.table)
    return ScoringResult(scores, X, summary)


def score_rows(cfg: Config, model: ScoringModel, latest: pd.DataFrame, X: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The output table: customer, as-of, order used, probability, band, reasons, model; highest risk first."""
    proba = churn_probability(model, X)
    s = cfg.scoring
    rows = pd.DataFrame(
        {
            "customer_id": latest["customer_id"].to_numpy(),
            "as_of": as_of.date().isoformat(),
            "order_id": latest["order_id"].to_numpy(),
            "order_time": latest["order_time"].to_numpy(),
            "days_since_order": (as_of - latest["order_time"].dt.normalize()).dt.days.to_numpy(),
            "churn_probability": proba,
            "risk_band": risk_bands(proba, model.threshold, s.high_band, s.bands),
        }
    )
    reasons = top_reasons(model.booster, X).reset_index(drop=True)
    rows = pd.concat([rows, reasons], axis=1).assign(model_name=model.name, model_version=model.version, training_run_id=model.run_id)
    return rows.sort_values(["churn_probability", "customer_id"], ascending=[False, True], kind="mergesort").reset_index(drop=True)


def summarize(
    cfg: Config, model: ScoringModel, scores: pd.DataFrame, psi: pd.Series, as_of: pd.Timestamp, left_out: list[str]
) -> dict[str, Any]:
    proba = scores["churn_probability"].to_numpy()
    bands = scores["risk_band"].value_counts(normalize=True)
    names = [cfg.scoring.high_band, *sorted(cfg.scoring.bands, key=cfg.scoring.bands.get, reverse=True)]
    return {
        "model": model.name,
        "version": model.version,
        "training_run_id": model.run_id,
        "as_of": as_of.date().isoformat(),
        "customers": len(scores),
        "active_days": cfg.scoring.active_days,
        "threshold": model.threshold,
        "probability": {"mean": float(proba.mean()), **{k: float(np.quantile(proba, q)) for k, q in QUANTILES.items()}},
        "bands": {name: float(bands.get(name, 0.0)) for name in names},
        "drift": {
            "reference_as_of": model.drift_reference["as_of"],
            "top_psi": [{"feature": f, "psi": round(v, 4)} for f, v in psi.head(PSI_TOP).items()],
            "max_psi": float(psi.max()) if len(psi) else 0.0,
            "features_over_0.25": int((psi > 0.25).sum()),
            "features": len(psi),
            "left_out": left_out,  # features without a PSI: the order's date parts
        },
        "psi": {f: round(v, 6) for f, v in psi.items()},
    }


def scores_key(model: ScoringModel, as_of: pd.Timestamp) -> str:
    return f"scores/{as_of.date().isoformat()}/{model.name}-v{model.version}.parquet"


def write_parquet(cfg: Config, scores: pd.DataFrame, model: ScoringModel, as_of: pd.Timestamp) -> str:
    from pipeline.steps import artifact_store
    from pipeline.storage import frame_to_bytes

    store = artifact_store(cfg)
    key = scores_key(model, as_of)
    store.put_bytes(key, frame_to_bytes(scores))
    return store.uri(key)


def write_table(scores: pd.DataFrame, url: str, table: str) -> int:
    """Replace the rows of this (model, version, as-of) in `table` in one transaction: a rerun never duplicates."""
    import sqlalchemy as sa

    first = scores.iloc[0]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if sa.inspect(conn).has_table(table):
                target = sa.Table(table, sa.MetaData(), autoload_with=conn)
                conn.execute(
                    target.delete().where(
                        (target.c.model_name == first["model_name"])
                        & (target.c.model_version == int(first["model_version"]))
                        & (target.c.as_of == first["as_of"])
                    )
                )
            scores.to_sql(table, conn, if_exists="append", index=False)
    finally:
        engine.dispose()
    return len(scores)


def log_summary(cfg: Config, summary: dict[str, Any]) -> str:
    """An MLflow run `score-<as-of>` in the model's experiment, tagged with the model version; returns its id."""
    import mlflow

    from pipeline import tracking

    t = cfg.tracking
    tracking.setup(t.tracking_uri, t.experiment, t.artifact_location)
    with mlflow.start_run(run_name=f"score-{summary['as_of']}") as run:
        mlflow.set_tags(
            {
                "kind": "scoring",
                "model_name": summary["model"],
                "model_version": str(summary["version"]),
                "training_run_id": summary["training_run_id"],
                "as_of": summary["as_of"],
            }
        )
        mlflow.log_metrics(
            {
                "customers": summary["customers"],
                "max_psi": summary["drift"]["max_psi"],
                **{f"probability_{k}": v for k, v in summary["probability"].items()},
                **{f"share_{band}": v for band, v in summary["bands"].items()},
            }
        )
        mlflow.log_dict({k: v for k, v in summary.items() if k != "psi"}, "scoring_summary.json")
        mlflow.log_dict(summary["psi"], "drift_psi.json")
    return run.info.run_id


def top_table(scores: pd.DataFrame, n: int) -> str:
    """The `n` customers most at risk as a small text table, their reasons as `feature = value`."""
    from pipeline.explain import shorten

    top = scores.head(n)
    reasons = [
        "; ".join(
            f"{shorten(row[f'reason_{i}'], 45)} = {row[f'reason_{i}_value']}" for i in range(1, TOP_REASONS + 1) if row[f"reason_{i}"]
        )
        for _, row in top.iterrows()
    ]
    width = max(map(len, reasons), default=0)  # left-aligned: pandas right-aligns text columns
    table = top[["customer_id", "churn_probability", "risk_band", "days_since_order"]].assign(
        pushed_up_by=[r.ljust(width) for r in reasons]
    )
    return table.to_string(index=False, justify="left", float_format=lambda v: f"{v:.3f}")


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary for people: one line per topic."""
    p, d = summary["probability"], summary["drift"]
    return [
        f"scored      {summary['customers']} customers active in the {summary['active_days']} days up to {summary['as_of']} "
        f"with {summary['model']} v{summary['version']} (training run {summary['training_run_id']})",
        f"probability mean {p['mean']:.3f} | min {p['min']:.3f} p10 {p['p10']:.3f} p25 {p['p25']:.3f} p50 {p['p50']:.3f} "
        f"p75 {p['p75']:.3f} p90 {p['p90']:.3f} max {p['max']:.3f}",
        "bands       "
        + ", ".join(f"{name} {share:.1%}" for name, share in summary["bands"].items())
        + f" (high: probability >= threshold {summary['threshold']:.3f})",
        f"drift       PSI vs {_reference(d)}, {d['features_over_0.25']} of {d['features']} features above 0.25; top: "
        + ", ".join(f"{row['feature']} {row['psi']:.3f}" for row in d["top_psi"])
        + (f" (left out, they follow the scoring date: {', '.join(d['left_out'])})" if d.get("left_out") else ""),
        f"stored      {summary.get('scores_uri')}; {summary.get('table_rows')} rows in the scores table; "
        f"MLflow run {summary.get('mlflow_run_id')}",
    ]


def _reference(drift: dict[str, Any]) -> str:
    when = drift.get("reference_as_of")
    return f"the customers active on {when} (end of the training data)" if when else "the training rows"


def encoder_json(encoder: Encoder) -> dict[str, Any]:
    """The encoder as JSON (logged with the model: scoring needs it, and JSON loads without unpickling)."""
    return asdict(encoder)
