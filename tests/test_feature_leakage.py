"""A table written after every target row (an exit survey) must not reach any feature or the model.

The survey is planted to give the answer away: churners write one, with a low score. Every
feature built from it must be constant or empty at every cutoff (no survey row is ever visible),
so the encoder drops them all and the model's test AUC is exactly the one without the table.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.features import synthesize
from pipeline.spec import Entity, Relationship
from tests.hazard_data import DFS, fit_and_score, generate, hazard_spec, labelled


def with_exit_survey(spec, tables, written_at: pd.Timestamp | None = None):
    """An exit survey of every customer who left: how many payments they made (the answer: with the count of
    payments so far it tells the last one). Dated after the last payment of anyone, unless `written_at` is given."""
    labels = labelled(tables).merge(tables["payments"][["PaymentID", "CustomerID"]])
    churners = labels.loc[labels["churn"] == 1, "CustomerID"].unique()
    tenure = tables["payments"].groupby("CustomerID").size()
    written_at = tables["payments"]["PaidAt"].max() + pd.Timedelta(days=1) if written_at is None else written_at
    surveys = pd.DataFrame(
        {
            "SurveyID": np.arange(1, len(churners) + 1),
            "CustomerID": churners,
            "WrittenAt": written_at + pd.to_timedelta(np.arange(len(churners)), unit="s"),
            "Payments": tenure.reindex(churners).to_numpy().astype(float),
            "WouldReturn": False,
        }
    )
    entities = dict(spec.entities)
    entities["surveys"] = Entity(query="n/a", index="SurveyID", time_index="WrittenAt", logical_types={"CustomerID": "Integer"})
    relationships = [
        *spec.relationships,
        Relationship(parent="customers", parent_key="CustomerID", child="surveys", child_key="CustomerID"),
    ]
    return spec.model_copy(update={"entities": entities, "relationships": relationships}), {**tables, "surveys": surveys}


def test_a_table_written_after_every_cutoff_yields_only_constant_or_empty_features():
    tables, _ = generate(customers=400, seed=2)
    spec, planted = with_exit_survey(hazard_spec(), tables)
    labels = labelled(planted)
    matrix = synthesize(spec, planted, labels, windows=["30d", "90d"], recency=True, **DFS).matrix
    from_surveys = [c for c in matrix.columns if "surveys" in c]
    assert len(from_surveys) >= 10  # counts, windows, recency and DFS aggregates of the survey table
    assert all(matrix[c].nunique(dropna=True) <= 1 for c in from_surveys), matrix[from_surveys].nunique()


@pytest.mark.slow  # about 20 s: three fits on 1,500 customers
def test_the_planted_table_does_not_inflate_the_test_auc():
    """Same test AUC with and without the survey; dated before every payment instead, it would inflate it."""
    tables, _ = generate(customers=1500, seed=3)
    spec = hazard_spec()
    clean = roc_auc_score(*fit_and_score(spec, tables, windows=["30d"], recency=True))
    planted = roc_auc_score(*fit_and_score(*with_exit_survey(spec, tables), windows=["30d"], recency=True))
    visible = roc_auc_score(
        *fit_and_score(*with_exit_survey(spec, tables, written_at=pd.Timestamp("2019-01-01")), windows=["30d"], recency=True)
    )
    print(f"test ROC AUC: without the survey {clean:.4f}, survey after every cutoff {planted:.4f}, survey visible {visible:.4f}")
    assert planted == clean
    assert visible > clean + 0.05  # the planted table does give the answer away, when a cutoff can see it
