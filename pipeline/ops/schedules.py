"""Deployment schedules: retraining and scoring crons from the config, listed, paused and resumed.

The crons live in the config (`training.cron`, `scoring.cron`) so the local stack, the compose
stack and prefect.yaml schedule the same times. Pausing is Prefect's own switch (a schedule's
`active` flag, the toggle in the UI), so the UI and `python -m pipeline schedule` always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pipeline.config import Config


def config_schedules(cfg: Config) -> dict[str, list[Any]]:
    """{deployment name: [Prefect schedule]} from the config: weekly retraining, daily scoring (UTC).

    Each schedule's slug names its config key, so a re-registration can find it and keep it paused.
    """
    from prefect.schedules import Cron

    return {
        "training": [Cron(cfg.training.cron, timezone="UTC", slug="training.cron")],
        "scoring": [Cron(cfg.scoring.cron, timezone="UTC", slug="scoring.cron")],
    }


def keep_paused(client: Any, deployment: str, schedules: list[Any]) -> list[Any]:
    """`schedules` with `active` copied from the deployment's current schedules of the same slug.

    Re-registering a deployment (each `stack up`, `deploy`) replaces its schedules; without this
    it would silently resume a schedule someone paused.
    """
    from prefect.exceptions import ObjectNotFound

    try:
        current = client.read_deployment_by_name(deployment).schedules
    except ObjectNotFound:
        return schedules
    active = {s.slug: s.active for s in current if s.slug}
    return [replace(s, active=active.get(s.slug, s.active)) for s in schedules]


def drop_other_schedules(client: Any, deployment: str, schedules: list[Any]) -> None:
    """Delete the deployment's schedules whose slug is not one of `schedules`'.

    With slugs, Prefect's deployment update changes and adds schedules but never removes one, so a
    renamed or temporary schedule would otherwise keep firing after the next registration.
    """
    keep = {s.slug for s in schedules}
    current = client.read_deployment_by_name(deployment)
    for s in current.schedules:
        if s.slug not in keep:
            client.delete_deployment_schedule(current.id, s.id)


@dataclass
class ScheduleRow:
    deployment: str  # flow/deployment
    schedule_id: str
    what: str  # "cron 0 6 * * * (UTC)", "every 15 s"
    active: bool
    deployment_paused: bool
    next_run: datetime | None


def _describe(schedule: Any) -> str:
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    if getattr(schedule, "interval", None):
        return f"every {schedule.interval.total_seconds():g} s"
    return f"rrule {getattr(schedule, 'rrule', schedule)}"


def _next_run(client: Any, deployment_id: Any) -> datetime | None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=1,
    )
    return runs[0].expected_start_time if runs else None


def _deployments(client: Any, name: str | None) -> list[tuple[str, Any]]:
    """(flow/deployment, deployment) for every deployment, or those matching `name` (`scoring` or `scoring/scoring`)."""
    flows = {f.id: f.name for f in client.read_flows()}
    found = [(f"{flows.get(d.flow_id, '?')}/{d.name}", d) for d in client.read_deployments()]
    if name is None:
        return sorted(found, key=lambda item: item[0])
    matching = [(full, d) for full, d in found if name in (full, d.name)]
    if not matching:
        known = ", ".join(full for full, _ in found) or "none"
        raise LookupError(f"no deployment {name!r} on this Prefect server (deployments: {known})")
    return matching


def list_schedules(client: Any, deployment: str | None = None) -> list[ScheduleRow]:
    """Every schedule of every deployment (or of one), with its state and next scheduled run."""
    rows = []
    for full, d in _deployments(client, deployment):
        next_run = _next_run(client, d.id) if d.schedules else None
        for s in d.schedules:
            rows.append(ScheduleRow(full, str(s.id), _describe(s.schedule), s.active, bool(d.paused), next_run))
    return rows


def set_active(client: Any, deployment: str | None, active: bool) -> list[ScheduleRow]:
    """Pause (`active=False`) or resume the schedules of one deployment, or of all; returns them after.

    Resuming also lifts a pause of the whole deployment (the UI's deployment toggle), which would
    otherwise keep its schedules silent. Pausing removes the runs already scheduled (Prefect does).
    """
    for _, d in _deployments(client, deployment):
        for s in d.schedules:
            if s.active != active:
                client.update_deployment_schedule(d.id, s.id, active=active)
        if active and d.paused:
            client.resume_deployment(d.id)
    return list_schedules(client, deployment)


def format_rows(rows: list[ScheduleRow]) -> list[str]:
    """A table for the terminal: deployment, schedule, state, next run."""
    if not rows:
        return ["no schedules"]
    lines = [f"{'deployment':24} {'schedule':28} {'state':8} next run (UTC)"]
    for r in rows:
        state = "paused" if not r.active or r.deployment_paused else "active"
        when = r.next_run.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if r.next_run and state == "active" else "-"
        note = "  (whole deployment paused in the UI)" if r.deployment_paused else ""
        lines.append(f"{r.deployment:24} {r.what:28} {state:8} {when}{note}")
    return lines
