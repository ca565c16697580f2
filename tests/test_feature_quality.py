"""Window and recency features recover a churn hazard driven by recent behaviour (tests/hazard_data.py).

The Bayes AUC is the AUC of the true hazard on the same test rows: no model can expect more. With
windows and recency on, the pipeline's feature and model path gets within 0.02 of it; with them off
(all-history DFS aggregates only) it falls far short. Both AUCs are printed (`pytest -s`).
"""

import pytest
from sklearn.metrics import roc_auc_score

from tests.hazard_data import fit_and_score, generate, hazard_spec

pytestmark = pytest.mark.slow  # about 30 s: 5,000 customers, 25k payments, 180k sessions


def test_windows_and_recency_reach_the_bayes_auc_of_a_recent_behaviour_hazard():
    tables, hazard = generate(customers=5000, seed=0)
    spec = hazard_spec()
    y_on, p_on = fit_and_score(spec, tables, windows=["30d", "90d"], recency=True)
    y_off, p_off = fit_and_score(spec, tables, windows=[], recency=False)
    assert y_on.index.equals(y_off.index)  # the same test rows
    bayes = roc_auc_score(y_on, hazard.reindex(y_on.index))
    on, off = roc_auc_score(y_on, p_on), roc_auc_score(y_off, p_off)
    print(f"test ROC AUC: windows+recency on {on:.4f}, off {off:.4f}, Bayes {bayes:.4f} ({len(y_on)} test rows)")
    assert on >= bayes - 0.02
    assert on - off > 0.05  # the gap they close: all-history aggregates blur last month's behaviour
