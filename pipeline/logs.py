"""One logging setup for the terminal and Prefect's run logs, inside and outside flow runs.

Prefect forwards the loggers named in PREFECT_LOGGING_EXTRA_LOGGERS to the API;
these defaults must be in the environment before Prefect is imported, which is
why the CLI calls `prefect_environment` first. Outside a flow run, records still
reach the terminal and Prefect does not warn about the missing run context.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

PIPELINE_LOGGERS = ("pipeline", "featuretools", "optuna", "lightgbm")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def prefect_environment(work_dir: str | Path) -> None:
    """Environment defaults for Prefect (set only where the user has not set them)."""
    defaults = {
        "PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(PIPELINE_LOGGERS),
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    if not os.environ.get("PREFECT_API_URL"):  # ephemeral mode: keep its database under the work dir
        home = Path(work_dir).resolve() / "prefect"
        home.mkdir(parents=True, exist_ok=True)  # Prefect's SQLite cannot create a missing folder
        defaults["PREFECT_HOME"] = str(home)
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


LEVEL_VARIABLE = "PIPELINE_LOG_LEVEL"  # set by the CLI's -q/-v; flows and local shards inherit it


def setup_logging(level: int | str | None = None) -> None:
    """The pipeline and the libraries it drives at `level` (default: $PIPELINE_LOG_LEVEL, else INFO);
    a terminal handler if none is configured."""
    import lightgbm as lgb
    import optuna

    level = logging.getLevelName(str(level or os.environ.get(LEVEL_VARIABLE, "INFO")).upper())
    for name in PIPELINE_LOGGERS:
        logging.getLogger(name).setLevel(level)
    lgb.register_logger(logging.getLogger("lightgbm"))
    logging.getLogger("lightgbm").addFilter(_drop_reference_dataset_notice)
    logging.getLogger("prefect.task_runs").addFilter(_drop_hook_notices)
    if level >= logging.WARNING:  # quiet: MLflow's "Successfully registered model ..." lines too
        logging.getLogger("mlflow").setLevel(level)
    logging.getLogger("featuretools").setLevel(logging.WARNING)  # its INFO is per-chunk noise
    # Optuna prints every trial through its own handler and again through ours; `pipeline.tuning`
    # logs the trials with its progress (`progress_line`), so Optuna's warnings only, through our handler
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    logging.getLogger("optuna").setLevel(max(level, logging.WARNING))
    _third_party_warnings_once()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
    for noisy in ("alembic", "mlflow.store.db.utils", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def interactive() -> bool:
    """Progress bars instead of periodic log lines: a person watches this terminal (not a pipe, a
    CI log or a Prefect worker, whose output ends up in the Prefect UI) and did not ask for -q."""
    return sys.stderr.isatty() and logging.getLogger("pipeline").getEffectiveLevel() <= logging.INFO


def _drop_hook_notices(record: logging.LogRecord) -> bool:
    """Prefect announces every state hook twice (running, finished); the training flow's step hooks
    log the step themselves, so those notices would only double each step's lines. Failures still show."""
    message = record.getMessage()
    return record.levelno > logging.INFO or not (message.startswith("Running hook") or message.endswith("finished running successfully"))


def _drop_reference_dataset_notice(record: logging.LogRecord) -> bool:
    """LightGBM warns on every trial that the validation set reuses the training set's bins:
    that is the intent (the Dataset is binned once per worker), not a problem to report."""
    return "Overriding the parameters from Reference Dataset" not in record.getMessage()


# Libraries whose deprecation and future warnings are theirs to fix, not the user's to read.
THIRD_PARTY = ("featuretools", "woodwork", "pandas", "sklearn", "lightgbm", "mlflow", "shap", "optuna", "prefect", "pydantic")


def _third_party_warnings_once() -> None:
    """Warnings raised inside installed packages: not on the terminal, each distinct one written
    once to the `py.warnings` logger (a file, see `record_warnings`); ours still print as usual."""
    import warnings

    library_log = logging.getLogger("py.warnings")
    library_log.propagate = False
    if not library_log.handlers:
        library_log.addHandler(logging.NullHandler())
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        if f"{os.sep}site-packages{os.sep}" in filename:
            library_log.warning("%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())
        else:
            shown(message, category, filename, lineno, file, line)

    if getattr(shown, "__name__", "") != "show":
        warnings.showwarning = show
    for package in THIRD_PARTY:
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("default", category=category, module=rf"{package}(\..*)?$")


def record_warnings(path: Path) -> None:
    """Write the captured library warnings of this process to `path` (one line per distinct warning)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger("py.warnings").addHandler(handler)
