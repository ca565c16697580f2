"""The promotion rule and the protocol fingerprint, as pure functions."""

import pandas as pd
import pytest

from pipeline import protocol
from pipeline.selection import ChampionScore, beats, decide, incomparable, partial_run


def flat(method: str = "time", test_start: str = "2014-01-01T00:00:00", horizon: int = 180, **extra: str) -> dict[str, str]:
    split = protocol.split_protocol(method, pd.Timestamp(test_start) if method == "time" else None, True, 0.2, 0.2, 42)
    source = protocol.source_fingerprint({"orders": pd.DataFrame({"t": pd.to_datetime(["2014-06-30"])})}, {"orders": "t"})
    fp = protocol.fingerprint("adventureworks", "abc", "within_horizon", horizon, split, source)
    return {**protocol.from_tags(protocol.to_tags(fp)), **extra}


def test_fingerprint_tags_round_trip_and_spec_hash_sees_sql_changes():
    fp = flat()
    assert fp["spec.hash"] == "abc" and fp["labels.horizon_days"] == "180" and fp["split.method"] == "time"
    assert fp["split.test_start"] == "2014-01-01T00:00:00" and "split.seed" not in fp
    assert len(fp["source.hash"]) == 16
    yaml_text, sql = "name: x", {"a.sql": "SELECT 1", "b.sql": "SELECT 2"}
    assert protocol.spec_hash(yaml_text, sql) == protocol.spec_hash(yaml_text, dict(reversed(sql.items())))
    assert protocol.spec_hash(yaml_text, sql) != protocol.spec_hash(yaml_text, {**sql, "b.sql": "SELECT 3"})
    assert protocol.spec_hash(yaml_text, sql) != protocol.spec_hash("name: y", sql)


def test_source_fingerprint_counts_rows_and_latest_time():
    tables = {"orders": pd.DataFrame({"t": pd.to_datetime(["2014-01-02", "2014-03-04"])}), "customers": pd.DataFrame({"id": [1, 2, 3]})}
    fp = protocol.source_fingerprint(tables, {"orders": "t", "customers": None})
    assert fp["tables"] == {"customers": {"rows": 3, "max_time": None}, "orders": {"rows": 2, "max_time": "2014-03-04T00:00:00"}}
    grown = protocol.source_fingerprint({**tables, "customers": pd.DataFrame({"id": [1, 2, 3, 4]})}, {"orders": "t"})
    assert grown["hash"] != fp["hash"]


@pytest.mark.parametrize(
    "champion, challenger, needle",
    [
        (flat(horizon=90), flat(), "labels.horizon_days differs"),
        (flat(**{"labels.definition": "active_after_horizon"}), flat(), "labels.definition differs"),
        (flat(**{"spec.hash": "other"}), flat(), "spec.hash differs"),
        (flat(), flat(method="random"), "split.method differs"),
        (flat(test_start="2014-02-01"), flat(test_start="2014-01-01"), "seen part of the challenger's test rows"),
        (flat(method="random"), flat(method="random", **{"source.hash": "new"}), "random splits of different data"),
        ({}, flat(), "no protocol fingerprint"),
    ],
)
def test_incomparable_fingerprints_are_never_scored(champion, challenger, needle):
    reasons = incomparable(champion, challenger)
    assert any(needle in r for r in reasons), reasons
    decision = decide("roc_auc", "maximize", 0.99, {}, ChampionScore(3, champion, not_scored_because="; ".join(reasons)), 0.002)
    assert not decision.promote and decision.comparable is False and needle in decision.reason


def test_comparable_fingerprints():
    assert incomparable(flat(), flat()) == []
    assert incomparable(flat(test_start="2013-06-01"), flat(test_start="2014-01-01")) == []  # newer data, later test
    assert incomparable(flat(method="random"), flat(method="random")) == []


def test_challenger_must_beat_champion_on_same_rows_by_the_margin():
    champion = ChampionScore(1, flat(), score=0.80)
    assert not decide("roc_auc", "maximize", 0.78, {}, champion, 0.002).promote
    tie = decide("roc_auc", "maximize", 0.801, {}, champion, 0.002)
    assert not tie.promote and "champion v1 is not beaten on the same rows" in tie.reason
    win = decide("roc_auc", "maximize", 0.81, {}, champion, 0.002)
    assert win.promote and win.champion_score == 0.80 and "beats champion v1" in win.reason
    # minimised metric: lower is better
    assert decide("log_loss", "minimize", 0.40, {}, ChampionScore(1, flat(), score=0.45), 0.002).promote
    assert not decide("log_loss", "minimize", 0.449, {}, ChampionScore(1, flat(), score=0.45), 0.002).promote


def test_partial_run_is_not_promoted_unless_allowed():
    reason = partial_run(73, 100)
    assert reason == "tuning stopped early: 73 of 100 requested trials finished"
    assert partial_run(100, 100) is None and partial_run(0, 0) is None
    blocked = decide("roc_auc", "maximize", 0.9, {}, None, 0.002, partial=reason)
    assert not blocked.promote and "73 of 100" in blocked.reason and "promote_partial" in blocked.reason
    assert decide("roc_auc", "maximize", 0.9, {}, None, 0.002, partial=reason, promote_partial=True).promote


def test_random_split_run_is_never_promoted():
    decision = decide("roc_auc", "maximize", 0.97, {"rfm_logreg": 0.7}, None, 0.002, split_method="random")
    assert not decision.promote and "split.method is 'random'" in decision.reason


def test_baseline_win_blocks_promotion_and_names_the_baseline():
    baselines = {"base_rate": 0.5, "rfm_logreg": 0.717, "own_columns_lgbm": 0.60}
    decision = decide("roc_auc", "maximize", 0.641, baselines, None, 0.002)
    assert not decision.promote
    assert decision.best_baseline == "rfm_logreg" and decision.best_baseline_score == 0.717
    [warning] = decision.warnings
    assert "'rfm_logreg'" in warning and "0.0760 ahead" in warning and warning in decision.reason
    first = decide("roc_auc", "maximize", 0.75, baselines, None, 0.002)
    assert first.promote and first.comparable is None and "no champion yet" in first.reason
    # within the margin of the best baseline: not good enough either
    assert not decide("roc_auc", "maximize", 0.718, baselines, None, 0.002).promote
    # log loss: the constant base rate is the lowest, so it is the one to beat
    losses = decide("log_loss", "minimize", 0.60, {"base_rate": 0.57, "rfm_logreg": 0.65}, None, 0.002)
    assert not losses.promote and losses.best_baseline == "base_rate"


def test_every_failed_condition_is_reported():
    decision = decide(
        "roc_auc", "maximize", 0.70, {"rfm_logreg": 0.72}, ChampionScore(2, flat(), score=0.75), 0.002, partial=partial_run(5, 10)
    )
    assert not decision.promote
    assert all(part in decision.reason for part in ("5 of 10", "'rfm_logreg'", "champion v2"))


def test_beats_checks_direction():
    assert beats(0.8, 0.79, "maximize", 0.0) and not beats(0.8, 0.8, "maximize", 0.0)
    with pytest.raises(ValueError, match="direction"):
        beats(0.8, 0.7, "up", 0.0)
