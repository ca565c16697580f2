"""Churn labels at the sales-order grain.

For each order placed at least `horizon` before the last order date in the data,
churn = 1 if the same customer places no further order within `horizon` after it
(i.e. the next order is more than `horizon` later, or never), else 0. Orders
closer than `horizon` to the end of the data cannot be judged yet and are left
unlabelled. A re-order exactly `horizon` days later counts as "came back".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL = "churn"


class LabelError(ValueError):
    """Labels cannot be computed or are unusable (e.g. only one class)."""


def label_orders(
    orders: pd.DataFrame,
    order_key: str,
    customer_key: str,
    time_index: str,
    horizon_days: int = 180,
) -> pd.DataFrame:
    """One row per labelled order: `order_key`, `time_index` (the cutoff time) and `churn`.

    Vectorised: sort by customer and time, look at each order's next order of the
    same customer. Several orders of one customer on the same day see each other as
    "next order" at a gap of 0 days, i.e. not churn, which is what the definition
    says (another order followed within the horizon).
    """
    missing = {order_key, customer_key, time_index} - set(orders.columns)
    if missing:
        raise LabelError(f"orders table lacks column(s) {sorted(missing)} needed for labels")
    if orders.empty:
        raise LabelError("no orders to label: the extract of the target entity is empty")
    horizon = pd.Timedelta(days=horizon_days)
    frame = orders[[order_key, customer_key, time_index]].copy()
    frame[time_index] = pd.to_datetime(frame[time_index])
    frame = frame.sort_values([customer_key, time_index, order_key], kind="mergesort")
    next_order = frame.groupby(customer_key, sort=False)[time_index].shift(-1)
    gap = next_order - frame[time_index]
    last_date = frame[time_index].max()
    labelled = frame[time_index] <= last_date - horizon
    churn = (gap.isna() | (gap > horizon)).astype(np.int8)
    result = frame.loc[labelled, [order_key, time_index]].assign(**{LABEL: churn[labelled].to_numpy()})
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
            "check labels.horizon_days and the data's date range"
        )
    return {"labelled_orders": float(len(labels)), "churn_rate": float(labels[LABEL].mean())}
