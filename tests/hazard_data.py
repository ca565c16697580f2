"""A seeded subscription-style dataset whose churn hazard is known and driven by recent behaviour.

Customers pay monthly (the target rows, exactly 30 days apart), use an app (sessions with a
duration in minutes) and open support tickets (severity 1-3). Two hidden states drift month by
month: engagement (more and longer sessions) and financial stress (late payments, tickets). After
each payment the customer leaves with probability

    hazard = sigmoid(-1.2 - 0.9 log1p(sessions in the last 30 days) + 0.6 late-payment streak
                     + 0.45 max ticket severity in the last 30 days + 0.025 days since the last session, at most 90
                     + 0.4 basic plan)

computed from the rows generated up to that payment, so the hazard is a function of what a
point-in-time feature can see; the Bayes AUC of a test set is the AUC of this hazard there.
All-history aggregates see the customer's average, not the last month: they blur it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import FeatureConfig
from pipeline.features import synthesize
from pipeline.labels import label_orders
from pipeline.models import LightGBMModel
from pipeline.preprocess import Encoder, features_and_label, time_split
from pipeline.spec import DatasetSpec, load_spec

log = logging.getLogger(__name__)
SPEC_PATH = Path(__file__).parent / "data" / "hazard" / "spec.yaml"
START = pd.Timestamp("2020-01-01")
MONTHS = 36
PERIOD = pd.Timedelta(days=30)
HORIZON_DAYS = 45  # payments are 30 days apart: churn = the next one never comes


def hazard_spec() -> DatasetSpec:
    return load_spec(str(SPEC_PATH))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def generate(customers: int = 3000, seed: int = 0) -> tuple[dict[str, pd.DataFrame], pd.Series]:
    """(tables by entity name, true hazard by PaymentID)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, customers + 1)
    plan_basic = rng.random(customers) < 0.5
    start_month = rng.integers(0, MONTHS // 2, customers)
    offset = pd.to_timedelta(rng.integers(0, 30 * 24 * 3600, customers), unit="s")  # each customer's billing second
    baseline = rng.normal(0, 0.5, customers)
    engagement, stress = rng.normal(0, 0.5, customers), rng.normal(0, 0.8, customers)
    alive = np.ones(customers, bool)
    streak = np.zeros(customers)
    last_session = np.full(customers, np.datetime64("NaT"), dtype="datetime64[ns]")
    payments, sessions, tickets = [], [], []
    for month in range(MONTHS):
        engagement = 0.85 * engagement + rng.normal(0, 0.45, customers)
        stress = 0.7 * stress + rng.normal(0, 0.9, customers)
        active = np.flatnonzero(alive & (start_month <= month))
        paid_at = (START + month * PERIOD + offset[active]).to_numpy()
        n_sessions = rng.poisson(np.exp(1.1 + baseline[active] + engagement[active]))
        sessions.append(_events(rng, ids[active], paid_at, n_sessions, Minutes=np.exp(rng.normal(2.5 + 0.3 * engagement[active], 0.5))))
        n_tickets = rng.poisson(0.2 + 0.5 * _sigmoid(stress[active]))
        severity = 1 + rng.binomial(2, _sigmoid(stress[active] - 0.5))
        tickets.append(_events(rng, ids[active], paid_at, n_tickets, Severity=severity))
        late = rng.random(len(active)) < _sigmoid(-1.8 + 1.2 * stress[active])
        streak[active] = np.where(late, streak[active] + 1, 0)
        last_session[active] = _latest(sessions[-1], ids[active], last_session[active])
        idle_days = np.nan_to_num((paid_at - last_session[active]) / np.timedelta64(1, "D"), nan=90.0)
        max_severity = pd.Series(tickets[-1]["Severity"].to_numpy(), index=tickets[-1]["CustomerID"]).groupby(level=0).max()
        z = (
            -1.2
            - 0.9 * np.log1p(n_sessions)
            + 0.6 * streak[active]
            + 0.45 * max_severity.reindex(ids[active], fill_value=0).to_numpy()
            + 0.025 * np.minimum(idle_days, 90)
            + 0.4 * plan_basic[active]
        )
        hazard = _sigmoid(z)
        payments.append(
            pd.DataFrame(
                {
                    "CustomerID": ids[active],
                    "PaidAt": paid_at,
                    "Amount": np.where(plan_basic[active], 20.0, 50.0) + rng.normal(0, 2, len(active)).round(2),
                    "Late": late,
                    "hazard": hazard,
                }
            )
        )
        alive[active] = rng.random(len(active)) >= hazard
    return _tables(ids, plan_basic, payments, sessions, tickets)


def _events(rng, customer_ids: np.ndarray, until: np.ndarray, counts: np.ndarray, **values: np.ndarray) -> pd.DataFrame:
    """`counts[i]` events of customer i at uniform instants of the 30 days before `until[i]` (never on it)."""
    owner = np.repeat(np.arange(len(customer_ids)), counts)
    seconds_before = rng.integers(1, int(PERIOD.total_seconds()), len(owner))
    frame = pd.DataFrame({"CustomerID": customer_ids[owner], "at": until[owner] - pd.to_timedelta(seconds_before, unit="s").to_numpy()})
    for name, per_customer in values.items():
        frame[name] = per_customer[owner]
    return frame


def _latest(events: pd.DataFrame, customer_ids: np.ndarray, before: np.ndarray) -> np.ndarray:
    latest = events.groupby("CustomerID")["at"].max().reindex(customer_ids).to_numpy()
    return np.where(pd.isna(latest), before, latest)


def _tables(ids, plan_basic, payments, sessions, tickets) -> tuple[dict[str, pd.DataFrame], pd.Series]:
    pay = pd.concat(payments, ignore_index=True)
    pay.insert(0, "PaymentID", np.arange(1, len(pay) + 1))
    hazard = pay.set_index("PaymentID")["hazard"]
    sess = pd.concat(sessions, ignore_index=True).rename(columns={"at": "StartedAt"})
    sess = sess.assign(SessionID=np.arange(1, len(sess) + 1), Minutes=sess["Minutes"].round(1))
    tick = pd.concat(tickets, ignore_index=True).rename(columns={"at": "OpenedAt"})
    tick = tick.assign(TicketID=np.arange(1, len(tick) + 1))
    tables = {
        "customers": pd.DataFrame({"CustomerID": ids, "Plan": np.where(plan_basic, "basic", "pro")}),
        "payments": pay.drop(columns="hazard"),
        "sessions": sess,
        "tickets": tick,
    }
    return tables, hazard


def labelled(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return label_orders(tables["payments"], "PaymentID", "CustomerID", "PaidAt", HORIZON_DAYS)


PARAMS = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 50, "feature_fraction": 0.8, "lambda_l2": 1.0}
DFS = FeatureConfig().model_dump(include={"agg_primitives", "trans_primitives", "max_depth", "max_features"})  # the pipeline's defaults


def fit_and_score(spec: DatasetSpec, tables: dict[str, pd.DataFrame], windows: list[str], recency: bool) -> tuple[pd.Series, pd.Series]:
    """The pipeline's feature and model path (synthesize, time split with purge, encoder, LightGBM with early
    stopping on the validation part): (test labels, test predictions), indexed by PaymentID."""
    labels = labelled(tables)
    result = synthesize(spec, tables, labels, windows=windows, recency=recency, **DFS)
    times = labels.set_index("PaymentID")["PaidAt"].reindex(result.matrix.index)
    split = time_split(result.matrix, times, test_size=0.2, valid_size=0.2, horizon_days=HORIZON_DAYS)
    encoder = Encoder().fit(split.train)
    parts = [features_and_label(part, encoder) for part in (split.train, split.valid, split.test)]
    model = LightGBMModel(params=dict(PARAMS), num_boost_round=1000, early_stopping_rounds=50, num_threads=1)
    started = time.perf_counter()
    model.fit(*parts[0], *parts[1])
    log.info("LightGBM: %d rounds in %.1fs", model.best_iteration, time.perf_counter() - started)
    X_test, y_test = parts[2]
    return y_test, pd.Series(model.predict_proba(X_test), index=X_test.index)
