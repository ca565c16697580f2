"""The stack as an attacker on the same machine sees it: every control plane wants a login, a flow
run cannot be turned into a shell, no secret on a command line, each role's key and database user
can do its job and nothing more."""

from __future__ import annotations

import base64
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.ops.deployments import prefect_client
from pipeline.ops.state import MLFLOW_ADMIN, MLFLOW_VIEWER, StackInfo
from pipeline.ops.supervise import descendants

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, auth: tuple[str, str] | None = None, body: dict | None = None) -> int:
    """The HTTP status of one request (basic auth optional)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with _OPENER.open(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_prefect_api_wants_its_login(stack: StackInfo) -> None:
    api = stack.prefect_api_url
    user, _, password = stack.secrets.prefect_auth.partition(":")
    assert http("GET", f"{api}/health") == 200  # health checks need no login
    assert http("POST", f"{api}/flows/filter", body={}) == 401
    assert http("POST", f"{api}/flows/filter", auth=(user, "wrong"), body={}) == 401
    assert http("POST", f"{api}/deployments/filter", body={}) == 401
    assert http("POST", f"{api}/flows/filter", auth=(user, password), body={}) == 200


def test_mlflow_wants_a_login_and_the_viewer_only_reads(stack: StackInfo) -> None:
    api = f"{stack.mlflow_url}/api/2.0/mlflow"
    admin = (MLFLOW_ADMIN, stack.secrets.mlflow_admin_password)
    viewer = (MLFLOW_VIEWER, stack.secrets.mlflow_viewer_password)
    assert http("GET", f"{stack.mlflow_url}/health") == 200
    assert http("GET", f"{api}/experiments/search?max_results=5") == 401
    assert http("GET", f"{stack.mlflow_url}/") == 401  # the UI asks the browser for a login
    assert http("GET", f"{api}/experiments/search?max_results=5", auth=(MLFLOW_VIEWER, "wrong")) == 401

    name = f"security-{secrets.token_hex(4)}"
    assert http("POST", f"{api}/experiments/create", auth=admin, body={"name": name}) == 200
    req = urllib.request.Request(f"{api}/experiments/get-by-name?experiment_name={name}")
    req.add_header("Authorization", "Basic " + base64.b64encode(":".join(admin).encode()).decode())
    with _OPENER.open(req, timeout=10) as resp:
        experiment_id = json.load(resp)["experiment"]["experiment_id"]
    assert http("GET", f"{api}/experiments/get?experiment_id={experiment_id}", auth=viewer) == 200
    assert http("POST", f"{api}/runs/create", auth=viewer, body={"experiment_id": experiment_id}) == 403
    assert http("POST", f"{api}/experiments/delete", auth=viewer, body={"experiment_id": experiment_id}) == 403
    assert http("POST", f"{api}/runs/create", auth=admin, body={"experiment_id": experiment_id}) == 200


def test_a_flow_run_cannot_override_the_workers_command_env_or_directory(stack: StackInfo, tmp_path: Path) -> None:
    from prefect.exceptions import PrefectHTTPStatusError

    marker = tmp_path / "pwned"
    with prefect_client(stack.prefect_api_url, stack.secrets.prefect_auth) as client:
        template = client.read_work_pool(stack.work_pool).base_job_template
        assert not {"command", "env", "working_dir"} & set(template["variables"]["properties"])
        assert not {"command", "env", "working_dir"} & set(template["job_configuration"])
        deployment = client.read_deployment_by_name("tuning-shard/tuning-shard")
        for job_variables in ({"command": f"touch {marker}"}, {"env": {"PYTHONSTARTUP": str(marker)}}, {"working_dir": str(tmp_path)}):
            with pytest.raises(PrefectHTTPStatusError) as refused:
                client.create_flow_run_from_deployment(deployment.id, job_variables=job_variables)
            assert refused.value.response.status_code == 422, refused.value
    assert not marker.exists()


def _command_lines(stack: StackInfo) -> dict[int, str]:
    pids = {p.pid for p in stack.processes.values()}
    pids |= {child for pid in pids for child in descendants(pid)}
    lines = {}
    for pid in pids:
        try:
            lines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
    return lines


def test_no_secret_on_any_command_line_of_the_stack(stack: StackInfo) -> None:
    lines = _command_lines(stack)
    assert len(lines) >= 6, lines  # servers and workers
    secrets_ = stack.secret_values()
    assert len(secrets_) >= 8
    for pid, line in lines.items():
        for secret in secrets_:
            assert secret not in line, f"a secret is on the command line of pid {pid}"


def _s3(stack: StackInfo, key: str, secret: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=stack.s3_endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _denied(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in {"AccessDenied", "Forbidden", "403"}
    return False


@pytest.mark.skipif(bool(os.environ.get("TEST_S3_ENDPOINT")), reason="identities are made only on the stack's own SeaweedFS")
def test_each_s3_key_reaches_only_its_buckets(stack: StackInfo) -> None:
    s = stack.secrets
    assert len({s.s3_access_key, s.s3_admin_key, s.mlflow_s3_key}) == 3
    admin = _s3(stack, s.s3_admin_key, s.s3_admin_secret)
    pipeline = _s3(stack, s.s3_access_key, s.s3_secret_key)
    mlflow = _s3(stack, s.mlflow_s3_key, s.mlflow_s3_secret)
    model_key = f"security/{secrets.token_hex(4)}/model.json"
    admin.put_object(Bucket=stack.mlflow_bucket, Key=model_key, Body=b"{}")

    pipeline.put_object(Bucket=stack.data_bucket, Key="security/probe", Body=b"1")  # its own bucket: read/write
    assert pipeline.get_object(Bucket=stack.mlflow_bucket, Key=model_key)["Body"].read() == b"{}"  # models: read only
    assert _denied(lambda: pipeline.put_object(Bucket=stack.mlflow_bucket, Key=model_key, Body=b"tampered"))
    assert _denied(lambda: pipeline.delete_object(Bucket=stack.mlflow_bucket, Key=model_key))
    assert _denied(lambda: pipeline.create_bucket(Bucket=f"typo-{secrets.token_hex(3)}"))
    assert _denied(lambda: mlflow.list_objects_v2(Bucket=stack.data_bucket))
    assert admin.get_object(Bucket=stack.mlflow_bucket, Key=model_key)["Body"].read() == b"{}"


def test_servers_log_in_to_postgresql_as_their_own_non_superuser_roles(stack: StackInfo, stack_settings, postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        for db in (stack_settings.prefect_db, stack_settings.mlflow_db):
            owner = conn.execute(text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"), {"d": db}).scalar_one()
            superuser = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :d"), {"d": db}).scalar_one()
            users = set(conn.execute(text("SELECT usename FROM pg_stat_activity WHERE datname = :d"), {"d": db}).scalars())
            assert owner == db and superuser is False
            assert users == {db}, f"sessions on {db} by {users}"
    engine.dispose()


def test_the_optuna_user_reaches_only_its_own_database(stack: StackInfo) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    socket_path = os.environ.get("TEST_MYSQL_SOCKET", "/run/mysqld/mysqld.sock")
    other = f"source_{secrets.token_hex(4)}"
    with pymysql.connect(unix_socket=socket_path, user="root", autocommit=True) as root, root.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{other}`")
        cur.execute(f"CREATE TABLE `{other}`.customers (id INT)")
    try:
        url = make_url(stack.secrets.optuna_storage)
        with pymysql.connect(
            host=url.host, port=url.port or 3306, user=url.username, password=url.password, database=url.database
        ) as optuna:
            with optuna.cursor() as cur:
                cur.execute("SELECT 1")
                with pytest.raises(pymysql.err.OperationalError) as denied:
                    cur.execute(f"SELECT * FROM `{other}`.customers")
        assert denied.value.args[0] in (1142, 1044), denied.value  # SELECT command denied / access denied
    finally:
        with pymysql.connect(unix_socket=socket_path, user="root", autocommit=True) as root, root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{other}`")


def test_the_source_reader_cannot_write(source_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ProgrammingError

    engine = create_engine(source_url)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM salesorderheader")).scalar_one()
        with pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("DELETE FROM salesorderheader"))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM salesorderheader")).scalar_one() == before > 0
    engine.dispose()
