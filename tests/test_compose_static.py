"""Static checks of the docker compose stack: no Docker engine needed, a few seconds.

Conventions (docs/compose.md):
* a long-running service has a real healthcheck; a one-shot job is marked with the label
  `churn.one-shot: "true"`, `restart: "no"` and `healthcheck: {disable: true}`, and others wait on
  it with `condition: service_completed_successfully` (on long-running ones: `service_healthy`);
* every image is pinned by a tag (no `latest`, no missing tag, no digest);
* every variable the compose files use is listed in .env.example; secrets use `${VAR:?message}`;
* published ports bind to 127.0.0.1 by default; databases and the object store use named volumes;
* `docker compose config -q` (or docker-compose v1) accepts the files with .env.example.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
OVERRIDE = ROOT / "services" / "docker-compose.s3alt.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "services" / "Dockerfile"

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SECRET_NAME = re.compile(r"PASSWORD|SECRET")
STATEFUL = {  # service -> data directory that must be a named volume
    "postgres": "/var/lib/postgresql/data",
    "mysql": "/var/lib/mysql",
    "minio": "/data",
}


def _load(path: Path) -> dict:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    svcs = compose.get("services")
    assert svcs, "docker-compose.yml defines no services"
    return svcs


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    assert ENV_EXAMPLE.is_file(), ".env.example is missing"
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} with the given values."""

    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        value = env.get(name)
        if op in (":-", ":?") and not value:
            return arg if op == ":-" else ""
        if op in ("-", "?") and value is None:
            return arg if op == "-" else ""
        return value or ""

    return VAR_RE.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def _is_one_shot(svc: dict) -> bool:
    labels = svc.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) for item in labels)
    return str(labels.get("churn.one-shot", "")).lower() == "true"


# ------------------------------------------------------------------------------------ healthchecks


def test_every_service_has_a_healthcheck_or_is_a_marked_one_shot_job(services):
    for name, svc in services.items():
        health = svc.get("healthcheck")
        assert health is not None, f"service {name}: no healthcheck (one-shot jobs: label churn.one-shot + disable)"
        if _is_one_shot(svc):
            assert health == {"disable": True}, f"one-shot job {name}: use `healthcheck: {{disable: true}}`"
            assert str(svc.get("restart")) == "no", f'one-shot job {name}: needs restart: "no"'
        else:
            assert not health.get("disable"), f"service {name}: healthcheck disabled but not labelled one-shot"
            test = health.get("test")
            assert test and test not in (["NONE"], "NONE"), f"service {name}: healthcheck has no test"
            assert str(svc.get("restart", "")) in ("unless-stopped", "always", "on-failure"), (
                f"long-running service {name}: set a restart policy"
            )


def test_depends_on_waits_for_health_or_completion(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"service {name}: depends_on must use the long form with a condition"
        for dep, spec in deps.items():
            assert dep in services, f"service {name} depends on unknown service {dep}"
            cond = (spec or {}).get("condition")
            wanted = "service_completed_successfully" if _is_one_shot(services[dep]) else "service_healthy"
            assert cond == wanted, f"service {name} -> {dep}: condition {cond!r}, expected {wanted!r}"


# ------------------------------------------------------------------------------------ images


def test_images_are_pinned_by_tag(services, env_example):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"service {name}: name its image (built images too, so that they are shared)"
        resolved = _interpolate(image, env_example)
        assert "@" not in resolved, f"service {name}: {resolved} pinned by digest; use a version tag"
        repo, _, tag = resolved.rpartition(":")
        assert repo and "/" not in tag, f"service {name}: image {resolved!r} has no tag"
        assert tag and tag != "latest", f"service {name}: image {resolved!r} is not pinned"
        assert re.search(r"\d", tag), f"service {name}: tag {tag!r} names no version"


def test_dockerfile_base_is_pinned_and_runs_as_non_root():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    for ref in re.findall(r"^FROM\s+(\S+)", text, re.M):
        ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref)
        if ":" not in ref:  # a stage name
            continue
        assert not ref.endswith(":latest"), f"Dockerfile: FROM {ref} is not pinned"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and all(u not in ("root", "0") for u in users[-1:]), "Dockerfile: the final USER must not be root"
    assert "requirements.lock" in text, "Dockerfile: install dependencies from requirements.lock"
    assert (ROOT / ".dockerignore").is_file(), ".dockerignore is missing"


# ------------------------------------------------------------------------------------ variables


def _variables(path: Path) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for text in _strings(yaml.safe_load(path.read_text())):
        for match in VAR_RE.finditer(text.replace("$$", "")):
            used.setdefault(match.group(1) or match.group(4), set()).add(match.group(2) or "")
    return used


def test_every_variable_is_in_env_example(env_example):
    for path in (COMPOSE, OVERRIDE):
        missing = sorted(set(_variables(path)) - set(env_example))
        assert not missing, f"{path.relative_to(ROOT)} uses variables missing from .env.example: {missing}"


def test_secrets_are_required_and_never_written_in_the_compose_file(services):
    for var, ops in _variables(COMPOSE).items():
        if SECRET_NAME.search(var):
            assert ops == {":?"}, f"secret {var} must be used as ${{{var}:?message}} everywhere"
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            if SECRET_NAME.search(key) and value is not None:
                assert "${" in str(value), f"service {name}: {key} is written in the compose file"
            if value and re.search(r"://[^/\s:@]+:[^@\s$]+@", str(value)):
                pytest.fail(f"service {name}: {key} embeds a literal password in a URL")
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored, ".env must be git-ignored"


# ------------------------------------------------------------------------------------ ports, volumes


def test_published_ports_bind_to_localhost_by_default(services, env_example):
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                host_ip = _interpolate(str(port.get("host_ip", "")), env_example)
            else:
                parts = _interpolate(str(port), env_example).split(":")
                assert len(parts) == 3, f"service {name}: port {port!r} must name the host address"
                host_ip = parts[0]
            assert host_ip == "127.0.0.1", f"service {name}: port {port!r} binds to {host_ip!r}"
    assert env_example.get("BIND_ADDRESS") == "127.0.0.1"
    for db in ("mysql", "postgres"):
        assert not services[db].get("ports"), f"{db} must not be published (3306/5432 may be taken)"


def test_databases_and_object_store_use_named_volumes(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, target in STATEFUL.items():
        mounts = services[name].get("volumes") or []
        sources = {}
        for mount in mounts:
            if isinstance(mount, dict):
                sources[mount["target"]] = mount.get("source")
            else:
                source, _, rest = str(mount).partition(":")
                sources[rest.split(":")[0]] = source
        assert target in sources, f"service {name}: {target} is not on a volume"
        assert sources[target] in declared, f"service {name}: {target} must be a named volume, not {sources[target]!r}"


def test_init_scripts_are_executable():
    for path in [*(ROOT / "infra").rglob("*.sh"), ROOT / "services" / "entrypoint.sh", ROOT / "services" / "e2e.sh"]:
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
        assert path.stat().st_mode & stat.S_IXUSR, f"{path.relative_to(ROOT)} is not executable"


# ------------------------------------------------------------------------------------ compose itself


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, OVERRIDE]], ids=["stack", "stack+s3alt"])
def test_compose_config_validates(files, tmp_path):
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("no docker compose / docker-compose binary on this machine")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    args = [*cmd, "--project-directory", str(ROOT), "--env-file", str(ENV_EXAMPLE)]
    for f in files:
        args += ["-f", str(f)]
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)} config -q failed:\n{result.stderr}{result.stdout}"


def test_a_missing_secret_stops_compose_with_a_message(tmp_path):
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("no docker compose / docker-compose binary on this machine")
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("MYSQL_ROOT_PASSWORD="))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_", "MYSQL_"))}
    result = subprocess.run(
        [*cmd, "--project-directory", str(ROOT), "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0
    assert "MYSQL_ROOT_PASSWORD" in result.stderr + result.stdout


# ------------------------------------------------------------------------------------ security

ENTRYPOINT = ROOT / "services" / "entrypoint.sh"


def test_every_secret_of_env_example_is_a_placeholder_the_preflight_job_refuses(services, env_example):
    secret_vars = {var for var in env_example if SECRET_NAME.search(var)}
    assert secret_vars <= set(services["preflight"]["environment"]), secret_vars - set(services["preflight"]["environment"])
    assert all(env_example[var].startswith("change-me") for var in secret_vars), "every secret ships as a change-me placeholder"
    for data_service in ("postgres", "mysql", "minio"):  # everything else waits for these
        assert services[data_service]["depends_on"]["preflight"]["condition"] == "service_completed_successfully"


def test_preflight_names_each_placeholder_and_fails(tmp_path):
    """The entrypoint's preflight role, run here as the container would run it."""
    env = {"PATH": os.environ["PATH"], "PREFECT_AUTH_PASSWORD": "change-me-prefect-auth", "MLFLOW_ADMIN_PASSWORD": "0123456789abcdef"}
    refused = subprocess.run(["sh", str(ENTRYPOINT), "preflight"], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "PREFECT_AUTH_PASSWORD" in refused.stderr and "MLFLOW_ADMIN" not in refused.stderr
    env["PREFECT_AUTH_PASSWORD"] = "a-real-random-value"
    assert subprocess.run(["sh", str(ENTRYPOINT), "preflight"], env=env, capture_output=True, timeout=30).returncode == 0


def test_servers_get_their_secrets_from_the_environment_not_the_command_line(services):
    text = ENTRYPOINT.read_text()
    assert "--backend-store-uri" not in text, "MLflow reads MLFLOW_BACKEND_STORE_URI itself; argv is visible in ps"
    assert 'optuna-dashboard "$' not in text, "the dashboard's storage URL must not be an argument"
    assert "--app-name basic-auth" in text
    for name, svc in services.items():
        command = " ".join(map(str, svc.get("command") or []))
        assert not re.search(r"://[^/\s:@]+:[^@\s]+@", command), f"service {name}: a URL with a password on its command line"


def test_control_planes_want_a_login(services):
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in services["mlflow"]["environment"]
    assert "OPTUNA_DASHBOARD_PASSWORD" in services["optuna-dashboard"]["environment"]
    assert "optuna_reader:" in services["optuna-dashboard"]["environment"]["OPTUNA_DASHBOARD_STORAGE"]
    for worker in ("worker", "trainer"):
        assert "PREFECT_API_AUTH_STRING" in services[worker]["environment"]
        assert "MLFLOW_TRACKING_PASSWORD" in services[worker]["environment"]


def test_each_role_has_its_own_s3_key(services):
    assert "MLFLOW_S3_ACCESS_KEY" in services["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"]
    assert "PIPELINE_S3_ACCESS_KEY" in services["worker"]["environment"]["AWS_ACCESS_KEY_ID"]
    assert str(services["minio-init"].get("user", "")).split(":")[0] not in ("", "0", "root")


# ------------------------------------------------------------------------------------ scaling, scores, alerts


def test_train_does_not_depend_on_the_scaled_workers(services):
    """`docker compose run train` reconciles the services it depends on: on `worker` it would undo `--scale worker=N`."""
    assert "worker" not in services["train"]["depends_on"]
    assert services["train"]["depends_on"]["trainer"]["condition"] == "service_healthy"


def test_scores_go_to_their_own_database_and_role(services, env_example):
    url = services["worker"]["environment"]["PIPELINE__SCORING__TABLE_URL"]
    assert re.fullmatch(r"postgresql\+psycopg2://scores:\$\{SCORES_DB_PASSWORD:\?[^}]+\}@postgres:5432/scores", url), url
    for service in ("postgres", "preflight"):
        assert "SCORES_DB_PASSWORD" in services[service]["environment"], service
    init = (ROOT / "infra" / "postgres" / "10-churn-databases.sh").read_text()
    assert re.search(r"for db in [a-z ]*\bscores\b", init) and 'scores)  pw="$SCORES_DB_PASSWORD"' in init
    assert "REVOKE ALL ON DATABASE" in init, "other roles may not connect to the scores database"


def test_alerts_go_to_the_stacks_webhook_receiver_by_default(services, env_example):
    receiver = services["webhook-receiver"]
    assert receiver["command"] == ["webhook-receiver"] and "ports" not in receiver, "internal only: nothing outside may be called"
    assert "/health" in " ".join(receiver["healthcheck"]["test"])
    for source in (services["worker"]["environment"]["ALERT_WEBHOOK_URL"], env_example["ALERT_WEBHOOK_URL"]):
        assert "http://webhook-receiver:8080/" in source
    assert services["deploy"]["depends_on"]["webhook-receiver"]["condition"] == "service_healthy"


def test_links_use_the_addresses_a_browser_on_the_host_opens(services):
    env = services["worker"]["environment"]
    assert env["MLFLOW_PUBLIC_URL"] == "http://${PUBLIC_HOST:-localhost}:${MLFLOW_PORT:-5000}"
    assert env["PREFECT_PUBLIC_URL"] == "http://${PUBLIC_HOST:-localhost}:${PREFECT_PORT:-4200}"
    assert services["prefect-server"]["environment"]["PREFECT_UI_URL"] == env["PREFECT_PUBLIC_URL"], "alert links"


def test_every_service_runs_as_non_root(services):
    """Project images end on `USER app`; no service may switch back to root."""
    final_user = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER ")]
    assert final_user and final_user[-1] == "app"
    for name, svc in services.items():
        assert str(svc.get("user", "")).split(":")[0] not in ("0", "root"), f"service {name} runs as root"


def test_no_secret_on_any_command_line(services):
    """Entrypoints, commands and healthchecks are visible to `ps` and `docker compose top`: no ${SECRET} there
    (`$$VAR` is no interpolation: the container's shell reads the variable from its environment)."""
    for name, svc in services.items():
        argv = [svc.get("entrypoint"), svc.get("command"), (svc.get("healthcheck") or {}).get("test")]
        used = {m.group(1) or m.group(4) for text in _strings(argv) for m in VAR_RE.finditer(text.replace("$$", ""))}
        assert not {var for var in used if SECRET_NAME.search(var)}, f"service {name}: a secret on a command line"


def test_the_image_holds_every_script_the_entrypoint_runs():
    """A script missing from the image (Dockerfile COPY or .dockerignore) would fail only at container start."""
    scripts = set(re.findall(r"/app/services/([\w.-]+\.py)", ENTRYPOINT.read_text()))
    dockerfile, ignore = DOCKERFILE.read_text(), (ROOT / ".dockerignore").read_text()
    assert {"worker.py", "webhook_receiver.py"} <= scripts
    for script in scripts:
        assert f"services/{script}" in dockerfile, f"services/Dockerfile does not copy services/{script}"
        assert f"!services/{script}" in ignore, f".dockerignore keeps services/{script} out of the build context"
