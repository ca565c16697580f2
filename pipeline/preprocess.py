"""Split the feature matrix in time (or at random, for comparisons) and encode it, fitted on train only."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.labels import LABEL

log = logging.getLogger(__name__)


class SplitError(ValueError):
    """Too few rows or a one-class part: the split cannot train or evaluate a model."""


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    info: dict[str, object] = field(default_factory=dict)


def _check_part(name: str, part: pd.DataFrame, min_rows: int) -> None:
    if len(part) < min_rows:
        raise SplitError(
            f"the {name} part has {len(part)} rows, fewer than split.min_rows={min_rows}: "
            "use more data (more customers / a longer history) or smaller test/valid sizes"
        )
    if part[LABEL].nunique() < 2:
        raise SplitError(f"the {name} part has only churn={int(part[LABEL].iloc[0])}: both classes are needed")


def time_split(
    frame: pd.DataFrame,
    times: pd.Series,
    test_size: float,
    valid_size: float,
    horizon_days: int,
    min_rows: int = 50,
    purge: bool = True,
) -> Split:
    """Test = the latest `test_size` of orders; valid = the latest `valid_size` of the rest.

    Training orders whose label window (order time + horizon) reaches into the test
    period are purged: their labels were decided by events that happen during the
    test period, so keeping them would let the model see the test period's outcomes.
    """
    order = np.argsort(times.to_numpy(), kind="mergesort")
    frame, times = frame.iloc[order], times.iloc[order]
    test_start = times.iloc[int(len(times) * (1 - test_size))]
    is_test = (times >= test_start).to_numpy()
    purge_from = test_start - pd.Timedelta(days=horizon_days if purge else 0)
    before = frame[~is_test & (times < purge_from).to_numpy()]
    purged = int((~is_test).sum() - len(before))
    n_valid = int(len(before) * valid_size)
    split = Split(
        train=before.iloc[: len(before) - n_valid],
        valid=before.iloc[len(before) - n_valid :],
        test=frame[is_test],
        info={"method": "time", "test_start": str(test_start), "purged_train_rows": purged},
    )
    for name in ("train", "valid", "test"):
        _check_part(name, getattr(split, name), min_rows)
    log.info(
        "time split: train %d, valid %d, test %d (from %s); %d training orders purged (label window overlaps test)",
        len(split.train),
        len(split.valid),
        len(split.test),
        test_start.date(),
        purged,
    )
    return split


def random_split(frame: pd.DataFrame, test_size: float, valid_size: float, seed: int, min_rows: int = 50) -> Split:
    """Stratified random split: only to compare with published results that used one (optimistic)."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame[LABEL])
    train, valid = train_test_split(rest, test_size=valid_size, random_state=seed, stratify=rest[LABEL])
    split = Split(train=train, valid=valid, test=test, info={"method": "random"})
    for name in ("train", "valid", "test"):
        _check_part(name, getattr(split, name), min_rows)
    return split


@dataclass
class Encoder:
    """Column handling learned from the training part only, then applied to every part.

    Categories are those seen in training (unseen values become missing, which
    LightGBM handles natively); booleans become 0/1 floats; datetimes, and columns
    constant or empty in training, are dropped. Column names are kept as they are.
    """

    categories: dict[str, list] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categories]

    def fit(self, train: pd.DataFrame) -> Encoder:
        for col in train.columns:
            if col == LABEL:
                continue
            series = train[col]
            if pd.api.types.is_datetime64_any_dtype(series):
                self.dropped[col] = "datetime"
            elif series.nunique(dropna=True) <= 1:
                self.dropped[col] = "constant or empty in training"
            elif (
                isinstance(series.dtype, pd.CategoricalDtype)
                or pd.api.types.is_object_dtype(series)
                or pd.api.types.is_string_dtype(series)
            ):
                self.categories[col] = sorted(series.dropna().astype(str).unique().tolist())
            else:
                self.numeric.append(col)
        if not self.columns:
            raise SplitError("no usable feature: every column is constant, empty or a date in the training part")
        return self

    def unseen_categories(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Per categorical column, the values of `frame` training never saw (`transform` makes them missing)."""
        found = {}
        for col, cats in self.categories.items():
            values = frame[col].dropna().astype(str)
            unseen = values[~values.isin(cats)]
            if len(unseen):
                found[col] = unseen
        return found

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The encoded frame, built in one go: inserting column by column fragments it (pandas then
        warns once per column, hundreds of lines with the window features)."""
        columns: dict[str, object] = {}
        for col in self.numeric:
            values = pd.to_numeric(frame[col].astype("float64") if frame[col].dtype == "boolean" else frame[col], errors="coerce")
            columns[col] = values.astype("float64").replace([np.inf, -np.inf], np.nan)
        for col, cats in self.categories.items():
            as_text = frame[col].astype("object").where(frame[col].notna(), None)
            columns[col] = pd.Categorical(as_text.map(lambda v: None if v is None else str(v)), categories=cats)
        return pd.DataFrame(columns, index=frame.index)


def warn_unseen_categories(encoder: Encoder, part: str, frame: pd.DataFrame) -> dict[str, int]:
    """Name the categorical features whose values in `part` training never saw (the model treats
    them as missing: a new territory or product line scores as if unknown), with example rows."""
    from pipeline.data.extract import examples

    counts = {}
    for col, unseen in encoder.unseen_categories(frame).items():
        counts[col] = len(unseen)
        log.warning(
            "%s part: feature %r has %d value(s) never seen in training (encoded as missing), e.g. %s (rows %s)",
            part,
            col,
            len(unseen),
            examples(unseen.drop_duplicates()),
            examples(unseen.index.to_series()),
        )
    return counts


def features_and_label(frame: pd.DataFrame, encoder: Encoder) -> tuple[pd.DataFrame, pd.Series]:
    return encoder.transform(frame), frame[LABEL].astype("int8")
