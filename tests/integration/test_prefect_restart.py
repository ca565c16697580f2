"""The Prefect server of the test's own stack restarted while a training run tunes on 2 shard workers.

Prefect's clients (workers, flow-run processes, the trainer polling its shards) retry a refused
connection with backoff for about a minute once they have been connected, so a restart shorter
than that should be ridden out. Whatever the outcome, the run must end up complete: either it
carries on, or it ends failed/crashed and a rerun with the same run id resumes its study and
reuses its cached steps.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from pipeline.ops.servers import start_prefect_server, wait_http
from pipeline.ops.state import StackInfo, StackSettings
from pipeline.ops.supervise import stop_process
from tests.integration.test_training_on_stack import ShardWatcher, artifacts, find_study, overrides, slow_tuning, wait_final

pytestmark = [pytest.mark.integration, pytest.mark.long, pytest.mark.timeout(1500)]
N_TRIALS = 10
CACHED_STEPS = ("extract", "labels", "features", "split")


def _counts(study) -> dict[str, int]:
    """Trials by state, how many were retries of a failed trial, and retries beyond one per failure."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in trials)
    retried = Counter(t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs)
    return {**counts, "retried": sum(retried.values()), "duplicated": sum(n - 1 for n in retried.values())}


def test_training_survives_or_resumes_after_its_prefect_server_restarts(
    stack_api: StackInfo, stack_settings: StackSettings, source_url: str
) -> None:
    """Injected: once the study holds 2 complete trials, the stack's Prefect server process is
    stopped (SIGTERM, then SIGKILL) and started again on the same port and database.
    Counted: the restart's downtime; trials COMPLETE/PRUNED/FAIL/RUNNING, retried and duplicated
    (must be 0); runs completed (the first, or the rerun with the same run id, which must reuse the
    four cached steps of the first and the same study)."""
    from optuna.trial import TrialState
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    stack = stack_api
    name = f"churn-prefect-restart-{time.time_ns()}"
    over = overrides(name, slow_tuning(N_TRIALS), {"num_boost_round": 600, "early_stopping_rounds": 600})
    started = time.monotonic()
    flow_run_id = run_deployment(name="training/training", parameters={"overrides": over}, timeout=0).id
    run_id = str(flow_run_id)
    watcher = ShardWatcher(stack)
    restart: dict[str, float] = {}

    def restart_when_tuning() -> None:
        if restart or (study := find_study(stack.secrets.optuna_storage, run_id)) is None:
            return
        if sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) < 2:
            return
        restart["at"] = time.monotonic() - started
        stop_process(stack.processes["prefect-server"].pid)
        down_since = time.monotonic()
        stack.processes["prefect-server"] = server = start_prefect_server(stack_settings, stack)
        stack.save()  # `down` at the session's end stops the new process
        health = f"{stack.prefect_api_url}/health"
        wait_http("Prefect server", health, lambda code, body: code == 200, server, stack_settings.timeout, stack.secret_values())
        restart["downtime"] = time.monotonic() - down_since
        print(f"Prefect server restarted at {restart['at']:.1f} s, down {restart['downtime']:.1f} s")

    with get_client(sync_client=True) as client:
        first = wait_final(client, flow_run_id, watcher, timeout=900, on_poll=restart_when_tuning)
    assert restart, "the study never held 2 complete trials: nothing was injected"
    print(f"first run: {first.state.name} after {time.monotonic() - started:.1f} s ({first.state.message})")
    runs_completed = int(first.state.is_completed())
    if not runs_completed:
        before = _counts(find_study(stack.secrets.optuna_storage, run_id))
        rerun = run_deployment(name="training/training", parameters={"overrides": over, "run_id": run_id}, timeout=0).id
        with get_client(sync_client=True) as client:
            second = wait_final(client, rerun, watcher, timeout=900)
        assert second.state.is_completed(), f"the rerun with run id {run_id}: {second.state.name}: {second.state.message}"
        runs_completed += 1
        art = artifacts(stack, run_id)
        reused = {step: art.get_json(f"cache/{step}")["reused_from"] for step in CACHED_STEPS}
        assert reused == dict.fromkeys(CACHED_STEPS, run_id), f"the rerun recomputed steps the first run had done: {reused}"
        after = _counts(find_study(stack.secrets.optuna_storage, run_id))
        assert after.get("COMPLETE", 0) >= before.get("COMPLETE", 0), (before, after)
        print(f"trials before the rerun {before}")

    counts = _counts(find_study(stack.secrets.optuna_storage, run_id))
    print(f"trials {counts}; runs completed {runs_completed}")
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    assert N_TRIALS <= finished <= N_TRIALS + 1, f"finished trials {finished} of {N_TRIALS} (2 shards may overshoot by 1): {counts}"
    assert counts.get("RUNNING", 0) == 0 and counts["duplicated"] == 0, counts
    assert runs_completed >= 1
    summary: dict[str, Any] = artifacts(stack, run_id).get_json("summary")
    assert summary["tuning"]["finished_trials"] == finished, (summary["tuning"], counts)
