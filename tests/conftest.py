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
os.environ.pop("PREFECT_API_URL", None)  # unit and flow tests never talk to a user's server


def pytest_sessionfinish(session, exitstatus):
    """Prefect stops its ephemeral server at exit and logs to pytest's already-closed capture stream."""
    import logging

    logging.raiseExceptions = False
