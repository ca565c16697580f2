#!/bin/sh
# Entrypoint of the project image: the first argument names the role, the rest is passed on.
#
#   prefect-server   Prefect API + UI + background services (database: PREFECT_API_DATABASE_CONNECTION_URL)
#   mlflow           MLflow tracking server, artifacts proxied to S3 (MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION)
#   worker           `prefect worker start` on the work pool (queue WORKER_QUEUE); LightGBM threads from the CPU limit
#   deploy           one-shot: Optuna schema, work pool, deployments, training queue (idempotent)
#   seed             one-shot: write the source database unless it already holds the same data (idempotent)
#   dashboard        optuna-dashboard on the tuning storage (dashboard image only)
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

case "$role" in
    prefect-server)
        : "${PREFECT_API_DATABASE_CONNECTION_URL:?PREFECT_API_DATABASE_CONNECTION_URL must point at the Prefect database}"
        exec prefect server start --host 0.0.0.0 --port 4200 "$@"
        ;;

    mlflow)
        : "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI must point at the MLflow database}"
        : "${MLFLOW_ARTIFACTS_DESTINATION:?MLFLOW_ARTIFACTS_DESTINATION must be an s3:// URI}"
        exec mlflow server \
            --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
            --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
            --serve-artifacts \
            --host 0.0.0.0 --port 5000 \
            --workers "${MLFLOW_WORKERS:-2}" \
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
        # flow runs are child processes of this worker and inherit its environment
        exec prefect worker start --pool "$pool" --type process ${queue:+--work-queue "$queue"} \
            --limit "${WORKER_RUN_LIMIT:-1}" --name "${WORKER_NAME_PREFIX:-worker}-$(hostname)" --with-healthcheck "$@"
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
        # training runs on their own queue (the trainer), tuning shards on the workers' default queue
        exec python /app/services/route_queues.py
        ;;

    seed)
        exec python /app/services/seed.py "$@"
        ;;

    dashboard)
        : "${PIPELINE__TUNING__STORAGE:?PIPELINE__TUNING__STORAGE must point at the Optuna database}"
        exec optuna-dashboard "$PIPELINE__TUNING__STORAGE" --host 0.0.0.0 --port 8080 "$@"
        ;;

    pipeline)
        exec python -m pipeline "$@"
        ;;

    help|--help|-h)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        ;;

    *)
        exec "$role" "$@"
        ;;
esac
