"""Command line: `python -m pipeline <command>`; every command is a thin call into the package."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("pipeline.cli")


def _config(args: argparse.Namespace):
    from pipeline.config import load_config, parse_sets

    return load_config(args.config, parse_sets(args.set))


def run_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    """The user's config file and `--set`s as one mapping, which is what a flow run receives.

    A flow run's parameters are stored by Prefect and shown by its API, so they must carry
    neither a file path (the worker may not have the file) nor a secret.
    """
    from pipeline.config import deep_merge, parse_sets, read_config_file

    file_part = read_config_file(Path(args.config)) if args.config else {}
    return deep_merge(file_part, parse_sets(args.set)) or None


def move_secrets_to_environment(overrides: dict[str, Any] | None) -> dict[str, Any] | None:
    """Take secret values (URLs with passwords, secret-named keys) out of `overrides` and put them in
    this process's `PIPELINE__*` environment, which the flow (and its local shards) read instead."""
    import copy
    import os

    from pipeline.config import env_name
    from pipeline.masking import secret_paths

    if not overrides:
        return overrides
    public = copy.deepcopy(overrides)
    for path, value in list(secret_paths(overrides)):
        os.environ[env_name(path)] = str(value)
        node = public
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return public or None


def refuse_secrets(overrides: dict[str, Any] | None) -> None:
    """A deployment run's parameters are stored by Prefect: a secret there is readable by every API user."""
    from pipeline.config import env_name
    from pipeline.masking import secret_paths

    paths = [path for path, _ in secret_paths(overrides or {})]
    found = [".".join(path) for path in paths]
    if found:
        names = ", ".join(f"{'.'.join(path)} (env {env_name(path)})" for path in paths)
        raise SystemExit(
            f"error: {', '.join(found)} would carry a password or key into the flow run's parameters, which Prefect "
            f"stores and shows to every API user. Set it in the workers' environment instead: {names}"
        )


def _bootstrap(args: argparse.Namespace) -> None:
    """Prefect environment defaults first (before Prefect is imported), then logging."""
    import os

    from pipeline.logs import LEVEL_VARIABLE, prefect_environment, setup_logging

    level = "WARNING" if getattr(args, "quiet", False) else "DEBUG" if getattr(args, "verbose", False) else None
    if level:  # before Prefect is imported: its own loggers read PREFECT_LOGGING_LEVEL then
        os.environ[LEVEL_VARIABLE] = level
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING" if level == "WARNING" else "INFO")
    prefect_environment(_config(args).work_dir)
    setup_logging()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)  # validates before Prefect starts
    if failed_checks(cfg):
        return 2
    _bootstrap(args)
    import uuid

    from pipeline import steps

    # Bad data (target rows without a customer, dates that are no dates) is found by the extract's
    # validation: read the source here, in seconds, before the Prefect server starts; the flow's
    # extract then reuses this from the step cache (read twice only with --no-cache).
    run_id = args.run_id or uuid.uuid4().hex
    steps.prepare_source(cfg)
    steps.extract(cfg, steps.run_artifacts(cfg, run_id))
    from pipeline.flows.training import training_flow

    overrides = move_secrets_to_environment(run_overrides(args))
    exit_soon_after_interrupt()
    summary = training_flow(overrides=overrides, run_id=run_id)
    print_summary(summary, summary_links(args, summary, None if args.run_id else summary["run_id"]))
    return 0


def exit_soon_after_interrupt(grace: float = 10.0) -> None:
    """Ctrl-C: the flow stops (its MLflow run is marked KILLED, Optuna fails the running trial), but
    Prefect's shutdown can then wait minutes for its temporary server: leave after `grace` seconds,
    or at once on a second Ctrl-C."""
    import os
    import signal
    import threading

    def leave() -> None:
        print(f"interrupted: exiting (after {grace:.0f} s of shutdown)", file=sys.stderr, flush=True)
        os._exit(130)

    def first(signum, frame) -> None:  # noqa: ANN001 - signal handler signature
        timer = threading.Timer(grace, leave)
        timer.daemon = True
        timer.start()
        signal.signal(signal.SIGINT, lambda *_: leave())
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)


def failed_checks(cfg, names: list[str] | None = None) -> bool:
    """Run the pre-run checks (pipeline.checks); print one line per problem to stderr."""
    from pipeline.checks import run_checks

    problems = run_checks(cfg, names)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return bool(problems)


def cmd_check(args: argparse.Namespace) -> int:
    """Every check a run would make first, alone: exit 0 when all pass, 2 otherwise."""
    cfg = _config(args)
    if failed_checks(cfg):
        return 2
    print(
        "all checks passed: spec, source, storage, tracking, tuning storage" + (", Prefect API" if cfg.tuning.dispatch == "prefect" else "")
    )
    return 0


def _require_prefect_server() -> None:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit(
            "error: PREFECT_API_URL is not set: start the stack "
            "(python -m pipeline stack up, or docker compose up) and export its environment"
        )


def summary_links(args: argparse.Namespace, summary: dict[str, Any], flow_run_id: str | None) -> dict[str, str]:
    """Where the run opens in the MLflow and Prefect UIs from the user's browser (pipeline.links)."""
    from pipeline.links import run_links

    return run_links(_config(args).tracking.tracking_uri, summary, flow_run_id)


def print_summary(summary: dict[str, Any], links: dict[str, str] | None = None) -> None:
    m = summary.get("metrics", {})
    model = summary.get("model", {})
    lines = [
        "",
        "=" * 72,
        f"run {summary['run_id']}",
        f"  rows        {summary.get('rows')}",
        f"  labels      {summary['labels']['labelled_orders']:.0f} labelled orders, churn rate {summary['labels']['churn_rate']:.3f} "
        f"({summary['labels']['definition']}, {summary['labels']['horizon_days']} days)",
        f"  features    {summary['features']['features']} generated, {summary['split']['features_used']} used; "
        f"train/valid/test {summary['split']['train_rows']}/{summary['split']['valid_rows']}/{summary['split']['test_rows']}",
        f"  tuning      {summary['tuning']['finished_trials']} finished trials ({summary['tuning']['complete_trials']} complete, "
        f"{summary['tuning']['pruned_trials']} pruned, {summary['tuning']['failed_trials']} failed), best valid value {summary['tuning']['best_value']}",
        f"  test        ROC AUC {m.get('roc_auc', float('nan')):.4f} | PR AUC {m.get('pr_auc', float('nan')):.4f} | "
        f"log loss {m.get('log_loss', float('nan')):.4f} | Brier {m.get('brier', float('nan')):.4f} | "
        f"F1@{m.get('threshold', 0.5):.3g} {m.get('f1', float('nan')):.4f}",
        *_decision_lines(summary),
        *([f"  WARNING     {summary['tuning']['fallback']}"] if summary["tuning"].get("fallback") else []),
        f"  model       {model.get('registered_model')} v{model.get('version')} "
        f"({'now champion' if model.get('promoted') else 'champion unchanged'}), {model.get('model_uri')}",
        f"  reports     {summary.get('reports')}",
        f"  artifacts   {summary.get('artifacts')}",
        f"  timings     {json.dumps(summary.get('timings'))}",
        *(f"  {label:<11} {url}" for label, url in (links or {}).items()),
        "=" * 72,
    ]
    print("\n".join(lines), flush=True)


def _decision_lines(summary: dict[str, Any]) -> list[str]:
    """Threshold, calibration, baselines and the promotion decision with its reason."""
    lines = []
    if t := summary.get("threshold"):
        m = summary["metrics"]
        lines.append(
            f"  threshold   {t['value']:.3f} ({t['objective']}, from valid; raw booster output {t['raw']:.3f}): "
            f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f} on test"
        )
    if c := summary.get("calibration"):
        test = c["test"]
        lines.append(
            f"  calibration {c['method']}: test log loss {test['log_loss_before']:.4f} -> {test['log_loss_after']:.4f}, "
            f"Brier {test['brier_before']:.4f} -> {test['brier_after']:.4f}"
        )
    promotion = summary.get("model", {}).get("promotion")
    if baselines := summary.get("baselines"):
        metric = promotion["metric"] if promotion else "roc_auc"
        scores = ", ".join(f"{name} {values[metric]:.4f}" for name, values in baselines.items())
        lines.append(f"  baselines   test {metric}: {scores} (model {summary['metrics'][metric]:.4f})")
    if promotion:
        lines.append(f"  promotion   {'PROMOTED' if promotion['promote'] else 'NOT promoted'}: {promotion['reason']}")
    return lines


def cmd_generate_data(args: argparse.Namespace) -> int:
    _bootstrap(args)
    from pipeline.data.synthetic import write_synthetic

    cfg = _config(args)
    url = args.url or cfg.data.url
    counts = write_synthetic(
        url, customers=args.customers or cfg.data.synthetic.customers, seed=args.seed if args.seed is not None else cfg.data.synthetic.seed
    )
    print(json.dumps(counts, indent=2))
    return 0


def cmd_load_csv(args: argparse.Namespace) -> int:
    _bootstrap(args)
    from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder

    counts = load_csv_folder(args.dir, args.url, tables=None if args.all_tables else SPEC_TABLES)
    print(json.dumps(counts, indent=2))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    _bootstrap(args)
    import os

    from pipeline.alerts import webhook_url
    from pipeline.ops.deployments import provision_prefect

    _require_prefect_server()
    cfg = _config(args)
    alert_url = webhook_url(cfg)
    names = provision_prefect(os.environ["PREFECT_API_URL"], Path(args.project_dir).resolve(), cfg, alert_url)
    print("deployments:", ", ".join(names))
    print(f"schedules: training {cfg.training.cron!r}, scoring {cfg.scoring.cron!r} (UTC); alerts:", "on" if alert_url else "off")
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    """Start a run of the training deployment; with --wait, exit 0 only if it completed."""
    from pipeline.checks import prefect_api_problems

    overrides = run_overrides(args)
    refuse_secrets(overrides)
    problems = prefect_api_problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    _bootstrap(args)
    from prefect.deployments import run_deployment

    run = run_deployment(name=args.deployment, parameters={"overrides": overrides}, timeout=0)
    print(f"flow run {run.id} started on deployment {args.deployment}", flush=True)
    if not args.wait:
        return 0
    state = _wait_for_flow_run(run.id)
    print(f"flow run {run.id}: {state.name}", flush=True)
    if state.is_completed() and args.deployment.startswith("training/"):
        _print_stored_summary(args, str(run.id))
    return 0 if state.is_completed() else 1


def _wait_for_flow_run(flow_run_id, patience: float = 600.0):
    """Poll until the run is final; ride out a Prefect server that restarts (saying so), for `patience` s."""
    import time

    import httpx
    from prefect.client.orchestration import get_client

    unreachable_since = None
    with get_client(sync_client=True) as client:
        while True:
            try:
                state = client.read_flow_run(flow_run_id).state
                unreachable_since = None
            except httpx.HTTPError as exc:
                now = time.monotonic()
                if unreachable_since is None:
                    unreachable_since = now
                    print(
                        f"the Prefect API does not answer ({type(exc).__name__}): waiting for it (up to {patience:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                if now - unreachable_since > patience:
                    raise SystemExit(
                        f"error: the Prefect API did not come back within {patience:.0f} s; flow run {flow_run_id} state unknown"
                    ) from None
                state = None
            if state is not None and state.is_final():
                return state
            time.sleep(3)


def _print_stored_summary(args: argparse.Namespace, run_id: str) -> None:
    """The run's summary, as `make run` prints it, read back from the artifact store the workers share."""
    from pipeline.steps import run_artifacts

    try:
        summary = run_artifacts(_config(args), run_id).get_json("summary")
    except (FileNotFoundError, PermissionError, ConnectionError) as exc:
        print(f"(no summary readable from the artifact store here: {exc})", flush=True)
        return
    print_summary(summary, summary_links(args, summary, run_id))


def cmd_score(args: argparse.Namespace) -> int:
    """Score the active customers with the registered model; print the most at risk and the summary."""
    if args.as_of:
        args.set.append(f"scoring.as_of={args.as_of}")  # validated with the rest of the configuration
    cfg = _config(args)
    from pipeline import scoring
    from pipeline.logs import setup_logging

    setup_logging()
    try:
        result = scoring.score(cfg, version=args.version)
    except scoring.ScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.summary["mlflow_run_id"] = scoring.log_summary(cfg, result.summary)
    print(f"\ntop {args.top} customers at risk as of {result.summary['as_of']}:")
    print(scoring.top_table(result.scores, args.top))
    print("\n".join(["", *scoring.summary_lines(result.summary)]), flush=True)
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """List, pause or resume the deployments' schedules on the Prefect server of PREFECT_API_URL."""
    from pipeline.checks import prefect_api_problems

    problems = prefect_api_problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    from prefect.client.orchestration import get_client

    from pipeline.ops.schedules import format_rows, list_schedules, set_active

    with get_client(sync_client=True) as client:
        try:
            if args.action == "list":
                rows = list_schedules(client, args.deployment)
            else:
                rows = set_active(client, args.deployment, active=args.action == "resume")
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print("\n".join(format_rows(rows)), flush=True)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """The effective configuration, one `section.key = value` a line with the layer that set it."""
    from pipeline.config import config_layers, load_config, parse_sets
    from pipeline.masking import mask_value

    overrides = parse_sets(args.set)
    cfg = load_config(args.config, overrides)
    layers = config_layers(args.config, overrides)
    for key, value in _flat(cfg.model_dump()):
        source = next((name for name, layer in reversed(layers.items()) if _has_path(layer, key.split("."))), "default")
        print(f"{key} = {json.dumps(mask_value(key.rsplit('.', 1)[-1], value), default=str)}    # {source}")
    return 0


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _has_path(data: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", help="YAML config file (overrides the packaged defaults)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config key (repeatable)")
        loudness = p.add_mutually_exclusive_group()
        loudness.add_argument("-q", "--quiet", action="store_true", help="warnings, errors and the summary only")
        loudness.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        p.set_defaults(handler=handler)
        return p

    p = command("run", cmd_run, "train a model end to end (Prefect flow; ephemeral Prefect unless PREFECT_API_URL is set)")
    p.add_argument("--run-id", help="reuse a run id (its artifacts prefix and Optuna study)")
    p.add_argument(
        "--no-cache",
        dest="set",
        action="append_const",
        const="cache.enabled=false",
        help="recompute extract, labels, features and split even when the step cache holds them (same as --set cache.enabled=false)",
    )
    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    p = config_sub.add_parser("show", help="print the effective configuration, each value with its source (secrets masked)")
    p.add_argument("--config", help="YAML config file (overrides the packaged defaults)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config key (repeatable)")
    p.set_defaults(handler=cmd_config_show)
    command("check", cmd_check, "check the spec, source, storage, tracking and tuning storage a run would use, in seconds")
    p = command("generate-data", cmd_generate_data, "write the synthetic AdventureWorks-shaped source database")
    p.add_argument("--url", help="SQLAlchemy URL (default: data.url)")
    p.add_argument("--customers", type=int)
    p.add_argument("--seed", type=int)
    p = command("load-csv", cmd_load_csv, "load a folder of real AdventureWorks CSV files into a database")
    p.add_argument("--dir", required=True, help="folder with sales_salesorderheader.csv etc.")
    p.add_argument("--url", required=True, help="SQLAlchemy URL of the target database")
    p.add_argument("--all-tables", action="store_true", help="load every CSV, not only the tables the spec reads")
    p = command(
        "deploy", cmd_deploy, "create the work pool, the deployments (training and scoring on their crons) and the alert automations"
    )
    p.add_argument("--project-dir", default=".", help="code directory the workers run the flows from")
    p = command("trigger", cmd_trigger, "start a run of the training deployment on the work pool")
    p.add_argument("--deployment", default="training/training")
    p.add_argument("--wait", action="store_true", help="wait for the run and exit non-zero unless it completed")
    p = command("score", cmd_score, "score the active customers with the registered model (scores table, parquet, MLflow summary)")
    p.add_argument("--as-of", help="scoring date YYYY-MM-DD, 'latest' (the source's latest order date) or 'now' (default: scoring.as_of)")
    p.add_argument("--version", type=int, help="model version to score with (default: the tracking.champion_alias one)")
    p.add_argument("--top", type=int, default=10, help="how many of the most at-risk customers to print")
    p = sub.add_parser("schedule", help="list, pause or resume the deployments' schedules (PREFECT_API_URL)")
    p.add_argument("action", choices=["list", "pause", "resume"])
    p.add_argument("deployment", nargs="?", help="e.g. scoring or scoring/scoring (default: every deployment)")
    p.set_defaults(handler=cmd_schedule)
    add_stack_commands(sub)
    return parser


# --- stack: the topology as local processes (pipeline/ops) ------------------------------------------


def add_stack_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `stack up|down|status|env|credentials`; no --config/--set: the stack is not a run."""
    from pipeline.ops.state import DEFAULT_STATE_DIR

    stack = subparsers.add_parser("stack", help="run Prefect, MLflow, S3 and workers as local processes")
    sub = stack.add_subparsers(dest="stack_command", required=True)
    commands = {
        "up": (cmd_stack_up, "start the topology (idempotent)"),
        "down": (cmd_stack_down, "stop every process of the stack"),
        "status": (cmd_stack_status, "show processes and health"),
        "env": (cmd_stack_env, "print `export` lines for a shell (includes secrets)"),
        "credentials": (cmd_stack_credentials, "print the UI logins (Prefect, MLflow admin and read-only viewer)"),
    }
    for name, (handler, help_) in commands.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: %(default)s")
        p.set_defaults(handler=handler)
        if name == "up":
            _add_stack_up_options(p)


def _add_stack_up_options(p: argparse.ArgumentParser) -> None:
    from pipeline.ops.state import DEFAULT_POSTGRES_URL

    p.add_argument("--workers", type=int, default=2, help="tuning-shard workers, besides the trainer (default 2)")
    p.add_argument("--postgres-url", help=f"admin URL (default: $TEST_POSTGRES_URL or {DEFAULT_POSTGRES_URL})")
    p.add_argument("--mysql-url", help="Optuna storage, a user with a password (default: generated with --mysql-bootstrap-socket)")
    p.add_argument("--mysql-bootstrap-socket", help="create the Optuna database and user as root through this socket")
    p.add_argument("--s3-endpoint", help="use this S3 (keys from AWS_*) instead of starting SeaweedFS")
    p.add_argument("--s3-port", type=int, help="SeaweedFS ports: this..this+4 and +10000 (default 8333)")
    p.add_argument("--prefect-port", type=int, help="default 4200")
    p.add_argument("--mlflow-port", type=int, help="default 5500")
    p.add_argument("--work-pool", help="default: prefect.work_pool from the config")
    p.add_argument("--prefect-db", help="PostgreSQL database of the Prefect server (default prefect)")
    p.add_argument("--mlflow-db", help="PostgreSQL database of the MLflow server (default mlflow)")
    p.add_argument("--data-url", help="source database for the workers (PIPELINE__DATA__URL)")


def cmd_stack_up(args: argparse.Namespace) -> int:
    import shlex

    from pipeline.ops.stack import up
    from pipeline.ops.state import DEFAULT_STATE_DIR, StackError, StackSettings

    names = [
        "workers", "postgres_url", "mysql_url", "mysql_bootstrap_socket", "s3_endpoint", "s3_port",
        "prefect_port", "mlflow_port", "work_pool", "prefect_db", "mlflow_db", "state_dir",
    ]  # fmt: skip
    kwargs = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.data_url:
        kwargs["pipeline_env"] = {"PIPELINE__DATA__URL": args.data_url}
    try:
        info = up(StackSettings(**kwargs))
    except StackError as exc:
        print(f"stack up failed: {exc}\n(`python -m pipeline stack down` stops what was started)", file=sys.stderr)
        return 1
    print(f"Prefect UI/API: {info.prefect_api_url.removesuffix('/api')}  MLflow: {info.mlflow_url}  S3: {info.s3_endpoint}")
    state = "" if args.state_dir == DEFAULT_STATE_DIR else f" --state-dir {shlex.quote(str(args.state_dir))}"
    print(f'client environment: eval "$(python -m pipeline stack env{state})"')
    print(f"UI logins (Prefect, MLflow): python -m pipeline stack credentials{state}")
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    from pipeline.ops.stack import down

    return 1 if down(args.state_dir) else 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    from pipeline.ops.stack import status

    rows = status(args.state_dir)
    if not rows:
        print(f"no stack recorded in {args.state_dir}")
        return 1
    for r in rows:
        health = "" if r.healthy is None else ("healthy" if r.healthy else "UNHEALTHY")
        print(f"{r.name:15} pid {r.pid:<8} {'running' if r.running else 'STOPPED':8} {health:10} {r.url or ''}  log {r.log}")
    return 0 if all(r.running and r.healthy is not False for r in rows) else 1


def cmd_stack_credentials(args: argparse.Namespace) -> int:
    from pipeline.ops.state import MLFLOW_ADMIN, MLFLOW_VIEWER

    info = _recorded_stack(args.state_dir)
    if info is None:
        return 1
    print(f"Prefect UI  {info.prefect_api_url.removesuffix('/api')}  login (user:password, in its one field): {info.secrets.prefect_auth}")
    print(f"MLflow UI   {info.mlflow_url}  read-only: user {MLFLOW_VIEWER}  password {info.secrets.mlflow_viewer_password}")
    print(f"            admin (the pipeline's user): user {MLFLOW_ADMIN}  password {info.secrets.mlflow_admin_password}")
    return 0


def cmd_stack_env(args: argparse.Namespace) -> int:
    import shlex

    from pipeline.ops.state import worker_env

    info = _recorded_stack(args.state_dir)
    if info is None:
        return 1
    for key, value in worker_env(info).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _recorded_stack(state_dir: Path):
    """The stack recorded in `state_dir`, or None after saying on stderr that there is none."""
    from pipeline.ops.state import StackInfo

    info = StackInfo.load(state_dir)
    if info is None:
        print(f"no stack recorded in {state_dir}", file=sys.stderr)
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before the heavy imports: `--help` answers at once
    from pipeline.config import ConfigError
    from pipeline.data.db import DataSourceError
    from pipeline.labels import LabelError
    from pipeline.preprocess import SplitError
    from pipeline.spec import SpecError

    try:
        return args.handler(args)
    except (ConfigError, DataSourceError, LabelError, SplitError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
