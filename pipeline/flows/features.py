"""The feature-part flow: one customer part of a partitioned feature step (a deployment, fanned out by the training flow)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipeline.config import load_config
from pipeline.logs import setup_logging
from pipeline.steps import feature_part, run_artifacts


@flow(name="feature-part", log_prints=True)
def feature_part_flow(overrides: dict[str, Any] | None = None, run_id: str = "", part: int = 0, token: str = "") -> dict[str, Any]:
    """Compute part `part` of the run's feature step from its inputs in the artifact store.

    `token` names the launch: the part signs its manifest with it. `overrides` holds no secret
    (Prefect stores parameters): the worker's environment supplies those.
    """
    setup_logging()
    cfg = load_config(overrides=overrides)
    return feature_part(cfg, run_artifacts(cfg, run_id), part, token)
