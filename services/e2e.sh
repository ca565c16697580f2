#!/usr/bin/env bash
# End-to-end test of the docker compose stack (`make e2e`, run by .ci/run):
#
#   build the images; `up -d --scale worker=3`; wait for the one-shot jobs and every healthcheck;
#   workers listed in the pool under their container names; `docker compose run --rm train` (as
#   documented, with its dependencies) keeps the 3 workers; one worker container is `docker kill`ed
#   mid-tuning; assert: the flow run completed and printed the summary with links that open from
#   the host, each of the 3 workers ran trials, the killed worker's shard run is Crashed and its
#   MLflow run KILLED (and how long that took), a registered model that loads back from the
#   artifact bucket, run data in the data bucket, the UIs answer on their published ports; a
#   scheduled scoring run completes and fills the scores table (one row per active customer) and
#   parquet; a forced failure posts exactly one alert to the webhook receiver; a worker removed by
#   scaling down leaves the pool's list; then `down` + `up` (one-shot jobs run again and change
#   nothing) and assert that nothing was lost; `down -v`.
#   Security: the stack refuses placeholder secrets; every UI and API refuses requests without a
#   login (401) and accepts the right one; a flow run cannot override the workers' command; no secret
#   on any container's command line (`docker compose top`) nor in Prefect/MLflow; the pipeline's S3 key
#   cannot alter model artifacts; the Optuna user cannot read the source database; the source reader
#   cannot write. On failure it prints every service's logs.
#
# S3: the offline MinIO stand-in has no MinIO admin API, so the per-role keys could not be created
# there; the test runs the drop-in SeaweedFS server (services/docker-compose.s3alt.yml), whose own
# configuration makes one identity per role (E2E_S3=minio keeps MinIO, with the root key for all).
#
# Uses its own compose project (E2E_PROJECT, default churn-e2e), an env file made from
# .env.example with ephemeral host ports, and never touches a user's `.env` stack.
# Without registry access (this repository's CI), local stand-ins of the official images are
# built with ../shared/offline-docker when it is there. E2E_KEEP=1 leaves the stack up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROJECT=${E2E_PROJECT:-churn-e2e}
OFFLINE_DOCKER=${OFFLINE_DOCKER:-$ROOT/../shared/offline-docker}
WORKERS=${E2E_WORKERS:-3}
# trials of about a second (no pruning, no early stop): the 3 workers must overlap mid-tuning for the kill; pruned
# trials took ~0.1 s once the per-trial MLflow requests were gone, and at 300 rounds (0.2-0.5 s a trial) the study
# ended 0.8 s after the third shard started, before every worker had finished a trial and started another
TRAIN_ARGS=${E2E_TRAIN_ARGS:---set tuning.n_trials=24 --set tuning.heartbeat_interval=60 --set tuning.pruner_warmup_steps=3000 --set features.max_depth=1 --set model.num_boost_round=1000 --set model.early_stopping_rounds=1000}
START=$(date +%s)
WORK=$(mktemp -d /tmp/churn-e2e.XXXXXX)
ENV_FILE=$WORK/e2e.env
PASSED=0

say() { printf '[e2e %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
die() { say "FAILED: $*"; exit 1; }

E2E_S3=${E2E_S3:-s3alt}
COMPOSE_FILES=(-f "$ROOT/docker-compose.yml")
[ "$E2E_S3" = s3alt ] && COMPOSE_FILES+=(-f "$ROOT/services/docker-compose.s3alt.yml")
compose() { docker compose -p "$PROJECT" --project-directory "$ROOT" --env-file "$ENV_FILE" "${COMPOSE_FILES[@]}" "$@"; }
env_value() { sed -n "s/^$1=//p" "$ENV_FILE"; }

set_env() {  # set_env NAME VALUE: replace (or add) NAME in the e2e env file
    if grep -q "^$1=" "$ENV_FILE"; then sed -i "s|^$1=.*|$1=$2|" "$ENV_FILE"; else echo "$1=$2" >> "$ENV_FILE"; fi
}

cleanup() {
    status=$?
    if [ "$PASSED" != 1 ]; then
        say "---- failure: state and logs of every service ----"
        compose ps -a || true
        compose logs --no-color --timestamps --tail=400 || true
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        say "E2E_KEEP=1: the stack stays up (project $PROJECT, env file $ENV_FILE)"
    else
        compose --profile manual down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    say "wall time $(( $(date +%s) - START ))s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- engine, env file, images
if ! docker info >/dev/null 2>&1; then
    [ -x "$OFFLINE_DOCKER/start-dockerd" ] || die "no Docker engine answers (docker info)"
    "$OFFLINE_DOCKER/start-dockerd"
fi
docker compose version >/dev/null 2>&1 || die "needs Docker Compose v2 (docker compose)"

cp .env.example "$ENV_FILE"
set_env COMPOSE_PROJECT_NAME "$PROJECT"
# the stack refuses placeholder secrets: first prove it, then give every one a random value
PLACEHOLDERS=$(grep -o '^[A-Z0-9_]*=change-me' "$ENV_FILE" | cut -d= -f1)
[ -n "$PLACEHOLDERS" ] || die ".env.example has no change-me placeholders to replace"
PLACEHOLDER_ENV="$WORK/placeholders.env"
cp "$ENV_FILE" "$PLACEHOLDER_ENV"
for name in $PLACEHOLDERS; do set_env "$name" "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"; done
SECRETS_FILE="$WORK/secrets.txt"
for name in $PLACEHOLDERS; do env_value "$name"; done > "$SECRETS_FILE"
chmod 0644 "$SECRETS_FILE"  # read by the check container's non-root user
# free host ports (on 127.0.0.1), so that the test never collides with a running stack
read -r -a FREE_PORTS <<< "$(python3 -c 'import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
i=0
for port in PREFECT_PORT MLFLOW_PORT OPTUNA_DASHBOARD_PORT MINIO_API_PORT MINIO_CONSOLE_PORT; do
    set_env "$port" "${FREE_PORTS[$i]}"; i=$((i + 1))
done
set_env SEED_CUSTOMERS "${E2E_CUSTOMERS:-400}"
set_env TUNING_SHARDS "$WORKERS"  # one shard per worker
set_env WORKER_CPUS 1
set_env PIPELINE_VERSION "${E2E_IMAGE_TAG:-$(sed -n 's/^PIPELINE_VERSION=//p' .env.example)}"

# leftovers of an interrupted run
compose --profile manual down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

if [ -x "$OFFLINE_DOCKER/build-standins" ]; then
    say "building local stand-ins of the official images where missing (offline-docker)"
    ( set -a; . "$ENV_FILE"; set +a; "$OFFLINE_DOCKER/build-standins" --from-compose docker-compose.yml )
fi
MINIO_IMAGE=$(compose config --images | grep '^minio/minio' | head -n 1 || true)
if [ "$E2E_S3" = minio ] && [ -n "$MINIO_IMAGE" ] && [ "$(docker image inspect -f '{{index .Config.Labels "standin"}}' "$MINIO_IMAGE" 2>/dev/null)" = true ]; then
    # The MinIO stand-in (SeaweedFS) has no admin API, so minio-init cannot create the limited
    # pipeline key there: use the root identity, as .env.example explains for such servers.
    say "note: $MINIO_IMAGE is an offline stand-in without the MinIO admin API: pipeline uses the root S3 key"
    for role in PIPELINE MLFLOW; do
        set_env "${role}_S3_ACCESS_KEY" "$(env_value MINIO_ROOT_USER)"
        set_env "${role}_S3_SECRET_KEY" "$(env_value MINIO_ROOT_PASSWORD)"
    done
fi

say "building the project images"
compose build --quiet
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^churn-pipeline' | sed 's/^/[e2e] image /'

say "a placeholder secret stops the stack before anything starts"
if out=$(docker compose -p "$PROJECT-preflight" --project-directory "$ROOT" --env-file "$PLACEHOLDER_ENV" "${COMPOSE_FILES[@]}" \
        run --rm --no-deps -T preflight 2>&1); then
    die "preflight accepted the change-me placeholders"
fi
echo "$out" | grep -q "PREFECT_AUTH_PASSWORD" || die "preflight did not name the placeholder variables: $out"
say "preflight refused: $(echo "$out" | grep -m1 'refusing to start' | cut -c1-200)"
docker compose -p "$PROJECT-preflight" --project-directory "$ROOT" --env-file "$PLACEHOLDER_ENV" "${COMPOSE_FILES[@]}" down --remove-orphans >/dev/null 2>&1 || true

# ---------------------------------------------------------------- helpers
LONG_RUNNING=(postgres mysql minio prefect-server mlflow optuna-dashboard webhook-receiver trainer worker)
ONE_SHOT=(preflight minio-init seed deploy)

wait_jobs() {  # every one-shot job has run to completion with exit status 0
    local deadline=$(( $(date +%s) + ${1:-900} )) job id state code
    for job in "${ONE_SHOT[@]}"; do
        while :; do
            id=$(compose ps -a -q "$job" | head -n 1)
            if [ -n "$id" ]; then
                state=$(docker inspect -f '{{.State.Status}}' "$id")
                if [ "$state" = exited ]; then
                    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
                    [ "$code" = 0 ] || { compose logs --no-color "$job" | tail -n 40; die "one-shot job $job exited with status $code"; }
                    say "one-shot job $job completed: $(compose logs --no-color "$job" | tail -n 1 | cut -c1-160)"
                    break
                fi
            fi
            [ "$(date +%s)" -lt "$deadline" ] || die "one-shot job $job did not complete in time (state ${state:-not created})"
            sleep 2
        done
    done
}

wait_healthy() {  # every container of the long-running services is healthy
    local deadline=$(( $(date +%s) + ${1:-600} )) svc ids id health pending
    while :; do
        pending=""
        for svc in "${LONG_RUNNING[@]}"; do
            ids=$(compose ps -q "$svc")
            [ -n "$ids" ] || { pending="$pending $svc(no container)"; continue; }
            for id in $ids; do
                health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
                [ "$health" = healthy ] || pending="$pending $svc($health)"
            done
        done
        [ -n "$pending" ] || { say "all services healthy"; return 0; }
        [ "$(date +%s)" -lt "$deadline" ] || die "not healthy in time:$pending"
        sleep 3
    done
}

check() {  # check MODE [ARG]: services/e2e_check.py in a pipeline container on the stack's network
    compose run --rm --no-deps -T \
        -e MLFLOW_BUCKET="$(sed -n 's/^MLFLOW_BUCKET=//p' "$ENV_FILE")" -e MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
        -v "$ROOT/services/e2e_check.py:/tmp/e2e_check.py:ro" -v "$SECRETS_FILE:/tmp/secrets.txt:ro" \
        --entrypoint python train /tmp/e2e_check.py "$@"
}

host_url() {  # host_url SERVICE PORT PATH: the published address, as a browser on the host uses it
    echo "http://$(compose port "$1" "$2" | tail -n 1)$3"
}

pool_workers() {  # pool_workers: "name status" of every worker the Prefect server lists in the pool
    curl -fsS --max-time 30 -u "$PREFECT_LOGIN" -X POST -H 'Content-Type: application/json' -d '{}' \
        "$PREFECT_URL/api/work_pools/$(env_value PREFECT_WORK_POOL)/workers/filter" \
        | python3 -c 'import json,sys; [print(w["name"], w["status"]) for w in json.load(sys.stdin)]' | sort
}

# ---------------------------------------------------------------- first start
say "docker compose up -d --scale worker=$WORKERS"
compose up -d --scale "worker=$WORKERS"
wait_jobs 900
wait_healthy 600
[ "$(compose ps -q worker | wc -l)" -eq "$WORKERS" ] || die "expected $WORKERS worker containers"
compose logs --no-color worker | grep "LightGBM threads: 1 (from the container's CPU limit)" >/dev/null \
    || die "workers did not derive LightGBM threads from their CPU limit"
say "workers: LightGBM threads from the container CPU limit (1)"

PREFECT_LOGIN="$(env_value PREFECT_AUTH_USER):$(env_value PREFECT_AUTH_PASSWORD)"
VIEWER_LOGIN="viewer:$(env_value MLFLOW_VIEWER_PASSWORD)"
DASHBOARD_LOGIN="$(env_value OPTUNA_DASHBOARD_USER):$(env_value OPTUNA_DASHBOARD_PASSWORD)"
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@" || true; }  # 000: no answer in time
expect() {  # expect CODE WHAT CURL-ARGS...
    local want=$1 what=$2 got; shift 2
    got=$(status "$@")
    [ "$got" = "$want" ] || die "$what: HTTP $got, expected $want"
}

# the UIs and APIs answer on the published (127.0.0.1) ports; their health checks need no login
S3_HEALTH=/minio/health/live
[ "$E2E_S3" = s3alt ] && S3_HEALTH=/healthz
for spec in "prefect-server 4200 /api/health" "mlflow 5000 /health" "optuna-dashboard 8080 /health" "minio 9000 $S3_HEALTH"; do
    set -- $spec
    url=$(host_url "$1" "$2" "$3")
    case "$url" in http://127.0.0.1:*) ;; *) die "$1: published on $url, expected 127.0.0.1" ;; esac
    curl -fsS -o /dev/null --max-time 30 "$url" || die "$1 does not answer on $url"
    say "$1 answers on $url"
done
PREFECT_URL=$(host_url prefect-server 4200 "")
MLFLOW_API=$(host_url mlflow 5000 /api/2.0/mlflow)
DASHBOARD_URL=$(host_url optuna-dashboard 8080 "")
# every control plane refuses a request without its login, and a wrong one
expect 401 "Prefect API without a login" -X POST -H 'Content-Type: application/json' -d '{}' "$PREFECT_URL/api/flows/filter"
expect 401 "Prefect API with a wrong password" -u "churn:wrong" -X POST -H 'Content-Type: application/json' -d '{}' "$PREFECT_URL/api/deployments/filter"
expect 200 "Prefect API with its login" -u "$PREFECT_LOGIN" -X POST -H 'Content-Type: application/json' -d '{}' "$PREFECT_URL/api/flows/filter"
expect 401 "MLflow API without a login" "$MLFLOW_API/experiments/search?max_results=1"
expect 401 "MLflow UI without a login" "$(host_url mlflow 5000 /)"
expect 200 "MLflow API as viewer (and the host's browser passes --allowed-hosts)" -u "$VIEWER_LOGIN" "$MLFLOW_API/experiments/search?max_results=1"
expect 401 "Optuna dashboard without a login" "$DASHBOARD_URL/api/meta"
expect 401 "Optuna dashboard UI without a login" "$DASHBOARD_URL/"
expect 200 "Optuna dashboard with its login" -u "$DASHBOARD_LOGIN" "$DASHBOARD_URL/api/meta"
say "Prefect, MLflow and the Optuna dashboard refuse requests without their login (401) and accept it"
for spec in "prefect-server 4200 $PREFECT_LOGIN" "mlflow 5000 $VIEWER_LOGIN" "optuna-dashboard 8080 $DASHBOARD_LOGIN"; do
    set -- $spec
    curl -fsSL --max-time 30 -u "$3" "$(host_url "$1" "$2" /)" | grep -i "<html" >/dev/null || die "$1 serves no UI page"
done
ui_api=$(curl -fsS --max-time 30 -u "$PREFECT_LOGIN" "$PREFECT_URL/ui-settings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_url"])')
[ "$ui_api" = "http://localhost:$(sed -n 's/^PREFECT_PORT=//p' "$ENV_FILE")/api" ] \
    || die "the Prefect UI would call its API at $ui_api"
say "UIs serve their pages; the Prefect UI calls its API at $ui_api"

# workers are listed under their container names, each once, online
expected_workers=$( (echo "$PROJECT-trainer-1"; for i in $(seq "$WORKERS"); do echo "$PROJECT-worker-$i"; done) | sort)
for _ in $(seq 30); do [ "$(pool_workers | grep ' ONLINE$' | cut -d' ' -f1)" = "$expected_workers" ] && break; sleep 2; done
[ "$(pool_workers | grep ' ONLINE$' | cut -d' ' -f1)" = "$expected_workers" ] || die "pool workers: $(pool_workers | tr '\n' ';'), expected online: $(echo $expected_workers)"
say "the pool lists the workers by container name: $(echo $expected_workers)"

# a flow run cannot carry a command (or env, or working directory) for the worker to run
deployment_id=$(curl -fsS --max-time 30 -u "$PREFECT_LOGIN" "$PREFECT_URL/api/deployments/name/tuning-shard/tuning-shard" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for vars in '{"command": "touch /tmp/pwned"}' '{"env": {"PYTHONSTARTUP": "/tmp/pwned"}}' '{"working_dir": "/tmp"}'; do
    expect 422 "flow run with job variables $vars" -u "$PREFECT_LOGIN" -X POST -H 'Content-Type: application/json' \
        -d "{\"job_variables\": $vars}" "$PREFECT_URL/api/deployments/$deployment_id/create_flow_run"
done
say "the work pool refuses flow runs that override the command, env or working directory (422)"

# databases: each user can do its job only
mysql_as() {  # mysql_as USER PASSWORD-VARIABLE SQL: exit status of the statement, as that user over TCP
    compose exec -T -e MYSQL_PWD="$(env_value "$2")" mysql mysql -h 127.0.0.1 -u "$1" -e "$3" >/dev/null 2>&1
}
mysql_as optuna OPTUNA_DB_PASSWORD "SELECT 1" || die "the optuna user cannot log in"
! mysql_as optuna OPTUNA_DB_PASSWORD "SHOW TABLES FROM adventureworks" || die "the optuna user can read the source database"
mysql_as aw_reader SOURCE_DB_READER_PASSWORD "SHOW TABLES FROM adventureworks" || die "the source reader cannot read"
! mysql_as aw_reader SOURCE_DB_READER_PASSWORD "CREATE TABLE adventureworks.e2e_probe (i INT)" || die "the source reader can write"
! mysql_as optuna_reader OPTUNA_READER_PASSWORD "CREATE TABLE optuna.e2e_probe (i INT)" || die "the dashboard's Optuna user can write"
say "the optuna user cannot read the source; aw_reader and optuna_reader cannot write"

# ---------------------------------------------------------------- training run, a worker killed mid-tuning
say "training run: docker compose run --rm train $TRAIN_ARGS (with its dependencies, as documented)"
t0=$(date +%s)
# shellcheck disable=SC2086
compose run --rm -T train $TRAIN_ARGS > "$WORK/train.out" 2>&1 &
TRAIN_PID=$!
# the victim: a worker that has finished a trial and is running one now, once every worker has finished one
VICTIM_HOST=$(check watch-kill "$WORKERS" | tail -n 1) || die "tuning never ran on $WORKERS workers at once"
VICTIM=$(docker inspect -f '{{.Name}}' "$VICTIM_HOST" | tr -d /)  # a container's host name is its short id
KILLED_AT=$(date +%s.%N)
docker kill "$VICTIM_HOST" >/dev/null
say "docker kill $VICTIM (host $VICTIM_HOST) mid-trial, $(( $(date +%s) - t0 ))s into the run"
wait "$TRAIN_PID" || { cat "$WORK/train.out"; die "the training run did not complete"; }
cat "$WORK/train.out"
say "training run completed in $(( $(date +%s) - t0 ))s"
[ "$(compose ps -a -q worker | wc -l)" -eq "$WORKERS" ] || die "docker compose run train changed the number of workers"
say "still $WORKERS worker containers after docker compose run train"

grep -q "^  test        ROC AUC" "$WORK/train.out" || die "train printed no run summary"
grep -q "^  promotion   " "$WORK/train.out" || die "train printed no promotion decision"
! grep -q "TUNING FALLBACK" "$WORK/train.out" || die "the trainer tuned alone: the shards did not finish the study"
FLOW_RUN_ID=$(sed -n 's/^flow run \([0-9a-f-]*\) started on deployment .*/\1/p' "$WORK/train.out")
[ -n "$FLOW_RUN_ID" ] || die "train did not name its flow run"
MLFLOW_PUBLIC="http://localhost:$(env_value MLFLOW_PORT)"
PREFECT_PUBLIC="http://localhost:$(env_value PREFECT_PORT)"
mlflow_link=$(sed -n "s|^  MLflow run  \($MLFLOW_PUBLIC/#/experiments/[0-9]*/runs/[0-9a-f]*\)?workflowType=machine_learning\$|\1|p" "$WORK/train.out")
model_link=$(sed -n "s|^  registry    \($MLFLOW_PUBLIC/#/models/[^ ]*/versions/[0-9]*\)\$|\1|p" "$WORK/train.out")
flow_link=$(sed -n "s|^  flow run    \($PREFECT_PUBLIC/runs/flow-run/$FLOW_RUN_ID\)\$|\1|p" "$WORK/train.out")
[ -n "$mlflow_link" ] && [ -n "$model_link" ] && [ -n "$flow_link" ] || die "the summary lacks links to the MLflow run, the model and the flow run on the host's published ports"
# the links open: the pages are served on the host, and the ids in them are the run's
# (the Prefect server answers a deep UI path fetched directly with 404: checked through its API instead)
expect 200 "the flow run of the link" -u "$PREFECT_LOGIN" "$PREFECT_URL/api/flow_runs/$FLOW_RUN_ID"
curl -fsS --max-time 30 -u "$VIEWER_LOGIN" "${mlflow_link%%#*}" | grep -qi "<html" || die "$mlflow_link does not open"
expect 200 "the MLflow run of the link" -u "$VIEWER_LOGIN" "$(host_url mlflow 5000 /api/2.0/mlflow/runs/get)?run_id=${mlflow_link##*/}"
say "summary links open from the host: $mlflow_link | $model_link | $flow_link"

check shards "$FLOW_RUN_ID" > "$WORK/shards.out" || die "cannot read the shards of flow run $FLOW_RUN_ID"
WORKER_NAMES=$(for id in $(compose ps -a -q worker); do docker inspect -f '{{.Config.Hostname}}={{.Name}}' "$id"; done | tr -d / | tr '\n' ' ')
python3 - "$(tail -n 1 "$WORK/shards.out")" "$VICTIM_HOST" "$KILLED_AT" "$WORKERS" "$WORKER_NAMES" <<'PY' || die "shards: see above"
import json, sys
report, victim, killed_at, workers = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
names = dict(pair.split("=", 1) for pair in sys.argv[5].split())
per_worker = {names.get(h, h): c for h, c in report["trials_by_host"].items()}
print(f"[e2e] trials per worker: {json.dumps(per_worker, sort_keys=True)}")
ran = [w for w, c in per_worker.items() if c.get("COMPLETE", 0) + c.get("PRUNED", 0) >= 1]
assert len(ran) >= workers, f"expected each of the {workers} workers to finish trials, only {ran} did"
shard = next(s for s, run in report["mlflow"].items() if run["host"] == victim)
mlflow_status, prefect = report["mlflow"][shard]["status"], report["prefect"][shard]
print(f"[e2e] killed worker {names.get(victim)}: {shard} flow run {prefect['flow_run']} {prefect['state']}, MLflow run {mlflow_status}")
assert prefect["state"] == "CRASHED", f"the killed worker's shard flow run is {prefect['state']}, expected CRASHED"
assert mlflow_status == "KILLED", f"the killed worker's MLflow shard run is {mlflow_status}, expected KILLED"
took = prefect["at"] - killed_at
print(f"[e2e] marked Crashed {took:.0f} s after docker kill")
assert 0 < took < 600, f"marked Crashed {took:.0f} s after the kill (bound 600 s)"
others = {s: p["state"] for s, p in report["prefect"].items() if s != shard}
assert set(others.values()) == {"COMPLETED"}, f"the other shards: {others}"
PY

# ---------------------------------------------------------------- scores on a schedule, alerts
say "scoring: the scoring deployment's schedule starts a run (a 15 s interval next to its cron)"
t1=$(date +%s)
check scoring || die "no scheduled scoring run filled the scores table"
say "a scheduled scoring run completed, scores in PostgreSQL and S3 ($(( $(date +%s) - t1 ))s)"
check alert || die "a failed flow run did not post exactly one alert"
say "a failed scoring run posted exactly one alert, with its name and link"

say "checking MLflow, Optuna, S3 and Prefect"
check assert > "$WORK/before.json" || die "checks after the training run failed"
BEFORE=$(tail -n 1 "$WORK/before.json")
check security /tmp/secrets.txt || die "security checks after the training run failed"
compose top > "$WORK/top.txt" || die "docker compose top failed"
[ "$(grep -c . "$WORK/top.txt")" -gt 10 ] || die "docker compose top listed no processes"
while IFS= read -r secret; do
    if grep -qF -- "$secret" "$WORK/top.txt"; then die "a secret is on a process command line (docker compose top)"; fi
    if compose logs --no-color 2>/dev/null | grep -qF -- "$secret"; then die "a secret is in the services' logs"; fi
done < "$SECRETS_FILE"
say "no secret on any container's command line nor in any service log"

# what the UIs show, through the APIs the browser uses on the published ports
curl -fsS --max-time 30 -u "$PREFECT_LOGIN" -X POST -H 'Content-Type: application/json' -d '{"limit": 50}' \
    "$PREFECT_URL/api/flow_runs/filter" > "$WORK/flow_runs.json" || die "the Prefect API does not list flow runs"
curl -fsS --max-time 30 -u "$VIEWER_LOGIN" "$MLFLOW_API/registered-models/search" > "$WORK/models.json" \
    || die "the MLflow API does not list registered models"
python3 - "$WORK/flow_runs.json" "$WORK/models.json" <<'PY' || die "the result is not visible in the UIs"
import json, sys
runs = json.load(open(sys.argv[1]))
done = [r["name"] for r in runs if r["state_type"] == "COMPLETED"]
states = [(r["name"], r["state_type"]) for r in runs]
assert len(done) >= 3, f"Prefect: expected the training run and its 2 shard runs COMPLETED, got {states}"
print(f"[e2e] Prefect UI lists {len(done)} completed flow runs")
models = json.load(open(sys.argv[2])).get("registered_models", [])
assert models and models[0].get("latest_versions"), f"MLflow: no registered model version: {models}"
m = models[0]
aliases = [a["alias"] for a in m.get("aliases", [])]
print(f"[e2e] MLflow UI lists model {m['name']} version {m['latest_versions'][-1]['version']}, aliases {aliases}")
PY

# ---------------------------------------------------------------- scaling down: the pool forgets removed workers
worker_containers() { for id in $(compose ps -q worker); do docker inspect -f '{{.Name}}' "$id" | tr -d /; done | sort; }
[ "$(docker inspect -f '{{.State.Running}}' "$VICTIM")" = true ] || { say "$VICTIM stayed down after docker kill: starting it"; docker start "$VICTIM" >/dev/null; }
before_scale=$(worker_containers)
compose up -d --no-deps --no-recreate --scale "worker=$(( WORKERS - 1 ))" worker
REMOVED=$(comm -23 <(echo "$before_scale") <(worker_containers))
[ -n "$REMOVED" ] || die "scaling down removed no worker container"
for _ in $(seq 30); do pool_workers | grep -q "^$REMOVED " || break; sleep 1; done
pool_workers | sed 's/^/[e2e] pool worker: /'
! pool_workers | grep -q "^$REMOVED " || die "$REMOVED was removed but the pool still lists it"
say "scaled down to $(( WORKERS - 1 )) workers: the pool no longer lists $REMOVED"

# ---------------------------------------------------------------- log noise
compose logs --no-color > "$WORK/all.log" 2>&1 || true
WARNINGS=$(grep -ci 'warn' "$WORK/all.log" || true)
say "docker compose logs: $(wc -l < "$WORK/all.log") lines, $WARNINGS with 'warn'; most frequent:"
grep -i 'warn' "$WORK/all.log" | sed -E 's/^([a-z0-9-]+)-[0-9]+ *\| */\1 | /; s/[0-9]{2}:[0-9]{2}:[0-9]{2}[.0-9]*//g; s/[0-9a-f]{8}-[0-9a-f-]{27}/<id>/g' \
    | cut -c1-140 | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/[e2e]   /' || true  # informational: head's early exit can SIGPIPE sort under pipefail
[ "$WARNINGS" -lt "${E2E_MAX_WARNINGS:-200}" ] || die "$WARNINGS warning lines in the services' logs"

# ---------------------------------------------------------------- restart: nothing is lost
say "docker compose down (volumes kept) and up again"
compose down --timeout 20
compose up -d --scale "worker=$WORKERS"
wait_jobs 600
compose logs --no-color seed | grep "nothing to do" >/dev/null || die "the seed job reloaded the source database on restart"
wait_healthy 600
check compare "$BEFORE" > "$WORK/after.json" || die "state changed across the restart"
say "runs, studies, models, artifacts and flow runs survived the restart"

PASSED=1
say "PASSED"
