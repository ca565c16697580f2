"""Work fanned out as Prefect deployment runs on the work pool's workers: tuning shards and feature parts.

`pipeline.dispatch` chooses where work runs and owns the plain local-process path; it gets
this object from the training flow when `tuning.dispatch: prefect`, so nothing below
`pipeline.flows` imports Prefect. A run whose worker died stays RUNNING in Prefect for ever,
so progress is judged by the work's own record (the study's finished trials, the parts'
manifests), and runs still unfinished once the work is over are marked Crashed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Crashed

from pipeline.config import Config
from pipeline.dispatch import trial_progress
from pipeline.feature_partitions import finished_parts
from pipeline.steps import run_artifacts
from pipeline.tuning import TuningError

log = logging.getLogger(__name__)


class PrefectFanout:
    """Deployment runs of one training run; parameters carry `overrides`, never a secret
    (Prefect stores them): the workers' environment supplies those."""

    def __init__(self, cfg: Config, run_id: str, overrides: dict[str, Any] | None):
        self.cfg, self.run_id, self.overrides = cfg, run_id, overrides

    def tuning_shards(self, tracking_parent: str | None, study) -> list[dict[str, Any]]:
        """Launch the shard runs, then wait for the study (not for crashed runs) to be done."""
        cfg = self.cfg
        target = cfg.tuning.n_trials
        params = {"target_trials": target, "tracking_parent": tracking_parent}
        runs = self._launch(cfg.tuning.shard_deployment, [{**params, "shard_index": i} for i in range(cfg.tuning.n_shards)])
        deadline = time.monotonic() + cfg.tuning.timeout_minutes * 60
        # A shard run whose worker died stays RUNNING in Prefect for ever: judge progress by the study.
        stall_seconds = max(120.0, 10 * cfg.tuning.heartbeat_interval)
        launched = progress_at = time.monotonic()
        progress = None
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                states = [client.read_flow_run(r.id).state for r in runs]
                finished, running = trial_progress(study)
                # WAITING trials do not count: failing a dead worker's stale trial re-queues it as
                # WAITING (RetryHeartbeatStaleTrialCallback), and once the target is met no shard takes it.
                if all(s is not None and s.is_final() for s in states) or (finished >= target and running == 0):
                    break
                # still working: a trial running, a new finished trial, or a shard run not yet started
                # (for at most stall_seconds after launch: runs that never start have no worker)
                waiting = any(s is None or not (s.is_running() or s.is_final()) for s in states)
                now = (finished, running)
                if now != progress or running > 0 or (waiting and time.monotonic() - launched < stall_seconds):
                    progress, progress_at = now, time.monotonic()
                elif time.monotonic() - progress_at > stall_seconds:
                    log.warning("no trial has run for %.0f s: the shards are gone or never started", stall_seconds)
                    break
                time.sleep(2)
            else:
                raise TuningError(f"tuning did not finish within tuning.timeout_minutes={cfg.tuning.timeout_minutes}")
            return self._close(client, runs, "shard")

    def feature_parts(self, parts: list[int], token: str) -> list[dict[str, Any]]:
        """Launch one run per feature part, then wait until every part's manifest is written
        (or every run has ended) within prefect.flow_timeout_minutes."""
        runs = self._launch(self.cfg.features.part_deployment, [{"part": i, "token": token} for i in parts])
        art = run_artifacts(self.cfg, self.run_id)
        n_parts = self.cfg.features.partitions
        deadline = time.monotonic() + self.cfg.prefect.flow_timeout_minutes * 60
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                if set(parts) <= set(finished_parts(art, n_parts, token)):
                    break
                if all((s := client.read_flow_run(r.id).state) is not None and s.is_final() for r in runs):
                    break
                time.sleep(2)
            return self._close(client, runs, "part")

    def _launch(self, deployment: str, parameters: list[dict[str, Any]]) -> list:
        common = {"overrides": self.overrides, "run_id": self.run_id}
        runs = [run_deployment(name=deployment, parameters={**common, **p}, timeout=0) for p in parameters]
        log.info("launched %d runs of deployment %s", len(runs), deployment)
        return runs

    def _close(self, client, runs, what: str) -> list[dict[str, Any]]:
        _grace(client, runs, seconds=15)
        _crash_unfinished(client, runs, what)
        states = [client.read_flow_run(r.id).state for r in runs]
        return [{what: i, "flow_run": str(r.id), "state": s.name if s else None} for i, (r, s) in enumerate(zip(runs, states, strict=True))]


def _crash_unfinished(client, runs, what: str) -> None:
    """A run not final after the grace period lost its worker (a killed worker's run stays
    RUNNING in Prefect for ever): mark it Crashed, so the UI shows what happened."""
    for run in runs:
        state = client.read_flow_run(run.id).state
        if state is None or not state.is_final():
            log.warning(
                "%s flow run %s is still %s after its work ended: its worker is gone; marking it Crashed",
                what,
                run.name,
                state.name if state else "unknown",
            )
            client.set_flow_run_state(run.id, Crashed(message=f"the {what} stopped while the work finished without it"), force=True)


def _grace(client, runs, seconds: float) -> None:
    """Give live runs a moment to notice the work is complete and exit cleanly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all((s := client.read_flow_run(r.id).state) is not None and s.is_final() for r in runs):
            return
        time.sleep(1)
