#!/opt/venv/bin/python
"""Entrypoint of the alternative S3 server (docker-compose.s3alt.yml): SeaweedFS in one process.

Honors the variables the minio service uses, so it is a drop-in behind S3_ENDPOINT_URL:
  MINIO_ROOT_USER / MINIO_ROOT_PASSWORD        the admin identity (all buckets)
  PIPELINE_S3_ACCESS_KEY / PIPELINE_S3_SECRET_KEY  the pipeline identity: DATA_BUCKET read/write,
                                               MLFLOW_BUCKET read-only (buckets created at start)
  MLFLOW_S3_ACCESS_KEY / MLFLOW_S3_SECRET_KEY  the MLflow server's identity: MLFLOW_BUCKET only
S3 API on :9000 (S3_PORT), data under /data (a named volume). Health: GET /healthz.
"""

import json
import os
import sys
import tempfile


def need(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"s3alt: {name} is not set")
    return value


def main() -> None:
    root_user, root_pw = need("MINIO_ROOT_USER"), need("MINIO_ROOT_PASSWORD")
    data_bucket, mlflow_bucket = os.environ.get("DATA_BUCKET", "churn-data"), os.environ.get("MLFLOW_BUCKET", "mlflow-artifacts")
    buckets = [data_bucket, mlflow_bucket]
    read_write = ("Read", "Write", "List", "Tagging")
    roles = {  # least privilege: the pipeline cannot alter registered models; MLflow cannot read run data
        "pipeline": (
            need("PIPELINE_S3_ACCESS_KEY"),
            need("PIPELINE_S3_SECRET_KEY"),
            [f"{a}:{data_bucket}" for a in read_write] + [f"Read:{mlflow_bucket}", f"List:{mlflow_bucket}"],
        ),
        "mlflow": (need("MLFLOW_S3_ACCESS_KEY"), need("MLFLOW_S3_SECRET_KEY"), [f"{a}:{mlflow_bucket}" for a in read_write]),
    }
    identities = [
        {
            "name": "admin",
            "credentials": [{"accessKey": root_user, "secretKey": root_pw}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
    ]
    for name, (key, secret, actions) in roles.items():
        if key != root_user:
            identities.append({"name": name, "credentials": [{"accessKey": key, "secretKey": secret}], "actions": actions})
    conf_dir = tempfile.mkdtemp(prefix="s3alt-")
    conf = os.path.join(conf_dir, "s3.json")
    with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump({"identities": identities}, handle)
    data = os.environ.get("S3_DATA_DIR", "/data")
    port = os.environ.get("S3_PORT", "9000")
    args = [
        "/opt/venv/bin/weed",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=0.0.0.0",
        f"-s3.port={port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-s3.config={conf}",
        f"-bucket={buckets[0]}",
        *sys.argv[1:],
    ]
    print(f"s3alt: SeaweedFS S3 API on :{port}, data in {data}, identities: {', '.join(i['name'] for i in identities)}", flush=True)
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
