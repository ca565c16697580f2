"""Churn labels at the sales-order grain, under one of two definitions.

Only orders placed at least `horizon` before the last order date in the data are
labelled (later ones cannot be judged yet); the set is the same for both definitions.

- `within_horizon` (default): churn = 1 if the same customer places no further order
  within `horizon` after it (the next order is more than `horizon` later, or never),
  else 0. A re-order exactly `horizon` days later counts as "came back".
- `active_after_horizon` (the widely cited AdventureWorks churn benchmark): churn = 0
  if the customer places another order strictly more than `horizon` after this one
  ("still active after the horizon"), else 1. A re-order exactly `horizon` days
  later, or only earlier re-orders, count as churn.

The two disagree on a customer who comes back soon and then stops (churn only for the
benchmark) and on one who comes back only after a long gap (churn only for ours).
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd

from pipeline.config import LabelDefinition

LABEL = "churn"
DEFINITIONS: tuple[str, ...] = get_args(LabelDefinition)


class LabelError(ValueError):
    """Labels cannot be computed or are unusable (e.g. only one class)."""


def label_orders(
    orders: pd.DataFrame,
    order_key: str,
    customer_key: str,
    time_index: str,
    horizon_days: int = 180,
    definition: LabelDefinition = "within_horizon",
) -> pd.DataFrame:
    """One row per labelled order: `order_key`, `time_index` (the cutoff time) and `churn`.

    Vectorised: sort by customer and time, then compare each order with its customer's
    next order (`within_horizon`) or last order (`active_after_horizon`). Several orders
    of one customer on the same day follow each other at a gap of 0 days: under
    `within_horizon` each but the day's last is not churn (another order followed within
    the horizon); under `active_after_horizon` they never count (not after the horizon).
    """
    if definition not in DEFINITIONS:
        raise LabelError(f"unknown label definition {definition!r}: labels.definition must be one of {list(DEFINITIONS)}")
    missing = {order_key, customer_key, time_index} - set(orders.columns)
    if missing:
        raise LabelError(f"orders table lacks column(s) {sorted(missing)} needed for labels")
    if orders.empty:
        raise LabelError("no orders to label: the extract of the target entity is empty")
    horizon = pd.Timedelta(days=horizon_days)
    frame = orders[[order_key, customer_key, time_index]].copy()
    frame[time_index] = pd.to_datetime(frame[time_index])
    frame = frame.sort_values([customer_key, time_index, order_key], kind="mergesort")
    by_customer = frame.groupby(customer_key, sort=False)[time_index]
    if definition == "within_horizon":
        gap = by_customer.shift(-1) - frame[time_index]
        churn = gap.isna() | (gap > horizon)
    else:
        churn = ~(by_customer.transform("max") - frame[time_index] > horizon)
    labelled = frame[time_index] <= frame[time_index].max() - horizon
    result = frame.loc[labelled, [order_key, time_index]].assign(**{LABEL: churn[labelled].to_numpy().astype(np.int8)})
    return result.sort_values([time_index, order_key], kind="mergesort").reset_index(drop=True)


def check_labels(labels: pd.DataFrame) -> dict[str, float]:
    """Fail early on labels a classifier cannot learn from; return their summary."""
    if labels.empty:
        raise LabelError(
            "no order is old enough to be labelled: every order is within the horizon of the last "
            "order date; use a smaller labels.horizon_days or more history"
        )
    counts = labels[LABEL].value_counts()
    if len(counts) < 2:
        only = int(counts.index[0])
        raise LabelError(
            f"all {len(labels)} labelled orders have churn={only}: a classifier needs both classes; "
            "check labels.horizon_days, labels.definition and the data's date range"
        )
    return {"labelled_orders": float(len(labels)), "churn_rate": float(labels[LABEL].mean())}
