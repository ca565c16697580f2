"""Checks of everything a run depends on, before any server or flow starts.

A mistyped spec, a wrong password or a missing bucket is certain to fail the run; found here it
costs seconds and one clear line, instead of minutes inside a flow with retries and tracebacks.
`python -m pipeline check` runs them alone; `python -m pipeline run` and `trigger` run them first.
Each check returns the problems it found (what, where, how to fix), never raises for them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.masking import mask_url

log = logging.getLogger(__name__)
TIMEOUT = 5  # seconds per network check: an unreachable service is reported, not waited for


@dataclass(frozen=True)
class Problem:
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {mask_url(self.message)}"


def check_spec(cfg: Config) -> list[Problem]:
    """The spec loads, its queries are read-only SELECTs, its logical types are woodwork's."""
    from woodwork import type_system

    from pipeline.data.db import DataSourceError
    from pipeline.data.extract import backend_name, checked_queries
    from pipeline.spec import SpecError, load_spec

    try:
        spec = load_spec(cfg.data.spec)
        checked_queries(spec, backend_name(cfg.data.url))
    except SpecError as exc:
        return [Problem("spec", str(exc))]
    except DataSourceError:
        pass  # an unusable data.url: check_source names it; the logical types are still checked
    known = sorted(t.__name__ for t in type_system.registered_types)
    problems = []
    for entity, ent in spec.entities.items():
        for column, name in ent.logical_types.items():
            try:
                type_system.str_to_logical_type(name)
            except ValueError:
                problems.append(
                    Problem(
                        "spec",
                        f"entities.{entity}.logical_types.{column}: {name!r} is not a woodwork logical type (one of {', '.join(known)})",
                    )
                )
    return problems


def check_source(cfg: Config) -> list[Problem]:
    """The source answers, with these credentials, and each query runs and returns the spec's columns."""
    import sqlalchemy as sa

    from pipeline.data.db import DataSourceError, connect, describe_url
    from pipeline.data.extract import backend_name, checked_queries, read_only_engine, spec_columns
    from pipeline.spec import SpecError, load_spec

    url = cfg.data.url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists() and cfg.data.generate_if_missing:
        return []  # the embedded default: `prepare source` writes the synthetic database
    try:
        spec = load_spec(cfg.data.spec)
        queries = checked_queries(spec, backend_name(url))
        engine = read_only_engine(url)
    except (SpecError, DataSourceError) as exc:
        return [Problem("source", str(exc))] if isinstance(exc, DataSourceError) else []  # spec problems: check_spec
    problems = []
    try:
        with connect(engine) as conn:
            for entity, sql in queries.items():
                sample = f"SELECT * FROM ({sql.strip().rstrip(';')}) AS spec_query WHERE 1 = 0"
                try:
                    columns = {c.lower() for c in conn.execute(sa.text(sample)).keys()}
                except sa.exc.SQLAlchemyError as exc:
                    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                    problems.append(Problem("source", f"entity {entity!r} ({spec.query_path(entity)}) on {describe_url(url)}: {reason}"))
                    conn.rollback()
                    continue
                missing = sorted(c for c in spec_columns(spec, entity) if c.lower() not in columns)
                if missing:
                    problems.append(
                        Problem(
                            "source",
                            f"entity {entity!r} on {describe_url(url)}: the query returns no column(s) {missing} that the spec names",
                        )
                    )
    except DataSourceError as exc:
        problems.append(Problem("source", str(exc)))
    finally:
        engine.dispose()
    return problems


def check_storage(cfg: Config) -> list[Problem]:
    """An s3:// artifact store: the bucket exists and these keys may list it (never created here)."""
    from pipeline.storage import S3Settings, S3Store

    uri = cfg.storage.uri
    if not uri.startswith("s3://"):
        return []
    bucket = uri[5:].split("/", 1)[0]
    settings = S3Settings(endpoint_url=cfg.storage.s3_endpoint_url, region=cfg.storage.s3_region, max_attempts=2, retry_seconds=TIMEOUT)
    try:
        S3Store(bucket, settings=settings).list("__check__/")
    except FileNotFoundError:
        return [
            Problem("storage", f"bucket {bucket!r} does not exist at {settings.endpoint_url or 'AWS'}: check storage.uri, or create it")
        ]
    except (PermissionError, ConnectionError) as exc:
        return [Problem("storage", str(exc))]
    return []


def check_tracking(cfg: Config) -> list[Problem]:
    """A tracking server answers and accepts the login (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    import requests

    uri = cfg.tracking.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return []
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    try:
        resp = requests.get(
            f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=(user, password) if user else None,
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        return [Problem("tracking", f"MLflow at {uri} does not answer ({type(exc).__name__}): is the server running?")]
    if resp.status_code == 401:
        return [Problem("tracking", f"MLflow at {uri} wants a login: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")]
    if resp.status_code == 403:
        return [
            Problem("tracking", f"MLflow at {uri} refused this host or user (HTTP 403): check --allowed-hosts and the user's permissions")
        ]
    if resp.status_code != 200:
        return [Problem("tracking", f"MLflow at {uri} answered HTTP {resp.status_code}")]
    return []


def check_tuning_storage(cfg: Config) -> list[Problem]:
    """A database Optuna storage accepts the login (journal files and memory need nothing)."""
    from pipeline.ops.provision import check_database
    from pipeline.ops.state import StackError

    url = cfg.tuning.storage
    if url == "memory" or url.startswith(("journal:", "sqlite:")):
        return []
    try:
        check_database("Optuna storage", url)
    except StackError as exc:
        return [Problem("tuning", str(exc))]
    return []


def check_prefect(cfg: Config) -> list[Problem]:
    """With `tuning.dispatch: prefect`: a Prefect API is configured, answers and accepts the login."""
    if cfg.tuning.dispatch != "prefect":
        return []
    return prefect_api_problems()


def prefect_api_problems() -> list[Problem]:
    """The Prefect API of PREFECT_API_URL answers and accepts PREFECT_API_AUTH_STRING."""
    import requests

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        return [Problem("prefect", "PREFECT_API_URL is not set: start the stack and export its environment (python -m pipeline stack env)")]
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    try:
        resp = requests.post(
            f"{api.rstrip('/')}/work_pools/filter", json={"limit": 1}, timeout=TIMEOUT, auth=tuple(auth.split(":", 1)) if auth else None
        )
    except requests.RequestException as exc:
        return [Problem("prefect", f"the Prefect API at {api} does not answer ({type(exc).__name__})")]
    if resp.status_code == 401:
        return [Problem("prefect", f"the Prefect API at {api} wants a login: set PREFECT_API_AUTH_STRING=user:password")]
    if resp.status_code != 200:
        return [Problem("prefect", f"the Prefect API at {api} answered HTTP {resp.status_code}")]
    return []


CHECKS: dict[str, Callable[[Config], list[Problem]]] = {
    "spec": check_spec,
    "source": check_source,
    "storage": check_storage,
    "tracking": check_tracking,
    "tuning": check_tuning_storage,
    "prefect": check_prefect,
}


def run_checks(cfg: Config, names: list[str] | None = None) -> list[Problem]:
    """Every check (or the named ones); the source check is skipped when the spec is already wrong."""
    problems: list[Problem] = []
    for name, check in CHECKS.items():
        if names and name not in names:
            continue
        if name == "source" and any(p.check == "spec" for p in problems):
            continue
        problems += check(cfg)
    return problems
