"""Hyperparameter tuning with Optuna: one study, any number of shards working on it.

The study lives in a storage given by URL (in memory, a journal file, SQLite or
MySQL/PostgreSQL), so it survives restarts when the storage is persistent and is
shared by shards on other machines. Each shard runs trials until the study holds
the requested number of finished trials in total. Trials are cheap: the LightGBM
Dataset is built once per shard, bad trials are pruned from LightGBM's
per-iteration validation metric, and every fit stops early. A pruned trial counts as
finished: `tuning.n_trials` is complete + pruned trials; results report both apart.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightgbm as lgb
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline.config import SearchParam, TuningConfig
from pipeline.evaluation import metric_direction, score
from pipeline.logs import interactive
from pipeline.masking import mask_url
from pipeline.models import LightGBMModel, TrainData

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
REPORT_EVERY = 10  # iterations between intermediate values: each report is a storage write


class TuningError(RuntimeError):
    """The study storage cannot be used; the message names it (without password)."""


@contextmanager
def tested_experimental_api() -> Iterator[None]:
    """Heartbeats and `fail_stale_trials` are "experimental" since Optuna 2.8; the pinned version is
    tested here, so their warning would only be noise in every trainer's log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and queue a retry of) trials whose heartbeat went stale: a dead worker's."""
    with tested_experimental_api():
        optuna.storages.fail_stale_trials(study)


def create_storage(url: str | None, heartbeat_interval: int = 10) -> BaseStorage:
    """`memory`, `journal:///path/file.log`, or an SQLAlchemy URL (sqlite, mysql+pymysql, postgresql)."""
    if not url or url == "memory":
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal://"):
        path = Path(url[len("journal://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with tested_experimental_api():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True, "pool_recycle": 3600},
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except Exception as exc:  # SQLAlchemy/driver errors: name the storage, never the password
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise TuningError(f"cannot open the Optuna storage {mask_url(url)}: {reason}") from None


def sampler(seed: int, n_startup_trials: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)


def pruner(n_startup_trials: int, warmup_steps: int) -> optuna.pruners.MedianPruner:
    return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=warmup_steps, interval_steps=REPORT_EVERY)


def create_study(cfg: TuningConfig, study_name: str, storage: BaseStorage, seed_offset: int = 0) -> optuna.Study:
    """Create the study or load it (resuming its trials), direction derived from the metric."""
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=metric_direction(cfg.metric),
        sampler=sampler(cfg.seed + seed_offset, cfg.n_startup_trials),
        pruner=pruner(cfg.n_startup_trials, cfg.pruner_warmup_steps),
        load_if_exists=True,
    )


def suggest(trial: Trial, space: list[SearchParam]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in space:
        if p.type == "categorical":
            params[p.name] = trial.suggest_categorical(p.name, p.choices)
        elif p.type == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def pruning_callback(trial: Trial, warmup_steps: int = 0) -> Callable[[lgb.callback.CallbackEnv], None]:
    """Report the validation metric every REPORT_EVERY iterations from `warmup_steps` on; stop hopeless trials.

    Each report and prune check is a storage round trip; before the pruner's warm-up it could
    never prune and no later trial compares against those steps, so they are not reported."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        step = env.iteration + 1
        if step % REPORT_EVERY or step < warmup_steps or not env.evaluation_result_list:
            return
        trial.report(float(env.evaluation_result_list[0][2]), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {step}")

    return callback


def make_objective(data: TrainData, base: LightGBMModel, space: list[SearchParam], warmup_steps: int = 0) -> Callable[[Trial], float]:
    """Objective on the shared Dataset: fit with the trial's params, score on the validation part."""

    def objective(trial: Trial) -> float:
        trial.set_user_attr("pid", os.getpid())  # first: a trial without one is still being started (`_fail_interrupted_trials`)
        trial.set_user_attr("host", socket.gethostname())
        model = LightGBMModel(
            params={**base.params, **suggest(trial, space)},
            num_boost_round=base.num_boost_round,
            early_stopping_rounds=base.early_stopping_rounds,
            metric=base.metric,
            num_threads=base.num_threads,
        )
        model.fit_data(data, callbacks=[pruning_callback(trial, warmup_steps)])
        trial.set_user_attr("best_iteration", model.best_iteration)
        return score(base.metric, data.y_valid, model.predict_proba(data.X_valid))

    return objective


def finished_trials(study: optuna.Study) -> int:
    """Complete + pruned trials: what `tuning.n_trials` counts (a pruned trial is a finished, cheap answer)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by outcome, for the run summary and MLflow: finished (= complete + pruned), complete, pruned, failed."""
    states = Counter(t.state for t in trials)
    complete, pruned = states[TrialState.COMPLETE], states[TrialState.PRUNED]
    return {
        "finished_trials": complete + pruned,
        "complete_trials": complete,
        "pruned_trials": pruned,
        "failed_trials": states[TrialState.FAIL],
    }


def _best(study: optuna.Study, trials: list[FrozenTrial]) -> float | None:
    """The best value among `trials` (already read: `study.best_value` would be another storage query)."""
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not values:
        return None
    return (max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min)(values)


def _shown(best: float | None) -> str:
    return "-" if best is None else f"{best:.4f}"


Show = Callable[[FrozenTrial, float, dict[str, int], float | None], None]


def stop_at_target(target: int, show: Show) -> Callable[[optuna.Study, FrozenTrial], None]:
    """After each finished trial: read the study once (on MySQL a read costs about 10 ms of the
    trial), show the progress from it and stop this shard when all shards together reached `target`.

    A trial's time is measured here, from the previous trial's end: MySQL keeps whole seconds."""
    previous = time.perf_counter()

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal previous
        took, previous = time.perf_counter() - previous, time.perf_counter()
        trials = study.get_trials(deepcopy=False)
        counts = trial_counts(trials)
        show(trial, took, counts, _best(study, trials))
        if counts["finished_trials"] >= target:
            study.stop()

    return callback


def progress_line(target: int, shard: str, level: int = logging.INFO) -> Show:
    """A log line for each trial that is the study's best so far, for the first trial that takes the
    study (as this shard sees it) into a new tenth of the target, and for the last; the other trials
    at debug (a few hundred trial lines per shard would bury the rest of the run's log)."""
    every = max(1, math.ceil(target / 10))
    shown_tenths = -1

    def show(trial: FrozenTrial, took: float, counts: dict[str, int], best: float | None) -> None:
        nonlocal shown_tenths
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        finished = counts["finished_trials"]
        is_best = trial.state == TrialState.COMPLETE and trial.value == best
        notable = is_best or finished // every > shown_tenths or finished >= target
        if notable:
            shown_tenths = max(shown_tenths, finished // every)
        log.log(
            level if notable else logging.DEBUG,
            "[%s] trial %d %s in %.2fs (best %s, %d/%d finished: %d complete, %d pruned)",
            shard,
            trial.number,
            value,
            took,
            _shown(best),
            finished,
            target,
            counts["complete_trials"],
            counts["pruned_trials"],
        )

    return show


@contextmanager
def trial_progress(target: int, shard: str) -> Iterator[Callable[[optuna.Study, FrozenTrial], None]]:
    """The shard's per-trial callback: stops at the target and reports, on a terminal as one progress
    bar (trials done/target, best value, ETA) drawn by shard-0 and counting every shard's trials, the
    per-trial lines going to debug; elsewhere (Prefect UI, CI, a pipe) as log lines (`progress_line`)."""
    if not interactive():
        yield stop_at_target(target, progress_line(target, shard))
        return
    if shard != "shard-0":  # other local shard processes share shard-0's terminal and bar
        yield stop_at_target(target, progress_line(target, shard, logging.DEBUG))
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    def advance(trial: FrozenTrial, took: float, counts: dict[str, int], best: float | None) -> None:
        bar.update(counts["finished_trials"] - bar.n)
        bar.set_postfix_str(f"best {_shown(best)}")

    with tqdm(total=target, desc="tuning", unit="trial") as bar, logging_redirect_tqdm():
        yield stop_at_target(target, advance)


def run_shard(
    study: optuna.Study,
    objective: Callable[[Trial], float],
    target_trials: int,
    timeout_s: float | None = None,
    shard: str = "shard-0",
    extra_callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
    storage_outage_s: float = 120.0,
) -> int:
    """Run trials until the study holds `target_trials` finished (complete or pruned) trials, all shards together.

    Returns how many trials this shard finished. Several shards may each start a trial
    when one is missing, so the study can end up to (shards - 1) trials over the target.

    An Optuna database that stops answering (a restart, a failover) is waited for, up to
    `storage_outage_s` seconds per outage, instead of ending the shard: the trial it broke stays
    RUNNING until its heartbeat goes stale, then it is failed and retried once (never counted twice).
    """
    before = {t.number for t in _storage_call(study, lambda: study.get_trials(deepcopy=False, states=FINISHED), shard, storage_outage_s)}
    started = time.perf_counter()
    try:
        _optimize_until(study, objective, target_trials, timeout_s, shard, [*(extra_callbacks or [])], storage_outage_s)
    except BaseException as exc:
        if not _raised_under(exc, (KeyboardInterrupt,)):
            raise
        _fail_interrupted_trials(study, shard)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise KeyboardInterrupt from exc  # Optuna's own error while it was being interrupted: still a Ctrl-C
    mine = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.number not in before and _started_here(t)]
    log.info("[%s] finished %d trials in %.1fs", shard, len(mine), time.perf_counter() - started)
    return len(mine)


def _optimize_until(
    study: optuna.Study,
    objective: Callable[[Trial], float],
    target_trials: int,
    timeout_s: float | None,
    shard: str,
    extra_callbacks: list[Callable[[optuna.Study, FrozenTrial], None]],
    storage_outage_s: float,
) -> None:
    """`study.optimize` until the target, the timeout, or an error other than a storage outage."""
    started = time.perf_counter()
    with trial_progress(target_trials, shard) as report:
        while _storage_call(study, lambda: finished_trials(study), shard, storage_outage_s) < target_trials:
            left = None if timeout_s is None else timeout_s - (time.perf_counter() - started)
            if left is not None and left <= 0:
                return
            try:
                study.optimize(objective, timeout=left, callbacks=[report, *extra_callbacks], catch=(), gc_after_trial=False)
            except Exception as exc:
                if not _caused_by_storage(exc):
                    raise
                log.warning("[%s] the Optuna storage failed mid-trial (%s): waiting for it", shard, _reason(exc))
                continue
            return


def _started_here(trial: FrozenTrial) -> bool:
    """The trial's objective ran in this process (its host and pid: containers on other hosts reuse pids)."""
    return trial.user_attrs.get("pid") == os.getpid() and trial.user_attrs.get("host", socket.gethostname()) == socket.gethostname()


def _fail_interrupted_trials(study: optuna.Study, shard: str) -> None:
    """Ctrl-C inside a trial lets Optuna fail it, but one landing while Optuna creates or tells a trial
    leaves it RUNNING for good (no heartbeat was started for it): fail this process's running trials
    and those caught before their objective started (no pid yet). Best effort: the storage may be
    what the interrupt broke, and the interrupt must still end the run."""
    try:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "pid" not in trial.user_attrs or _started_here(trial):
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                log.warning("[%s] interrupted: trial %d marked failed", shard, trial.number)
    except Exception as exc:
        log.warning("[%s] interrupted: could not fail its running trials (%s)", shard, _reason(exc))


def _storage_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    return (optuna.exceptions.StorageInternalError, SQLAlchemyError, ConnectionError)


STORAGE_ERRORS = _storage_errors()


def _exception_chain(exc: BaseException | None, limit: int = 10) -> list[BaseException]:
    """`exc` and what it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and len(chain) < limit:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _raised_under(exc: BaseException | None, kinds: tuple[type[BaseException], ...]) -> bool:
    """`exc` is one of `kinds`, or was raised from or while handling one (Optuna 5 masks a `tell`
    that failed or was interrupted behind an UnboundLocalError of its own)."""
    return any(isinstance(e, kinds) for e in _exception_chain(exc))


def _caused_by_storage(exc: BaseException | None) -> bool:
    """A storage error, or any error raised while handling one."""
    return _raised_under(exc, STORAGE_ERRORS)


def _reason(exc: BaseException) -> str:
    """The database's own error under a storage failure: Optuna's StorageInternalError text blames
    "invalid data ... exceeding max length" even when the connection was lost."""
    chain = _exception_chain(exc)
    storage = [e for e in chain if isinstance(e, STORAGE_ERRORS)] or chain
    cause = next((e for e in storage if not isinstance(e, optuna.exceptions.StorageInternalError)), storage[0])
    error = getattr(cause, "orig", None) or cause  # SQLAlchemy wraps the driver's error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _storage_call(study: optuna.Study, call: Callable[[], Any], shard: str, outage_s: float) -> Any:
    """`call()` against the study's storage, retried with backoff while the storage is unreachable."""
    waited, wait = 0.0, 0.5
    while True:
        try:
            return call()
        except STORAGE_ERRORS as exc:
            if waited >= outage_s:
                raise TuningError(f"[{shard}] the Optuna storage stayed unreachable for {waited:.0f} s ({_reason(exc)})") from None
            log.warning("[%s] Optuna storage unreachable (%s): retrying in %.1f s", shard, _reason(exc), wait)
            time.sleep(wait)
            waited += wait
            wait = min(wait * 2, 5.0)


def best_params(study: optuna.Study) -> dict[str, Any]:
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise TuningError(f"study {study.study_name!r} has no completed trial to take parameters from")
    return dict(study.best_trial.params)
