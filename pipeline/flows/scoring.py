"""The scoring flow: thin Prefect wiring of `pipeline.scoring` (the champion scores the active customers).

The scores themselves go to the artifact store and the scores table inside the first task;
tasks pass only the summary on. A run whose drift is over `alerts.drift_psi` emits the Prefect
event `churn.scoring.drift`, on which the drift automation (`pipeline.ops.alerts`) posts an alert.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow, task
from prefect.events import emit_event
from prefect.runtime import flow_run

from pipeline import alerts, scoring
from pipeline.config import Config, load_config
from pipeline.flows.training import transient
from pipeline.logs import setup_logging

log = logging.getLogger("pipeline.flows")


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)  # rerunning replaces its rows: safe to retry
def score_customers(cfg: Config, version: int | None) -> dict[str, Any]:
    return scoring.score(cfg, version).summary


@task  # not retried: a second try would open a second MLflow run
def log_summary(cfg: Config, summary: dict[str, Any]) -> str:
    return scoring.log_summary(cfg, summary)


def report_drift(cfg: Config, summary: dict[str, Any]) -> None:
    """Emit the drift event about this flow run when its largest PSI is over the threshold (else nothing)."""
    payload = alerts.drift_alert(summary, cfg.alerts.drift_psi)
    if payload is None:
        return
    log.warning(
        "drift: largest feature PSI %.3f > alerts.drift_psi %.3f (%d features over it)",
        payload["max_psi"],
        payload["threshold"],
        payload["features_over_threshold"],
    )
    resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.name": flow_run.name}
    emit_event(event=alerts.DRIFT_EVENT, resource=resource, payload=payload)


@flow(name="scoring", log_prints=True)
def scoring_flow(overrides: dict[str, Any] | None = None, version: int | None = None) -> dict[str, Any]:
    """Score the active customers as of `scoring.as_of` with `version` (default: the champion). Returns the summary.

    `overrides` (config sections, e.g. {"scoring": {"as_of": "2014-06-30"}}) are stored by Prefect
    as the run's parameters: they never hold a secret; this process's environment supplies those.
    """
    setup_logging()
    cfg = load_config(overrides=overrides)
    summary = score_customers(cfg, version)
    summary["mlflow_run_id"] = log_summary(cfg, summary)
    for line in scoring.summary_lines(summary):
        log.info(line)
    report_drift(cfg, summary)
    return summary
