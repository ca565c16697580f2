"""Champion vs challenger: the promotion rule as a pure function of scores, fingerprints and config.

A new model (the challenger) takes the registry alias only when all of these hold:

1. the run finished the requested tuning (unless `tracking.promote_partial`) and used a time
   split (a random split mixes future orders into training: its score overstates deployment);
2. it beats every baseline on the tuning metric by `tracking.promotion_margin` on the same test rows;
3. there is no champion, or the champion is comparable and the challenger beats it by the margin
   when both are scored on the challenger's test rows with the challenger's features.

"Comparable" is read off the two protocol fingerprints (`pipeline.protocol`): the same spec, label
definition, horizon and split method, and a champion that cannot have been trained on the
challenger's test rows. Stored test scores are never compared: they come from different rows,
and choosing by them would select on the test set. The MLflow I/O lives in `pipeline.tracking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.protocol import differences

# flat fingerprint keys that define the question a model answers: different values, different question
SAME_QUESTION = ("spec.hash", "labels.definition", "labels.horizon_days", "split.method")
# random splits: the same rows and split settings give the same test rows, anything else may not
SAME_RANDOM_SPLIT = ("source.hash", "split.seed", "split.test_size", "split.valid_size")


@dataclass(frozen=True)
class ChampionScore:
    """The current champion as seen by this run: its fingerprint and, if it could be scored, its score."""

    version: int
    fingerprint: Mapping[str, str]
    score: float | None = None  # on the challenger's test rows; None when it was not scored
    not_scored_because: str | None = None


@dataclass
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    margin: float
    champion_version: int | None = None
    champion_score: float | None = None
    best_baseline: str | None = None
    best_baseline_score: float | None = None
    comparable: bool | None = None  # None: no champion
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def beats(new: float, old: float, direction: str, margin: float) -> bool:
    """`new` is better than `old` by more than `margin` in the metric's direction."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    return new > old + margin if direction == "maximize" else new < old - margin


def incomparable(champion: Mapping[str, str], challenger: Mapping[str, str]) -> list[str]:
    """Why the champion's and the challenger's scores on the same rows would not mean the same thing ([] if they would)."""
    if not champion:
        return ["the champion has no protocol fingerprint (registered before fingerprints were recorded)"]
    reasons = [
        f"{key} differs (champion {old!r}, challenger {new!r})"
        for key, (old, new) in differences(champion, challenger, SAME_QUESTION).items()
    ]
    if reasons:
        return reasons
    if challenger.get("split.method") == "time":
        champion_start, challenger_start = champion.get("split.test_start") or "", challenger.get("split.test_start") or ""
        if not champion_start or not challenger_start or champion_start > challenger_start:
            reasons.append(
                f"the champion was trained on orders up to its test start {champion_start or '?'}, after the "
                f"challenger's test start {challenger_start or '?'}: it has seen part of the challenger's test rows"
            )
    else:
        changed = differences(champion, challenger, SAME_RANDOM_SPLIT)
        if changed:
            reasons.append(
                f"random splits of different data or settings ({', '.join(changed)}): the champion may have trained on the challenger's test rows"
            )
    return reasons


def partial_run(finished_trials: int, requested_trials: int) -> str | None:
    """A reason when tuning stopped short (timeout, dead shards), else None; 0 requested means no tuning at all."""
    if requested_trials and finished_trials < requested_trials:
        return f"tuning stopped early: {finished_trials} of {requested_trials} requested trials finished"
    return None


def decide(
    metric: str,
    direction: str,
    challenger: float,
    baselines: Mapping[str, float],
    champion: ChampionScore | None,
    margin: float,
    partial: str | None = None,
    promote_partial: bool = False,
    split_method: str = "time",
) -> Decision:
    """Apply the promotion rule; every failed condition is named in `reason`, baseline losses also in `warnings`."""
    decision = Decision(promote=False, reason="", metric=metric, challenger=challenger, margin=margin)
    blockers: list[str] = []
    if partial and not promote_partial:
        blockers.append(f"{partial} (tracking.promote_partial is false)")
    if split_method != "time":
        blockers.append(
            f"split.method is {split_method!r}: registered for comparison only, never promoted (its test rows interleave in time with its training rows)"
        )
    if baselines:
        name = _best(baselines, direction)
        decision.best_baseline, decision.best_baseline_score = name, baselines[name]
        if not beats(challenger, baselines[name], direction, margin):
            gap = abs(baselines[name] - challenger)
            ahead = "ahead" if beats(baselines[name], challenger, direction, 0.0) else "behind"
            message = (
                f"baseline {name!r} is not beaten: test {metric} {baselines[name]:.4f} vs model {challenger:.4f} "
                f"({gap:.4f} {ahead}; margin {margin:g})"
            )
            blockers.append(message)
            decision.warnings.append(message)
    if champion is not None:
        decision.champion_version = champion.version
        decision.champion_score = champion.score
        decision.comparable = champion.score is not None
        if champion.score is None:
            blockers.append(f"champion v{champion.version} not compared: {champion.not_scored_because}")
        elif not beats(challenger, champion.score, direction, margin):
            blockers.append(
                f"champion v{champion.version} is not beaten on the same rows: {metric} {champion.score:.4f} vs "
                f"challenger {challenger:.4f} (margin {margin:g})"
            )
    decision.promote = not blockers
    decision.reason = "; ".join(blockers) if blockers else _why_promoted(decision, metric)
    return decision


def _why_promoted(decision: Decision, metric: str) -> str:
    beaten = []
    if decision.best_baseline is not None:
        beaten.append(f"the best baseline {decision.best_baseline!r} ({decision.best_baseline_score:.4f})")
    if decision.champion_version is not None:
        beaten.append(f"champion v{decision.champion_version} ({decision.champion_score:.4f}) on the same rows")
    text = f"{metric} {decision.challenger:.4f}"
    if beaten:
        text += f" beats {' and '.join(beaten)} by more than {decision.margin:g}"
    return text + ("; no champion yet" if decision.champion_version is None else "")


def _best(scores: Mapping[str, float], direction: str) -> str:
    return (max if direction == "maximize" else min)(scores, key=scores.__getitem__)
