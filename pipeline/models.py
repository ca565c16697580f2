"""A small model interface and its LightGBM implementation.

Binary objective, early stopping on a validation part, pandas `category` columns
used as native LightGBM categoricals. The training Dataset can be built once and
reused across fits (LightGBM bins features when the Dataset is constructed), which
is what makes tuning trials cheap.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# LightGBM rejects these characters in feature names; featuretools names never use them.
_FORBIDDEN_IN_NAMES = set('",:[]{}')
EVAL_METRIC = {"roc_auc": "auc", "pr_auc": "average_precision", "log_loss": "binary_logloss", "brier": "binary_logloss"}


def check_feature_names(columns: list[str]) -> None:
    bad = [c for c in columns if _FORBIDDEN_IN_NAMES & set(c)]
    if bad:
        raise ValueError(f"feature names with characters LightGBM rejects ({''.join(sorted(_FORBIDDEN_IN_NAMES))}): {bad[:5]}")


def default_threads(workers_on_host: int = 1) -> int:
    """Cores / workers on this host, so that K workers on one machine do not oversubscribe it."""
    return max(1, (os.cpu_count() or 1) // max(1, workers_on_host))


@dataclass
class TrainData:
    """LightGBM Datasets built once (features binned once) and reused by every fit."""

    train: lgb.Dataset
    valid: lgb.Dataset
    X_valid: pd.DataFrame
    y_valid: np.ndarray

    @classmethod
    def build(cls, X_train: pd.DataFrame, y_train: pd.Series, X_valid: pd.DataFrame, y_valid: pd.Series) -> TrainData:
        check_feature_names(list(X_train.columns))
        # feature_pre_filter off: min_data_in_leaf may vary between fits on the same Dataset
        train = lgb.Dataset(X_train, label=y_train.to_numpy(), params={"feature_pre_filter": False, "verbosity": -1}, free_raw_data=False)
        valid = lgb.Dataset(X_valid, label=y_valid.to_numpy(), reference=train, free_raw_data=False)
        train.construct()
        valid.construct()
        return cls(train=train, valid=valid, X_valid=X_valid, y_valid=y_valid.to_numpy())


@dataclass
class LightGBMModel:
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 2000
    early_stopping_rounds: int = 50
    metric: str = "roc_auc"
    num_threads: int = 0
    booster: lgb.Booster | None = None

    def lgb_params(self) -> dict[str, Any]:
        params = {"objective": "binary", "verbosity": -1, **self.params}
        params["metric"] = EVAL_METRIC[self.metric]
        params["num_threads"] = self.num_threads or default_threads()
        params.setdefault("seed", 42)
        params["deterministic"] = True
        return params

    def fit_data(self, data: TrainData, callbacks: list[Callable] | None = None) -> LightGBMModel:
        """Train with early stopping on `data.valid`; extra callbacks (e.g. a pruner) see every iteration."""
        self.booster = lgb.train(
            self.lgb_params(),
            data.train,
            num_boost_round=self.num_boost_round,
            valid_sets=[data.valid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False), *(callbacks or [])],
        )
        return self

    def fit(self, X_train: pd.DataFrame, y_train: pd.Series, X_valid: pd.DataFrame, y_valid: pd.Series) -> LightGBMModel:
        return self.fit_data(TrainData.build(X_train, y_train, X_valid, y_valid))

    def fit_rounds(self, X: pd.DataFrame, y: pd.Series, num_boost_round: int) -> LightGBMModel:
        """Fixed number of rounds, no validation part: the final refit on train + valid."""
        check_feature_names(list(X.columns))
        params = {k: v for k, v in self.lgb_params().items() if k != "metric"}
        self.booster = lgb.train(params, lgb.Dataset(X, label=y.to_numpy()), num_boost_round=max(1, num_boost_round))
        return self

    @property
    def best_iteration(self) -> int:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        return int(self.booster.best_iteration or self.booster.current_iteration())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        return self.booster.predict(X, num_iteration=self.best_iteration)

    def save(self, path: str | Path) -> None:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        Path(path).write_text(json.dumps({"metric": self.metric, "params": self.params, "model": self.booster.model_to_string()}))

    @classmethod
    def load(cls, path: str | Path) -> LightGBMModel:
        saved = json.loads(Path(path).read_text())
        return cls(params=saved["params"], metric=saved["metric"], booster=lgb.Booster(model_str=saved["model"]))
