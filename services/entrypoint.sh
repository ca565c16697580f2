#!/bin/sh
# Entrypoint of the project image: the first argument names the role, the rest is passed on.
#
#   preflight        one-shot: refuse to start the stack while a secret still has its change-me placeholder
#   prefect-server   Prefect API + UI + background services (database: PREFECT_API_DATABASE_CONNECTION_URL)
#   mlflow           MLflow tracking server with basic auth, artifacts proxied to S3 (MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION)
#   worker           `prefect worker start` on the work pool (queue WORKER_QUEUE), named after the container; LightGBM threads from the CPU limit
#   webhook-receiver records the alerts posted to it (GET /calls lists them)
#   deploy           one-shot: Optuna schema, work pool, deployments, training queue (idempotent)
#   seed             one-shot: write the source database unless it already holds the same data (idempotent)
#   dashboard        optuna-dashboard behind HTTP basic auth, read-only storage user (dashboard image only)
#   pipeline ARGS    python -m pipeline ARGS (e.g. `trigger --wait`, `run`, `--help`)
#   anything else    executed as given
set -eu

role="${1:-help}"
[ "$#" -gt 0 ] && shift

log() { printf '%s entrypoint[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$role" "$*" >&2; }

# Whole CPUs this container may use, from its cgroup CPU quota (v2 cpu.max, v1 cfs quota);
# prints nothing when there is no limit.
cpu_limit() {
    quota="" period=""
    if [ -r /sys/fs/cgroup/cpu.max ]; then
        read -r quota period < /sys/fs/cgroup/cpu.max || true
    elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ] && [ -r /sys/fs/cgroup/cpu/cpu.cfs_period_us ]; then
        quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)
        period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
    elif [ -r /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us ]; then
        quota=$(cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us)
        period=$(cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us)
    fi
    case "$quota" in ""|max|-1) return 0 ;; esac
    [ "${period:-0}" -gt 0 ] 2>/dev/null || return 0
    # ceil(quota / period), at least 1
    threads=$(( (quota + period - 1) / period ))
    [ "$threads" -ge 1 ] || threads=1
    echo "$threads"
}

# Secrets reach the servers through their environment (or files they read), never their command
# line: `ps` and `docker top` show command lines to anyone on the host.
case "$role" in
    preflight)
        # every variable of this container whose value is still an .env.example placeholder
        placeholders=$(env | sed -n 's/^\([A-Z0-9_]*\)=change-me.*/\1/p' | sort | tr '\n' ' ')
        if [ -n "$placeholders" ]; then
            log "refusing to start: these secrets still have their change-me value from .env.example: $placeholders"
            log "set each to a long random value in .env, e.g. openssl rand -hex 24 (docs/compose.md, 'Logins and secrets')"
            exit 1
        fi
        log "no placeholder secret: ok"
        ;;

    prefect-server)
        : "${PREFECT_API_DATABASE_CONNECTION_URL:?PREFECT_API_DATABASE_CONNECTION_URL must point at the Prefect database}"
        exec prefect server start --host 0.0.0.0 --port 4200 "$@"
        ;;

    mlflow)
        : "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI must point at the MLflow database}"
        : "${MLFLOW_ARTIFACTS_DESTINATION:?MLFLOW_ARTIFACTS_DESTINATION must be an s3:// URI}"
        : "${MLFLOW_AUTH_ADMIN_PASSWORD:?MLFLOW_AUTH_ADMIN_PASSWORD must be set (basic auth admin)}"
        # basic auth: users in a SQLite file of this container, made anew with the container, so a
        # changed MLFLOW_AUTH_ADMIN_PASSWORD applies on `docker compose up -d`; every user may read.
        # A verified login is cached MLFLOW_AUTH_CACHE_SECONDS: each check is a scrypt hash (~0.1 s CPU)
        export MLFLOW_AUTH_CONFIG_PATH=/tmp/mlflow-auth.ini
        printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:////tmp/mlflow-auth.db\nadmin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\nauth_cache_ttl_seconds = %s\n' \
            "${MLFLOW_AUTH_CACHE_SECONDS:-60}" > "$MLFLOW_AUTH_CONFIG_PATH"
        # the backend store URI (with its password) is read from MLFLOW_BACKEND_STORE_URI, not argv.
        # uvicorn kills a worker process that misses a 5 s health ping: on busy CPUs a new worker is
        # still importing MLflow by then, so workers died in a loop and requests were cut off.
        exec mlflow server --app-name basic-auth \
            --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
            --serve-artifacts \
            --host 0.0.0.0 --port 5000 \
            --workers "${MLFLOW_WORKERS:-2}" \
            --uvicorn-opts "--timeout-worker-healthcheck ${MLFLOW_WORKER_HEALTHCHECK_SECONDS:-60}" \
            --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,mlflow,localhost:*,127.0.0.1:*}" \
            "$@"
        ;;

    worker)
        threads=$(cpu_limit)
        if [ -n "${PIPELINE__MODEL__NUM_THREADS:-}" ]; then
            log "LightGBM threads: ${PIPELINE__MODEL__NUM_THREADS} (set in the environment)"
        elif [ -n "$threads" ]; then
            export PIPELINE__MODEL__NUM_THREADS="$threads"
            log "LightGBM threads: $threads (from the container's CPU limit)"
        else
            log "LightGBM threads: automatic (no CPU limit on this container)"
        fi
        pool="${PREFECT_WORK_POOL:-churn-pool}"
        queue="${WORKER_QUEUE:-}"
        log "pool $pool, queue ${queue:-all}, one flow run at a time"
        # flow runs are child processes of this worker and inherit its environment; named after
        # the container (churn-worker-2), removed from the pool's list when the container stops
        exec python /app/services/worker.py "$pool" --type process ${queue:+--work-queue "$queue"} \
            --limit "${WORKER_RUN_LIMIT:-1}" --with-healthcheck "$@"
        ;;

    webhook-receiver)
        exec python /app/services/webhook_receiver.py "$@"
        ;;

    deploy)
        : "${PREFECT_API_URL:?PREFECT_API_URL must point at the Prefect server}"
        if [ -n "${PIPELINE__TUNING__STORAGE:-}" ]; then
            case "$PIPELINE__TUNING__STORAGE" in
                mysql*|postgresql*|sqlite*)
                    # create the Optuna schema once, before several workers race to create it
                    python -c 'import os, optuna; optuna.storages.RDBStorage(os.environ["PIPELINE__TUNING__STORAGE"]); print("optuna storage schema ready")'
                    ;;
            esac
        fi
        python -m pipeline deploy --project-dir /app "$@"
        # the read-only MLflow login for people (created, or its password reset to MLFLOW_VIEWER_PASSWORD)
        if [ -n "${MLFLOW_VIEWER_PASSWORD:-}" ]; then
            python -c 'import os; from pipeline.ops.provision import ensure_mlflow_user as e; e(os.environ["PIPELINE__TRACKING__TRACKING_URI"], os.environ["MLFLOW_TRACKING_PASSWORD"], "viewer", os.environ["MLFLOW_VIEWER_PASSWORD"]); print("mlflow user viewer ready (read-only)")'
        fi
        ;;

    seed)
        exec python /app/services/seed.py "$@"
        ;;

    dashboard)
        : "${OPTUNA_DASHBOARD_STORAGE:?OPTUNA_DASHBOARD_STORAGE must point at the Optuna database (read-only user)}"
        : "${OPTUNA_DASHBOARD_PASSWORD:?OPTUNA_DASHBOARD_PASSWORD must be set (basic auth)}"
        exec python /app/services/dashboard.py --host 0.0.0.0 --port 8080 "$@"
        ;;

    pipeline)
        exec python -m pipeline "$@"
        ;;

    help|--help|-h)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        ;;

    *)
        exec "$role" "$@"
        ;;
esac
