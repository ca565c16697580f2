"""The training flow: thin Prefect wiring of the plain step functions in `pipeline.steps`.

Tasks pass only small values (run ids, counts, metrics); data moves through the
run's artifact store. Tuning shards and feature parts (`features.partitions`) run
in-process or as local processes (`tuning.dispatch: local`) or as tuning-shard and
feature-part deployment runs on the work pool's workers (`prefect`, `pipeline.flows.fanout`).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prefect import flow, task
from prefect.context import get_run_context

from pipeline import dispatch, steps
from pipeline.config import Config, load_config
from pipeline.flows.fanout import PrefectFanout
from pipeline.logs import record_warnings, setup_logging

log = logging.getLogger("pipeline.flows")


def transient(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    """Retry only what a second try can fix (a connection dropped, a server restarting), never a wrong
    spec, login or data: those were checked before the run and would only fail again, slower."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, (ConnectionError, TimeoutError))


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def prepare_source(cfg: Config) -> dict[str, Any]:
    return steps.prepare_source(cfg)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=transient)
def extract(cfg: Config, run_id: str) -> dict[str, int]:
    return steps.extract(cfg, steps.run_artifacts(cfg, run_id))


@task
def make_labels(cfg: Config, run_id: str) -> dict[str, float]:
    return steps.make_labels(cfg, steps.run_artifacts(cfg, run_id))


@task
def make_features(cfg: Config, run_id: str, overrides: dict[str, Any] | None) -> dict[str, int]:
    launch_parts = dispatch.feature_part_launcher(cfg, run_id, PrefectFanout(cfg, run_id, overrides))
    return steps.make_features(cfg, steps.run_artifacts(cfg, run_id), launch_parts)


@task
def split_and_encode(cfg: Config, run_id: str) -> dict[str, Any]:
    return steps.split_and_encode(cfg, steps.run_artifacts(cfg, run_id))


@task  # not retried: a second try would open a second MLflow run
def open_tracking_run(cfg: Config, run_id: str) -> str:
    return steps.open_tracking_run(cfg, run_id)


@task
def tune(cfg: Config, run_id: str, overrides: dict[str, Any] | None, tracking_parent: str) -> dict[str, Any]:
    return dispatch.tune(cfg, run_id, overrides, tracking_parent, PrefectFanout(cfg, run_id, overrides))


@task
def final_fit_and_evaluate(cfg: Config, run_id: str, best: dict[str, Any], best_iteration: int | None) -> dict[str, Any]:
    art = steps.run_artifacts(cfg, run_id)
    return steps.final_fit_and_evaluate(cfg, art, best, best_iteration, steps.local_report_dir(cfg, run_id))


@task
def evaluate_baselines(cfg: Config, run_id: str) -> dict[str, dict[str, float]]:
    art = steps.run_artifacts(cfg, run_id)
    return steps.evaluate_baselines(cfg, art, steps.local_report_dir(cfg, run_id))


@task  # not retried: a second try would register a second model version
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
    summary: dict[str, Any] = {"run_id": run_id}

    def step(name: str, fn, *args):
        started = time.perf_counter()
        log.info("▶ %s", name)
        result = fn(cfg, *args)
        timings[name] = round(time.perf_counter() - started, 1)
        log.info("✔ %s (%.1fs): %s", name, timings[name], _short(result))
        return result

    summary["source"] = step("prepare source", prepare_source)
    summary["rows"] = step("extract", extract, run_id)
    summary["labels"] = step("labels", make_labels, run_id)
    summary["features"] = step("features", make_features, run_id, overrides)
    summary["split"] = step("split + encode", split_and_encode, run_id)
    mlflow_run_id = step("open MLflow run", open_tracking_run, run_id)
    try:
        summary["tuning"] = step("tuning", tune, run_id, overrides, mlflow_run_id)
        result = step(
            "final fit + evaluation + SHAP",
            final_fit_and_evaluate,
            run_id,
            summary["tuning"]["best_params"],
            summary["tuning"]["best_iteration"],
        )
        summary.update({key: result[key] for key in ("metrics", "threshold", "calibration", "top_features")}, final_rounds=result["rounds"])
        summary["baselines"] = step("baselines", evaluate_baselines, run_id)
        summary["timings"] = timings
        summary["numbers"] = {
            "labelled_orders": summary["labels"]["labelled_orders"],
            "churn_rate": summary["labels"]["churn_rate"],
            "n_features": summary["split"]["features_used"],
            "n_trials": summary["tuning"]["finished_trials"],
            **{k: summary["tuning"][k] for k in ("complete_trials", "pruned_trials", "failed_trials")},
        }
        summary["model"] = step("MLflow logging + registry", log_results, run_id, mlflow_run_id, summary)
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
