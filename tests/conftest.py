"""Test-session environment: Prefect runs in ephemeral mode with its state in a throwaway folder.

Set before anything imports Prefect (its settings are read at import time).
"""

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="churn-tests-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline,optuna,lightgbm,featuretools")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# unit and flow tests never talk to a user's server, even from a shell after `eval "$(stack env)"`
for _name in [n for n in os.environ if n.startswith("PIPELINE__")] + [
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
]:
    os.environ.pop(_name, None)


def pytest_sessionfinish(session, exitstatus):
    """Prefect stops its ephemeral server at exit and logs to pytest's already-closed capture stream."""
    import logging

    logging.raiseExceptions = False
