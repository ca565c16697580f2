"""MLflow tracking and registry helpers (MLflow 3): setup, safe params, model logging, champion vs challenger.

Works the same against a local `sqlite:///` store and an `http://` tracking
server, because everything goes through the public fluent API and `MlflowClient`
on the URI set by `setup`.

Known limitation, pyfunc and categoricals: a booster trained on pandas `category`
columns predicts correctly through `mlflow.lightgbm.load_model(uri)` on the
pipeline's frames, but NOT through `mlflow.pyfunc.load_model(uri).predict`.
MLflow's schema enforcement refuses `category` input ("Can not safely convert
category to <U0") and LightGBM refuses the string columns MLflow would accept
("train and valid dataset categorical_feature do not match"). Batch scoring of
such models must therefore load the LightGBM flavour; numeric-only models work
with pyfunc too.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from sqlalchemy.engine import make_url

from pipeline import protocol
from pipeline.evaluation import Calibrator
from pipeline.masking import MASK, is_secret_key, mask_url
from pipeline.selection import ChampionScore, Decision, incomparable

log = logging.getLogger(__name__)

_TRUNCATED = "...[truncated]"
EXAMPLE_ROWS = 5
MAX_TAG_CHARS = 5000  # MLflow's limit for a model version tag value
# Explicit requirements: letting MLflow infer them runs the model in a subprocess (about 30 s on 2 busy cores).
MODEL_REQUIREMENTS = ("lightgbm", "numpy", "pandas", "scipy")


@dataclass(frozen=True)
class PromotionResult:
    version: int
    promoted: bool
    previous_champion_version: int | None
    decision: Decision


def redact(params: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a nested config to dotted MLflow params with secrets masked and values within MLflow's limit.

    Params are stored in plain text and shown to everyone with UI access, and
    config values such as database URLs routinely carry passwords.
    """
    return {key: _render(key, value) for key, value in _flatten(params)}


def log_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Log `redact(params)` to the active run and return exactly what was stored."""
    safe = redact(params)
    mlflow.log_params(safe)
    return safe


def setup(tracking_uri: str, experiment: str, artifact_location: str | None = None) -> str:
    """Point MLflow at `tracking_uri`, make sure `experiment` exists and is active; return its id.

    `artifact_location` only applies when the experiment is created here: MLflow
    cannot move an existing experiment's artifacts. A local path is made absolute,
    since MLflow would otherwise resolve it against whatever the worker's cwd is.
    """
    _ensure_sqlite_parent(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    existing = client.get_experiment_by_name(experiment)
    if existing is None:
        experiment_id = _create_experiment(client, experiment, _absolute_location(artifact_location))
    else:
        experiment_id = existing.experiment_id
        if existing.lifecycle_stage == "deleted":
            log.warning("MLflow experiment %r was deleted; restoring it", experiment)
            client.restore_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_model(booster: lightgbm.Booster, X_example: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log `booster` with the LightGBM flavour, a signature from `X_example` and its first rows as example.

    `category` columns appear as strings in the signature and example, because
    that is what a JSON request carries and MLflow has no categorical type. The
    stored model is the native booster, unchanged (see the module docstring for
    what that means for pyfunc).
    """
    serving = serving_frame(X_example)
    return mlflow.lightgbm.log_model(
        booster,
        name=name,
        signature=infer_signature(serving, booster.predict(X_example)),
        input_example=serving.head(EXAMPLE_ROWS),
        pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
        # the native booster cannot score a string example; validating would only log a misleading traceback
        validate_serving_input=not _category_columns(X_example),
    )


def serving_frame(X: pd.DataFrame) -> pd.DataFrame:
    """`X` as a JSON request would carry it: `category` columns become strings, missing values None."""
    out = X.copy()
    for col in _category_columns(X):
        out[col] = X[col].astype("string").astype(object).where(X[col].notna(), None)
    return out


def register_and_promote(
    model_uri: str,
    registered_name: str,
    tags: Mapping[str, str],
    X_rows: pd.DataFrame,
    score_rows: Callable[[np.ndarray], float],
    decide: Callable[[ChampionScore | None], Decision],
    alias: str = "champion",
) -> PromotionResult:
    """Register `model_uri` as a new version with `tags`, judge it against the champion, move `alias` only if `decide` says so.

    The champion is scored with `score_rows` on `X_rows` (the challenger's test rows and features),
    unless its `protocol.*` tags say the two models answer different questions (see
    `pipeline.selection.incomparable`) or it needs features the challenger's matrix lacks; the
    reason then goes to `decide`. The decision is stored on the new version (`promotion`,
    `promotion_reason` tags) whatever it is.
    """
    new = mlflow.register_model(model_uri, registered_name, tags=dict(tags))
    client = MlflowClient()
    current = _current_champion(client, registered_name, alias)
    champion = None if current is None else champion_on_rows(current, protocol.from_tags(tags), X_rows, score_rows)
    decision = decide(champion)
    if decision.promote:
        client.set_registered_model_alias(registered_name, alias, new.version)
    client.set_model_version_tag(registered_name, new.version, "promotion", "promoted" if decision.promote else "not promoted")
    client.set_model_version_tag(registered_name, new.version, "promotion_reason", decision.reason[:MAX_TAG_CHARS])
    log.info("%s v%s: %s (%s)", registered_name, new.version, f"now @{alias}" if decision.promote else "not promoted", decision.reason)
    return PromotionResult(int(new.version), decision.promote, champion.version if champion else None, decision)


def champion_on_rows(
    version: ModelVersion, challenger_fingerprint: Mapping[str, str], X_rows: pd.DataFrame, score_rows: Callable[[np.ndarray], float]
) -> ChampionScore:
    """The champion's score on the challenger's rows (booster + its run's calibrator), or why it was not scored."""
    fingerprint = protocol.from_tags(version.tags)
    reasons = incomparable(fingerprint, challenger_fingerprint)
    if reasons:
        return ChampionScore(int(version.version), fingerprint, not_scored_because="; ".join(reasons))
    try:
        booster = mlflow.lightgbm.load_model(f"models:/{version.name}/{version.version}")
    except (MlflowException, OSError) as exc:
        return ChampionScore(
            int(version.version), fingerprint, not_scored_because=f"its model could not be loaded from the registry ({exc})"
        )
    aligned = aligned_features(X_rows, booster)
    if isinstance(aligned, str):
        return ChampionScore(int(version.version), fingerprint, not_scored_because=aligned)
    proba = run_calibrator(version).transform(booster.predict(aligned))
    return ChampionScore(int(version.version), fingerprint, score=float(score_rows(proba)))


def aligned_features(X: pd.DataFrame, booster: lightgbm.Booster) -> pd.DataFrame | str:
    """`X`'s columns in the booster's order, or why that is impossible.

    LightGBM stores feature names with whitespace replaced by `_` and predicts by position, so
    columns are matched by that spelling and reordered; a missing feature or a different number
    of categorical columns makes the champion unscorable on these rows.
    """
    by_name = {re.sub(r"\s", "_", str(col)): col for col in X.columns}
    needed = booster.feature_name()
    missing = [name for name in needed if name not in by_name]
    if missing:
        return f"the champion uses {len(missing)} feature(s) missing from the challenger's matrix (e.g. {missing[:3]})"
    frame = X[[by_name[name] for name in needed]]
    expected = len(booster.pandas_categorical or [])
    if len(_category_columns(frame)) != expected:
        return f"the champion has {expected} categorical feature(s), the challenger's matrix {len(_category_columns(frame))} among them"
    return frame


def run_calibrator(version: ModelVersion) -> Calibrator:
    """The calibrator logged by the version's training run (`calibration.json`); identity, with a warning, if there is none."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="calibration.json")
    except (MlflowException, OSError) as exc:
        log.warning(
            "%s v%s: no calibration.json in run %s (%s); scoring its raw probabilities", version.name, version.version, version.run_id, exc
        )
        return Calibrator()
    return Calibrator.from_dict(json.loads(Path(path).read_text()))


@contextmanager
def batched_metrics(run_id: str, flush_every_s: float = 10.0) -> Iterator[Callable[[str, float, int], None]]:
    """`log(key, value, step)` for `run_id`, sent as one request every `flush_every_s` seconds and at
    the end: through a tracking server each request is a round trip and a login check, and one per
    tuning trial took as long as the trial itself."""
    client = MlflowClient()
    pending: list[Metric] = []
    flushed = time.monotonic()

    def flush() -> None:
        nonlocal flushed
        if pending:
            client.log_batch(run_id, metrics=list(pending))
            pending.clear()
        flushed = time.monotonic()

    def log_metric(key: str, value: float, step: int) -> None:
        pending.append(Metric(key, value, int(time.time() * 1000), step))
        if time.monotonic() - flushed >= flush_every_s:
            flush()

    try:
        yield log_metric
    finally:
        try:
            flush()
        except MlflowException as exc:  # never hide the error that ended the block
            log.warning("could not log the last %d metric(s) of run %s: %s", len(pending), run_id, exc)


def log_artifacts_dir(path: str | Path, artifact_path: str | None = None) -> None:
    """Log every file under `path` (plots, importance tables) to the active run."""
    mlflow.log_artifacts(str(path), artifact_path)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _render(key: str, value: Any) -> str:
    if is_secret_key(key) and value not in (None, ""):
        return MASK
    text = json.dumps(value, separators=(",", ":"), default=str) if isinstance(value, (list, tuple)) else str(value)
    text = mask_url(text)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        text = text[: MAX_PARAM_VAL_LENGTH - len(_TRUNCATED)] + _TRUNCATED
    return text


def _ensure_sqlite_parent(tracking_uri: str) -> None:
    """SQLite creates the database file but not its folder."""
    if tracking_uri.startswith("sqlite:"):
        database = make_url(tracking_uri).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def _absolute_location(artifact_location: str | None) -> str | None:
    if artifact_location is None or "://" in artifact_location:
        return artifact_location
    return str(Path(artifact_location).expanduser().resolve())


def _create_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """Create the experiment; a parallel worker may create it first, which is fine."""
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def _current_champion(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The aliased version, or None.

    Checked through the registered model's alias map rather than by catching the
    error from `get_model_version_by_alias`: a missing alias is reported as
    INVALID_PARAMETER_VALUE, the same code as a malformed name, so catching it
    could hide real errors.
    """
    aliases = client.get_registered_model(name).aliases
    return client.get_model_version_by_alias(name, alias) if alias in aliases else None


def _category_columns(X: pd.DataFrame) -> list[str]:
    return [col for col, dtype in X.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)]
