"""Prefect objects of the stack: the work pool (with a hardened job template) and the deployments.

Also used by `python -m pipeline deploy` for the compose stack, so both register the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_DEPLOYMENTS = {
    "training": "pipeline/flows/training.py:training_flow",
    "tuning-shard": "pipeline/flows/tuning.py:tuning_shard_flow",
    "feature-part": "pipeline/flows/features.py:feature_part_flow",
    "scoring": "pipeline/flows/scoring.py:scoring_flow",
}
# Work queues of the pool: training runs only wait for their shards, so they get their own queue
# and worker (`trainer`) instead of holding a shard worker's only slot (as in docker-compose.yml).
DEFAULT_QUEUE = "default"
TRAINER_QUEUE = "training"
DEPLOYMENT_QUEUES = {"training": TRAINER_QUEUE, "tuning-shard": DEFAULT_QUEUE, "feature-part": DEFAULT_QUEUE, "scoring": DEFAULT_QUEUE}


@contextmanager
def prefect_settings(api_url: str, auth: str | None = None) -> Iterator[None]:
    """Prefect settings bound to this stack's API and login, whatever the caller's profile says."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(updates=updates):
        yield


@contextmanager
def prefect_client(api_url: str, auth: str | None = None) -> Iterator[Any]:
    """A sync client bound to this stack's API."""
    from prefect.client.orchestration import get_client

    with prefect_settings(api_url, auth), get_client(sync_client=True) as client:
        yield client


# Job variables an API user could set on a flow run to run anything on a worker: not offered.
_UNSAFE_JOB_VARIABLES = ("command", "env", "working_dir")


def hardened_job_template() -> dict[str, Any]:
    """The process worker's base job template without the command, env and working-dir variables.

    With the default template, anyone who may create a flow run can pass
    `job_variables={"command": "..."}` and run it on a worker, with the worker's secrets in its
    environment. Without those variables (and with unknown ones refused) a flow run always
    starts the deployment's flow, in the worker's own environment.
    """
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    for key in _UNSAFE_JOB_VARIABLES:
        template["job_configuration"].pop(key, None)
        template["variables"]["properties"].pop(key, None)
    template["variables"]["additionalProperties"] = False
    return template


def ensure_work_pool(api_url: str, name: str, auth: str | None = None) -> None:
    """Create the `process` work pool with the hardened job template, or harden an existing one."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    template = hardened_job_template()
    with prefect_client(api_url, auth) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
                return
            except ObjectAlreadyExists:
                pool = client.read_work_pool(name)
        if pool.base_job_template != template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def register_deployments(
    api_url: str,
    project_dir: Path,
    deployments: dict[str, str],
    work_pool: str,
    queues: dict[str, str] | None = None,
    auth: str | None = None,
    schedules: dict[str, list[Any]] | None = None,
) -> list[str]:
    """Create or update deployments `{name: entrypoint}` whose code is pulled from `project_dir`.

    Each goes to work queue `queues[name]` (default: DEPLOYMENT_QUEUES, else the pool's
    default queue): `training` on the trainer's queue, `tuning-shard` on the workers' one.
    `schedules[name]` (Prefect schedules, e.g. `ops.schedules.config_schedules`) replace the
    deployment's schedules, each staying paused if it was (matched by slug).

    `flow.deploy(build=False)` is rejected without an image, so the flow is loaded with
    `from_source(<local dir>)`, which stores a `set_working_directory` pull step. No
    parameters are stored: workers take the pipeline config from their environment.
    """
    from prefect import Flow
    from prefect.client.orchestration import get_client

    from pipeline.ops.schedules import drop_other_schedules, keep_paused

    names = []
    with prefect_settings(api_url, auth), get_client(sync_client=True) as client:
        for name, entrypoint in deployments.items():
            flow = Flow.from_source(source=str(project_dir.resolve()), entrypoint=entrypoint)
            queue = (DEPLOYMENT_QUEUES if queues is None else queues).get(name, DEFAULT_QUEUE)
            full_name = f"{flow.name}/{name}"
            wanted = keep_paused(client, full_name, schedules[name]) if schedules and name in schedules else None
            # = .deploy() minus its console table; the server creates a missing queue
            flow.to_deployment(name=name, work_pool_name=work_pool, work_queue_name=queue, schedules=wanted).apply()
            if wanted is not None:
                drop_other_schedules(client, full_name, wanted)
            names.append(full_name)
    return names


def provision_prefect(
    api_url: str,
    project_dir: Path,
    cfg: Any,
    alert_webhook_url: str | None,
    deployments: dict[str, str] | None = None,
    auth: str | None = None,
) -> list[str]:
    """Everything the pipeline needs on a Prefect server, idempotently: the hardened work pool, the
    deployments (training and scoring scheduled at `training.cron` / `scoring.cron`, pauses kept) and
    the alert automations (removed when `alert_webhook_url` is None). Returns the deployment names.

    One function for `stack up` and `python -m pipeline deploy` (the compose stack), so both agree.
    """
    from pipeline.ops.alerts import ensure_alerts
    from pipeline.ops.schedules import config_schedules

    ensure_work_pool(api_url, cfg.prefect.work_pool, auth)
    names = register_deployments(
        api_url, project_dir, deployments or DEFAULT_DEPLOYMENTS, cfg.prefect.work_pool, auth=auth, schedules=config_schedules(cfg)
    )
    ensure_alerts(api_url, alert_webhook_url, auth)
    return names
