"""Checks of services/e2e.sh, run inside the stack's network with the pipeline's environment.

    python e2e_check.py assert            # after a training run: assert, print the snapshot (last line, JSON)
    python e2e_check.py compare SNAPSHOT  # after a restart: the same runs, studies, models and objects
    python e2e_check.py security FILE     # the pipeline key cannot alter model artifacts; none of the
                                          # secrets listed in FILE (one a line) is in Prefect or MLflow
    python e2e_check.py watch-kill N      # wait until N hosts each finished a trial of the running study and
                                          # one of them runs a trial now: print that host (the worker to kill)
    python e2e_check.py shards FLOW_RUN   # per shard of a training flow run: flow-run state and its time, the
                                          # MLflow shard run's host and status, trials per host (JSON)
    python e2e_check.py scoring           # a scheduled scoring run completes; its scores table and parquet
    python e2e_check.py alert             # a failing scoring run posts exactly one alert to the webhook receiver

Reads: MLflow (PIPELINE__TRACKING__TRACKING_URI), Optuna (PIPELINE__TUNING__STORAGE), S3
(PIPELINE__STORAGE__URI, PIPELINE__STORAGE__S3_ENDPOINT_URL, AWS_*; MLFLOW_BUCKET), Prefect (PREFECT_API_URL),
the scores table (PIPELINE__SCORING__TABLE_URL), the source (PIPELINE__DATA__URL), the alerts (ALERT_WEBHOOK_URL).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

WORKER_KEYS = ("host", "hostname", "worker")  # trial user attr naming the machine (container) that ran it


def log(msg: str) -> None:
    print(f"e2e-check: {msg}", file=sys.stderr, flush=True)


def mlflow_state() -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["PIPELINE__TRACKING__TRACKING_URI"])
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    runs = []
    for exp in experiments:
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            runs.append({"id": run.info.run_id, "experiment": exp.name, "status": run.info.status})
    models = []
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name='{model.name}'")
        models.append(
            {
                "name": model.name,
                "versions": sorted(int(v.version) for v in versions),
                "aliases": dict(sorted((getattr(model, "aliases", None) or {}).items())),
            }
        )
    return {
        "experiments": sorted(e.name for e in experiments),
        "runs": sorted(runs, key=lambda r: r["id"]),
        "models": sorted(models, key=lambda m: m["name"]),
    }


def load_model(name: str, version: int) -> str:
    """Load the registered model back: its files come from the artifact bucket through the server."""
    import mlflow

    mlflow.set_tracking_uri(os.environ["PIPELINE__TRACKING__TRACKING_URI"])
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return type(model).__name__


def optuna_state() -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(os.environ["PIPELINE__TUNING__STORAGE"], skip_table_creation=True)
    studies = {}
    for summary in optuna.study.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        origins: dict[str, Counter] = {}
        for trial in trials:
            for attrs in (trial.user_attrs, trial.system_attrs):
                for key, value in attrs.items():
                    if key.lower() in WORKER_KEYS and isinstance(value, (str, int)):
                        origins.setdefault(key, Counter())[str(value)] += 1
        studies[summary.study_name] = {
            "trials": len(trials),
            "states": dict(sorted(Counter(t.state.name for t in trials).items())),
            "origins": {k: dict(sorted(c.items())) for k, c in sorted(origins.items())},
        }
    return studies


def s3_state(bucket: str) -> dict:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=os.environ.get("PIPELINE__STORAGE__S3_ENDPOINT_URL") or None, config=Config(s3={"addressing_style": "path"})
    )
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = obj["Size"]
    return {"objects": len(objects), "bytes": sum(objects.values()), "keys": sorted(objects)}


def started_runs():
    """A flow-run filter leaving out the runs that the schedules create ahead (up to 100 per schedule)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED])))


def prefect_state() -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=started_runs(), limit=200)
        deployments = {d.id: d.name for d in client.read_deployments()}
        names = {fid: client.read_flow(fid).name for fid in {run.flow_id for run in runs}}
    return {
        "deployments": sorted(deployments.values()),
        "flow_runs": sorted(
            ({"id": str(r.id), "flow": names[r.flow_id], "state": r.state.type.value if r.state else None} for r in runs),
            key=lambda r: r["id"],
        ),
    }


def snapshot() -> dict:
    data_bucket = urlparse(os.environ["PIPELINE__STORAGE__URI"]).netloc
    return {
        "mlflow": mlflow_state(),
        "optuna": optuna_state(),
        "s3_data": s3_state(data_bucket),
        "s3_mlflow": s3_state(os.environ.get("MLFLOW_BUCKET", "mlflow-artifacts")),
        "prefect": prefect_state(),
    }


def check(snap: dict) -> list[str]:
    problems = []
    finished = [r for r in snap["mlflow"]["runs"] if r["status"] == "FINISHED"]
    if not finished:
        problems.append(f"no FINISHED MLflow run: {snap['mlflow']['runs']}")
    versions = [(m["name"], v) for m in snap["mlflow"]["models"] for v in m["versions"]]
    if not versions:
        problems.append("no registered model version in MLflow")
    else:
        name, version = versions[-1]
        try:
            log(f"loaded registered model {name} v{version} back: {load_model(name, version)}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"cannot load registered model {name} v{version}: {exc}")
    if not snap["optuna"]:
        problems.append("no Optuna study in the tuning database")
    for name, study in snap["optuna"].items():
        if study["states"].get("COMPLETE", 0) < 1:
            problems.append(f"study {name}: no COMPLETE trial ({study['states']})")
        spread = {k: v for k, v in study["origins"].items() if len(v) >= 2}
        if not spread:
            problems.append(f"study {name}: trials do not come from two workers (attrs seen: {study['origins']})")
        else:
            log(f"study {name}: trials by origin {spread}")
    if snap["s3_data"]["objects"] == 0:
        problems.append("the data bucket holds no run data")
    if snap["s3_mlflow"]["objects"] == 0:
        problems.append("the MLflow artifact bucket is empty")
    completed = [r for r in snap["prefect"]["flow_runs"] if r["state"] == "COMPLETED"]
    if not completed:
        problems.append("no COMPLETED Prefect flow run")
    return problems


def summary(snap: dict) -> str:
    return (
        f"MLflow runs {len(snap['mlflow']['runs'])}, models "
        f"{[(m['name'], m['versions'], m['aliases']) for m in snap['mlflow']['models']]}; "
        f"Optuna {[(n, s['states']) for n, s in snap['optuna'].items()]}; "
        f"data bucket {snap['s3_data']['objects']} objects / {snap['s3_data']['bytes']} B; "
        f"MLflow bucket {snap['s3_mlflow']['objects']} objects; "
        f"Prefect flow runs {dict(Counter(r['state'] for r in snap['prefect']['flow_runs']))}"
    )


def _denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in {"AccessDenied", "Forbidden", "403"}
    return False


def security_problems(secrets_file: str) -> list[str]:
    """Least privilege of the pipeline's S3 key, and no secret in what Prefect and MLflow store."""
    import boto3
    from botocore.config import Config
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    problems = []
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("PIPELINE__STORAGE__S3_ENDPOINT_URL") or None,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    bucket = os.environ.get("MLFLOW_BUCKET", "mlflow-artifacts")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]  # read: allowed
    if not keys:
        problems.append(f"the pipeline key sees no object in s3://{bucket}")
    else:
        if not _denied(lambda: s3.put_object(Bucket=bucket, Key=keys[0], Body=b"tampered")):
            problems.append(f"the pipeline key could overwrite s3://{bucket}/{keys[0]}")
        if not _denied(lambda: s3.delete_object(Bucket=bucket, Key=keys[0])):
            problems.append(f"the pipeline key could delete s3://{bucket}/{keys[0]}")
    if not _denied(lambda: s3.create_bucket(Bucket="churn-typo-bucket")):
        problems.append("the pipeline key could create a bucket")
    log(f"pipeline S3 key: reads s3://{bucket} ({len(keys)} objects), cannot overwrite, delete or create buckets")

    secrets = [line.strip() for line in open(secrets_file) if line.strip()]
    client = MlflowClient(tracking_uri=os.environ["PIPELINE__TRACKING__TRACKING_URI"])
    texts = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            texts[f"MLflow run {run.info.run_id} params/tags"] = json.dumps([run.data.params, run.data.tags])
    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(limit=200)
        texts["Prefect flow-run parameters"] = json.dumps([r.parameters for r in runs], default=str)
        texts["Prefect logs"] = json.dumps([entry.message for entry in prefect.read_logs(LogFilter(), limit=200)])
    for where, text in texts.items():
        for secret in secrets:
            if secret in text:
                problems.append(f"a secret ({secret[:3]}...) is stored in {where}")
    log(f"no secret in {len(texts)} Prefect/MLflow records ({len(secrets)} secrets looked for)")
    return problems


# ---------------------------------------------------------------- a worker killed mid-tuning


def _trials_by_host(study) -> dict[str, Counter]:
    return {
        host: Counter(t.state.name for t in study.get_trials(deepcopy=False) if t.user_attrs.get("host") == host)
        for host in {t.user_attrs.get("host") for t in study.get_trials(deepcopy=False)} - {None}
    }


def watch_kill(hosts_wanted: int, timeout: float = 600) -> str:
    """The host to kill: once `hosts_wanted` hosts each completed a trial of the newest study, one running a trial now."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(os.environ["PIPELINE__TUNING__STORAGE"], skip_table_creation=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summaries = [s for s in optuna.study.get_all_study_summaries(storage) if s.datetime_start]
        if summaries:
            newest = max(summaries, key=lambda s: s.datetime_start)
            by_host = _trials_by_host(optuna.load_study(study_name=newest.study_name, storage=storage))
            done = {h for h, c in by_host.items() if c["COMPLETE"] + c["PRUNED"] >= 1}
            running = sorted(h for h in done if by_host[h]["RUNNING"])
            if len(done) >= hosts_wanted and running:
                log(f"study {newest.study_name}: trials by host {dict((h, dict(c)) for h, c in by_host.items())}")
                return running[0]
        time.sleep(0.5)
    raise SystemExit(f"no study had {hosts_wanted} hosts with a finished trial and one running within {timeout:.0f} s")


def shards(flow_run_id: str) -> dict:
    """What became of each tuning shard of a training flow run: Prefect, MLflow and Optuna side by side."""
    import optuna
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["tuning-shard"])), limit=200)
        mine = [r for r in runs if r.parameters.get("run_id") == flow_run_id]
        training = client.read_flow_run(flow_run_id)
    prefect_side = {
        f"shard-{r.parameters['shard_index']}": {"flow_run": r.name, "state": r.state.type.value, "at": r.state.timestamp.timestamp()}
        for r in mine
    }
    tracking = MlflowClient(os.environ["PIPELINE__TRACKING__TRACKING_URI"])
    experiments = [e.experiment_id for e in tracking.search_experiments()]
    parent = tracking.search_runs(experiments, f"tags.pipeline_run_id = '{flow_run_id}'")[0].info.run_id
    shard_runs = {
        run.data.tags.get("shard"): {"host": run.data.tags.get("host"), "status": run.info.status}
        for run in tracking.search_runs(experiments, f"tags.mlflow.parentRunId = '{parent}'")
    }
    storage = optuna.storages.RDBStorage(os.environ["PIPELINE__TUNING__STORAGE"], skip_table_creation=True)
    study = next(s for s in optuna.study.get_all_study_summaries(storage) if s.study_name.endswith(flow_run_id))
    by_host = _trials_by_host(optuna.load_study(study_name=study.study_name, storage=storage))
    return {
        "training_state": training.state.type.value,
        "prefect": prefect_side,
        "mlflow": shard_runs,
        "trials_by_host": {h: dict(c) for h, c in by_host.items()},
    }


# ---------------------------------------------------------------- scores on a schedule, alerts


def ensure_champion() -> str:
    """The champion the scheduled scoring uses: a small e2e model may lose to a baseline and stay unpromoted;
    then the alias is moved by hand, as README's promotion rule allows."""
    from mlflow.tracking import MlflowClient

    from pipeline.config import load_config

    cfg = load_config()
    client = MlflowClient(cfg.tracking.tracking_uri)
    model = client.get_registered_model(cfg.tracking.registered_model)
    alias = cfg.tracking.champion_alias
    if alias not in (model.aliases or {}):
        latest = max(int(v.version) for v in client.search_model_versions(f"name='{model.name}'"))
        client.set_registered_model_alias(model.name, alias, str(latest))
        log(f"{model.name}: no {alias} (the e2e model was not promoted): alias set by hand to v{latest}")
    return f"{model.name}@{alias} = v{client.get_registered_model(model.name).aliases[alias]}"


def _wait_for_scheduled_run(client, deployment_id, since: datetime, timeout: float):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the daily cron keeps up to 100 runs scheduled ahead: only started ones are asked for
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])), flow_run_filter=started_runs(), limit=50
        )
        scheduled = [r for r in runs if r.auto_scheduled and r.created and r.created >= since]
        if scheduled:
            return min(scheduled, key=lambda r: r.created)
        time.sleep(2)
    raise SystemExit(f"the scheduler started no scoring run within {timeout:.0f} s")


def scheduled_scoring(timeout: float = 420) -> list[str]:
    """The `scoring` deployment has its cron schedule, active; a short interval schedule added next to it
    makes Prefect's scheduler start a run, which must complete. Returns the problems."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import IntervalSchedule

    problems = []
    log(f"champion: {ensure_champion()}")
    cron = os.environ["PIPELINE__SCORING__CRON"]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("scoring/scoring")
        crons = [(s.schedule.cron, s.active) for s in deployment.schedules if getattr(s.schedule, "cron", None)]
        if (cron, True) not in crons:
            problems.append(f"scoring/scoring has no active schedule {cron!r}: {crons}")
        log(f"scoring/scoring schedules: {crons}")
        since = datetime.now(UTC)
        every = IntervalSchedule(interval=timedelta(seconds=15), anchor_date=since)
        [added] = client.create_deployment_schedules(deployment.id, [(every, True)], max_scheduled_runs=1)
        try:
            run = _wait_for_scheduled_run(client, deployment.id, since, 120)
        finally:
            client.delete_deployment_schedule(deployment.id, added.id)  # its runs not yet started go with it
        log(f"the scheduler started scoring run {run.name} ({run.id}); waiting for it")
        deadline = time.monotonic() + timeout
        while not (run := client.read_flow_run(run.id)).state.is_final() and time.monotonic() < deadline:
            time.sleep(3)
    if not run.state.is_completed():
        problems.append(f"scheduled scoring run {run.name}: {run.state.name} {run.state.message}")
    else:
        log(f"scheduled scoring run {run.name} completed in {(run.end_time - run.start_time).total_seconds():.0f} s")
    return problems + scores_problems()


def active_customers() -> int:
    """Customers with an order in the scoring.active_days days up to the latest order date, counted in SQL on the source."""
    import sqlalchemy as sa

    from pipeline.config import load_config

    days = load_config().scoring.active_days
    query = sa.text(
        "SELECT COUNT(DISTINCT CustomerID) FROM SalesOrderHeader WHERE CustomerID IS NOT NULL AND OrderDate >= "
        "(SELECT DATE(MAX(OrderDate)) FROM SalesOrderHeader) + INTERVAL 1 DAY - INTERVAL :days DAY"
    )
    with sa.create_engine(os.environ["PIPELINE__DATA__URL"]).connect() as conn:
        return int(conn.execute(query, {"days": days}).scalar_one())


def scores_problems() -> list[str]:
    """One row per active customer in the scores table, the same rows as parquet in the data bucket."""
    import io

    import boto3
    import pandas as pd
    import sqlalchemy as sa

    with sa.create_engine(os.environ["PIPELINE__SCORING__TABLE_URL"]).connect() as conn:
        groups = conn.execute(
            sa.text("SELECT model_name, model_version, as_of, COUNT(*), COUNT(DISTINCT customer_id) FROM scores GROUP BY 1, 2, 3")
        ).all()
    active = active_customers()
    log(
        f"scores table (model, version, as_of, rows, customers): {[tuple(map(str, g)) for g in groups]}; active customers in the source: {active}"
    )
    if len(groups) != 1 or groups[0][3] != active or groups[0][4] != active:
        return [f"expected one scoring of {active} active customers, one row each, in the scores table: {groups}"]
    name, version, as_of = groups[0][:3]
    as_of = str(as_of)[:10]
    bucket = urlparse(os.environ["PIPELINE__STORAGE__URI"]).netloc
    key = f"scores/{as_of}/{name}-v{version}.parquet"
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=os.environ.get("PIPELINE__STORAGE__S3_ENDPOINT_URL") or None, config=Config(s3={"addressing_style": "path"})
    )
    parquet = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    log(f"s3://{bucket}/{key}: {len(parquet)} rows")
    return [] if len(parquet) == active else [f"s3://{bucket}/{key} holds {len(parquet)} rows, expected {active}"]


def _webhook_calls() -> list[dict]:
    url = urlparse(os.environ["ALERT_WEBHOOK_URL"])
    with urllib.request.urlopen(f"{url.scheme}://{url.netloc}/calls", timeout=10) as response:
        return json.load(response)


def alert_problems(timeout: float = 120, quiet_period: float = 15) -> list[str]:
    """Force a failed scoring run (a model version that does not exist); the receiver must record exactly
    one failure alert, naming that run and linking to it in the Prefect UI."""
    from prefect.deployments import run_deployment

    run = run_deployment("scoring/scoring", parameters={"version": 999999}, timeout=300)
    if not run.state.is_failed():
        return [f"the forced scoring run {run.name} ended {run.state.name}, expected Failed"]
    failed_at = time.monotonic()
    log(f"forced failure: scoring run {run.name} ({run.id}) {run.state.name}")
    deadline = failed_at + timeout
    while time.monotonic() < deadline and not any(str(run.id) in json.dumps(c["body"]) for c in _webhook_calls()):
        time.sleep(1)
    log(f"alert received {time.monotonic() - failed_at:.1f} s after the run failed; listening {quiet_period:.0f} s more")
    time.sleep(quiet_period)
    calls = _webhook_calls()
    failures = [c["body"] for c in calls if isinstance(c["body"], dict) and c["body"].get("alert", "").startswith("flow run")]
    log(f"webhook receiver: {len(calls)} calls, {len(failures)} failure alerts: {json.dumps(failures)[:600]}")
    if len(failures) != 1:
        return [f"expected exactly one failure alert, got {len(failures)}: {failures}"]
    body, link = failures[0], f"{os.environ['PREFECT_PUBLIC_URL']}/runs/flow-run/{run.id}"
    problems = []
    if body.get("flow_run") != run.name:
        problems.append(f"the alert names flow run {body.get('flow_run')!r}, not {run.name!r}")
    if body.get("url") != link:
        problems.append(f"the alert links to {body.get('url')!r}, not {link}")
    return problems


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "assert"
    if mode == "watch-kill":
        print(watch_kill(int(argv[2])))
        return 0
    if mode == "shards":
        print(json.dumps(shards(argv[2])))
        return 0
    checks = {"security": lambda: security_problems(argv[2]), "scoring": scheduled_scoring, "alert": alert_problems}
    if mode in checks:
        problems = checks[mode]()
        for problem in problems:
            log(f"FAIL: {problem}")
        return 1 if problems else 0
    snap = snapshot()
    log(summary(snap))
    if mode == "assert":
        problems = check(snap)
    elif mode == "compare":
        before = json.loads(argv[2])
        problems = [
            f"{part} changed across the restart:\n  before {json.dumps(before[part])[:1500]}\n  after  {json.dumps(snap[part])[:1500]}"
            for part in before
            if before[part] != snap.get(part)
        ]
    else:
        log(f"unknown mode {mode!r}")
        return 2
    for problem in problems:
        log(f"FAIL: {problem}")
    print(json.dumps(snap, sort_keys=True))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
