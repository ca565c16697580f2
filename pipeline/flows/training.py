"""The training flow: thin Prefect wiring of the plain step functions in `pipeline.steps`.

Tasks pass only small values (run ids, counts, metrics); data moves through the
run's artifact store. Tuning shards and feature parts (`features.partitions`) run
in-process or as local processes (`tuning.dispatch: local`) or as tuning-shard and
feature-part deployment runs on the work pool's workers (`prefect`, `pipeline.flows.fanout`).
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar
from typing import Any

from prefect import flow, task
from prefect.context import get_run_context

from pipeline import dispatch, steps
from pipeline.config import Config, load_config
from pipeline.flows.fanout import PrefectFanout
from pipeline.logs import record_warnings, setup_logging

log = logging.getLogger("pipeline.flows")
# step name -> seconds, as Prefect measured the task run; the flow sets a fresh dict per run
_timings: ContextVar[dict[str, float]] = ContextVar("step_timings")


def transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    """Retry only what a second try can fix (a connection dropped, a server restarting), never a wrong
    spec, login or data: those were checked before the run and would only fail again, slower."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, (ConnectionError, TimeoutError))


def _started(task, task_run, state) -> None:  # noqa: ANN001 - Prefect's state hook signature
    log.info("▶ %s", task.name)


def _finished(task, task_run, state) -> None:  # noqa: ANN001 - Prefect's state hook signature
    """Log the step with the run time Prefect recorded for it (all tries), which the summary reports too."""
    seconds = round(task_run.total_run_time.total_seconds(), 1)
    _timings.get()[task.name] = seconds
    log.info("✔ %s (%.1fs): %s", task.name, seconds, _short(state.result(raise_on_failure=False)))


def step(name: str, **options: Any):
    """A Prefect task that is one step of the run: logged when it starts and ends, timed in the summary."""
    return task(name=name, on_running=[_started], on_completion=[_finished], **options)


@step("prepare source", retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def prepare_source(cfg: Config) -> dict[str, Any]:
    return steps.prepare_source(cfg)


@step("extract", retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def extract(cfg: Config, run_id: str) -> dict[str, int]:
    return steps.extract(cfg, steps.run_artifacts(cfg, run_id))


@step("labels")
def make_labels(cfg: Config, run_id: str) -> dict[str, float]:
    return steps.make_labels(cfg, steps.run_artifacts(cfg, run_id))


@step("features")
def make_features(cfg: Config, run_id: str, overrides: dict[str, Any] | None) -> dict[str, int]:
    launch_parts = dispatch.feature_part_launcher(cfg, run_id, PrefectFanout(cfg, run_id, overrides))
    return steps.make_features(cfg, steps.run_artifacts(cfg, run_id), launch_parts)


@step("split + encode")
def split_and_encode(cfg: Config, run_id: str) -> dict[str, Any]:
    return steps.split_and_encode(cfg, steps.run_artifacts(cfg, run_id))


@step("open MLflow run")  # not retried: a second try would open a second MLflow run
def open_tracking_run(cfg: Config, run_id: str) -> str:
    return steps.open_tracking_run(cfg, run_id)


@step("tuning")
def tune(cfg: Config, run_id: str, overrides: dict[str, Any] | None, tracking_parent: str) -> dict[str, Any]:
    return dispatch.tune(cfg, run_id, overrides, tracking_parent, PrefectFanout(cfg, run_id, overrides))


@step("final fit + evaluation + SHAP")
def final_fit_and_evaluate(cfg: Config, run_id: str, best: dict[str, Any], best_iteration: int | None) -> dict[str, Any]:
    art = steps.run_artifacts(cfg, run_id)
    return steps.final_fit_and_evaluate(cfg, art, best, best_iteration, steps.local_report_dir(cfg, run_id))


@step("baselines")
def evaluate_baselines(cfg: Config, run_id: str) -> dict[str, dict[str, float]]:
    art = steps.run_artifacts(cfg, run_id)
    return steps.evaluate_baselines(cfg, art, steps.local_report_dir(cfg, run_id))


@step("MLflow logging + registry")  # not retried: a second try would register a second model version
def log_results(cfg: Config, run_id: str, mlflow_run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    art = steps.run_artifacts(cfg, run_id)
    return steps.log_results(cfg, art, mlflow_run_id, summary, steps.local_report_dir(cfg, run_id))


def _current_run_id() -> str:
    try:
        return str(get_run_context().flow_run.id)
    except Exception:  # called outside a flow run
        return uuid.uuid4().hex


@flow(name="training", log_prints=True)
def training_flow(overrides: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Source DB -> tuned, evaluated, explained, registered churn model. Returns the run summary.

    `overrides` (config sections) are stored by Prefect as the run's parameters: they never hold
    a secret; this process's environment (`PIPELINE__*`) supplies those.
    """
    setup_logging()
    cfg = load_config(overrides=overrides)
    run_id = run_id or _current_run_id()
    record_warnings(steps.local_report_dir(cfg, run_id) / "warnings.log")
    timings: dict[str, float] = {}
    _timings.set(timings)
    summary: dict[str, Any] = {"run_id": run_id}

    summary["source"] = prepare_source(cfg)
    summary["rows"] = extract(cfg, run_id)
    summary["labels"] = make_labels(cfg, run_id)
    summary["features"] = make_features(cfg, run_id, overrides)
    summary["split"] = split_and_encode(cfg, run_id)
    mlflow_run_id = open_tracking_run(cfg, run_id)
    try:
        summary["tuning"] = tune(cfg, run_id, overrides, mlflow_run_id)
        result = final_fit_and_evaluate(cfg, run_id, summary["tuning"]["best_params"], summary["tuning"]["best_iteration"])
        summary.update({key: result[key] for key in ("metrics", "threshold", "calibration", "top_features")}, final_rounds=result["rounds"])
        summary["baselines"] = evaluate_baselines(cfg, run_id)
        summary["timings"] = timings
        summary["numbers"] = {
            "labelled_orders": summary["labels"]["labelled_orders"],
            "churn_rate": summary["labels"]["churn_rate"],
            "n_features": summary["split"]["features_used"],
            "n_trials": summary["tuning"]["finished_trials"],
            **{k: summary["tuning"][k] for k in ("complete_trials", "pruned_trials", "failed_trials")},
        }
        summary["model"] = log_results(cfg, run_id, mlflow_run_id, summary)
    except BaseException as exc:
        steps.fail_tracking_run(cfg, mlflow_run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    art = steps.run_artifacts(cfg, run_id)
    summary["timings"] = timings
    summary["artifacts"] = art.store.uri(art.prefix)
    summary["reports"] = str(steps.local_report_dir(cfg, run_id))
    summary["mlflow_run_id"] = mlflow_run_id
    art.put_json("summary", summary)
    art.write_manifest({"config": "config.json (resolved, secrets masked)", "mlflow_run_id": mlflow_run_id})
    return summary


def _short(result: Any, limit: int = 160) -> str:
    text = str(result)
    return text if len(text) <= limit else text[: limit - 3] + "..."
