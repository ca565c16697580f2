"""The tuning-shard flow: one worker's share of a study (a deployment, fanned out by the training flow)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipeline.config import load_config
from pipeline.logs import setup_logging
from pipeline.steps import run_artifacts, tuning_shard


@flow(name="tuning-shard", log_prints=True)
def tuning_shard_flow(
    overrides: dict[str, Any] | None = None,
    run_id: str = "",
    target_trials: int = 0,
    shard_index: int = 0,
    tracking_parent: str | None = None,
) -> dict[str, Any]:
    """Run trials on the shared study until it holds `target_trials` finished trials.

    The study name is derived from the config and run id, so every shard and the orchestrator
    agree on it. `overrides` holds no secret (Prefect stores parameters): the worker's
    environment supplies those.
    """
    setup_logging()
    cfg = load_config(overrides=overrides)
    return tuning_shard(cfg, run_artifacts(cfg, run_id), shard_index, target_trials, tracking_parent)
