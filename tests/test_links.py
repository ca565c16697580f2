"""The links the run summary prints open the run where the user's browser is (pipeline.links)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipeline.links import run_links


def _logged_run(tracking_uri: str) -> tuple[str, str]:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("links")
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    return experiment, run.info.run_id


def test_public_urls_replace_the_workers_addresses(tmp_path, monkeypatch):
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment, run_id = _logged_run(tracking_uri)
    monkeypatch.setenv("MLFLOW_PUBLIC_URL", "http://localhost:5123/")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect-server:4200/api")
    monkeypatch.setenv("PREFECT_PUBLIC_URL", "http://localhost:4321")
    summary = {"mlflow_run_id": run_id, "model": {"registered_model": "churn model", "version": 3}}

    links = run_links(tracking_uri, summary, "0f0e-flow-run")

    assert links == {
        "MLflow run": f"http://localhost:5123/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning",
        "registry": "http://localhost:5123/#/models/churn%20model/versions/3",
        "flow run": "http://localhost:4321/runs/flow-run/0f0e-flow-run",
    }


def test_without_public_urls_a_server_links_to_itself_and_a_file_store_to_nothing(tmp_path, monkeypatch):
    for name in ("MLFLOW_PUBLIC_URL", "PREFECT_PUBLIC_URL", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"  # a file store: never opened, no UI to link to
    summary = {"mlflow_run_id": "r1", "model": {"registered_model": "m", "version": 1}}

    assert run_links(tracking_uri, summary, "abc") == {}  # file store, ephemeral Prefect: no UI outlives the run

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api/")
    assert run_links(tracking_uri, summary, "abc") == {"flow run": "http://127.0.0.1:4200/runs/flow-run/abc"}
