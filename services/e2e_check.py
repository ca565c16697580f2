"""Checks of services/e2e.sh, run inside the stack's network with the pipeline's environment.

    python e2e_check.py assert            # after a training run: assert, print the snapshot (last line, JSON)
    python e2e_check.py compare SNAPSHOT  # after a restart: the same runs, studies, models and objects
    python e2e_check.py security FILE     # the pipeline key cannot alter model artifacts; none of the
                                          # secrets listed in FILE (one a line) is in Prefect or MLflow

Reads: MLflow (PIPELINE__TRACKING__TRACKING_URI), Optuna (PIPELINE__TUNING__STORAGE), S3
(PIPELINE__STORAGE__URI, PIPELINE__STORAGE__S3_ENDPOINT_URL, AWS_*; MLFLOW_BUCKET), Prefect (PREFECT_API_URL).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
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


def prefect_state() -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
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


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "assert"
    if mode == "security":
        problems = security_problems(argv[2])
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
