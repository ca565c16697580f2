"""What is alerted on and where alerts go: plain rules shared by the scoring flow and the automations.

Nobody watches an overnight run, so a failure or a shifted population must reach a person. The
delivery is Prefect's (an automation POSTs to a webhook: `pipeline.ops.alerts`); this module only
decides the webhook URL and whether a scoring run drifted enough to say so, so that both stay
testable without a Prefect server.
"""

from __future__ import annotations

import os
from typing import Any

from pipeline.config import Config

WEBHOOK_ENV = "ALERT_WEBHOOK_URL"
ALERTED_FLOWS = ("training", "scoring")  # flow names whose failed or crashed runs are reported
FAILED_STATES = ("Failed", "Crashed")
DRIFT_EVENT = "churn.scoring.drift"  # emitted by a scoring run whose drift is over alerts.drift_psi


def webhook_url(cfg: Config) -> str | None:
    """`alerts.webhook_url`, else env ALERT_WEBHOOK_URL (the name `.env` files use), else None: no alerts."""
    return cfg.alerts.webhook_url or os.environ.get(WEBHOOK_ENV) or None


def drift_alert(summary: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """The drift alert's payload when the scoring summary's largest feature PSI exceeds `threshold`, else None.

    Deciding here rather than in the automation: Prefect's event triggers match names and
    labels, not numbers, so a run emits the drift event only when it is over the threshold.
    """
    drift = summary["drift"]
    if drift["max_psi"] <= threshold:
        return None
    return {
        "max_psi": round(drift["max_psi"], 4),
        "threshold": threshold,
        "features_over_threshold": sum(1 for psi in summary["psi"].values() if psi > threshold),
        "top_psi": drift["top_psi"],
        "reference_as_of": drift.get("reference_as_of"),  # the scored population it is compared with
        "model": summary["model"],
        "version": summary["version"],
        "as_of": summary["as_of"],
        "customers": summary["customers"],
    }
