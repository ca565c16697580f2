"""Addresses of a run in the MLflow and Prefect UIs, as a browser on the user's machine opens them.

Workers reach the servers by names a browser cannot resolve (`http://mlflow:5000` in the compose
stack), so links printed from those URLs would not open. `MLFLOW_PUBLIC_URL` and
`PREFECT_PUBLIC_URL` name the addresses the browser uses (docker-compose.yml sets them from
PUBLIC_HOST and the published ports); without them the client's own URLs are used, which is right
wherever the client and the browser share a machine (the local stack). A file-based MLflow store
or an ephemeral Prefect server has no UI to link to: no link then.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

# MLflow 3's UI opens on its GenAI views unless the link asks for the machine-learning ones
# (no server setting chooses it; the browser remembers the last choice).
MLFLOW_ML_VIEW = "?workflowType=machine_learning"


def mlflow_ui(tracking_uri: str) -> str | None:
    """The MLflow UI's address for a browser, or None when the tracking store is not a server."""
    public = os.environ.get("MLFLOW_PUBLIC_URL")
    if public:
        return public.rstrip("/")
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else None


def prefect_ui() -> str | None:
    """The Prefect UI's address for a browser, or None in ephemeral mode (no server outlives the run)."""
    public = os.environ.get("PREFECT_PUBLIC_URL") or os.environ.get("PREFECT_API_URL")
    return public.rstrip("/").removesuffix("/api") if public else None


def run_links(tracking_uri: str, summary: dict[str, Any], flow_run_id: str | None = None) -> dict[str, str]:
    """{label: url} for a training run's MLflow run, its registered model version and its Prefect flow run."""
    links: dict[str, str] = {}
    mlflow_base = mlflow_ui(tracking_uri)
    if mlflow_base and summary.get("mlflow_run_id"):
        from mlflow.tracking import MlflowClient

        run_id = summary["mlflow_run_id"]
        experiment = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
        links["MLflow run"] = f"{mlflow_base}/#/experiments/{experiment}/runs/{run_id}{MLFLOW_ML_VIEW}"
    model = summary.get("model") or {}
    if mlflow_base and model.get("version"):
        links["registry"] = f"{mlflow_base}/#/models/{quote(model['registered_model'])}/versions/{model['version']}"
    prefect_base = prefect_ui()
    if prefect_base and flow_run_id:
        links["flow run"] = f"{prefect_base}/runs/flow-run/{flow_run_id}"
    return links
