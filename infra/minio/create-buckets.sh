#!/bin/sh
# One-shot job (minio/mc image): the S3 buckets of the stack and one access key per role.
# Idempotent: running it again changes nothing.
#
#   1. buckets DATA_BUCKET (pipeline run data) and MLFLOW_BUCKET (MLflow artifacts, proxied by the mlflow service)
#   2. on MinIO (admin API), least privilege per role:
#        PIPELINE_S3_ACCESS_KEY (workers, jobs): DATA_BUCKET read/write, MLFLOW_BUCKET read-only
#        MLFLOW_S3_ACCESS_KEY   (mlflow server): MLFLOW_BUCKET read/write, nothing else
#      Servers without the MinIO admin API (another S3 server, the offline stand-in) keep their
#      own users: the job logs a note and only checks that the keys work.
#   3. checks that each key can do its job.
set -eu

log() { echo "minio-init: $*"; }
die() { echo "minio-init: ERROR: $*" >&2; exit 1; }

: "${S3_ENDPOINT_URL:?S3_ENDPOINT_URL is not set}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${PIPELINE_S3_ACCESS_KEY:?PIPELINE_S3_ACCESS_KEY is not set}"
: "${PIPELINE_S3_SECRET_KEY:?PIPELINE_S3_SECRET_KEY is not set}"
: "${MLFLOW_S3_ACCESS_KEY:?MLFLOW_S3_ACCESS_KEY is not set}"
: "${MLFLOW_S3_SECRET_KEY:?MLFLOW_S3_SECRET_KEY is not set}"
DATA_BUCKET="${DATA_BUCKET:-churn-data}"
MLFLOW_BUCKET="${MLFLOW_BUCKET:-mlflow-artifacts}"
export MC_CONFIG_DIR="${MC_CONFIG_DIR:-/tmp/.mc}"

# the server answered its healthcheck; still allow a few seconds for the S3 API behind it
i=0
until mc alias set admin "$S3_ENDPOINT_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 30 ] || die "cannot reach $S3_ENDPOINT_URL with MINIO_ROOT_USER/MINIO_ROOT_PASSWORD"
    sleep 2
done

for bucket in "$DATA_BUCKET" "$MLFLOW_BUCKET"; do
    mc mb --ignore-existing "admin/$bucket" >/dev/null
    log "bucket $bucket ready"
done

# policy NAME FILE: a JSON policy allowing list on the buckets named in LIST and the object actions
# of READ_ONLY (get) and READ_WRITE (get, put, delete) buckets
policy() {
    list="" objects_rw="" objects_ro=""
    for b in $LIST; do list="$list\"arn:aws:s3:::$b\","; done
    for b in $READ_WRITE; do objects_rw="$objects_rw\"arn:aws:s3:::$b/*\","; done
    for b in $READ_ONLY; do objects_ro="$objects_ro\"arn:aws:s3:::$b/*\","; done
    statements="{\"Effect\": \"Allow\", \"Action\": [\"s3:GetBucketLocation\", \"s3:ListBucket\", \"s3:ListBucketMultipartUploads\"], \"Resource\": [${list%,}]}"
    statements="$statements, {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\", \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"], \"Resource\": [${objects_rw%,}]}"
    if [ -n "$objects_ro" ]; then
        statements="$statements, {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\"], \"Resource\": [${objects_ro%,}]}"
    fi
    printf '{"Version": "2012-10-17", "Statement": [%s]}\n' "$statements" > "$2"
}

# role_user NAME KEY SECRET: on MinIO, user KEY with policy NAME (already written to /tmp/NAME.json)
role_user() {
    if [ "$2" = "$MINIO_ROOT_USER" ]; then
        log "note: the $1 key is the root user: no separate key is created"
        return 0
    fi
    admin_out=$(
        { mc admin policy create admin "$1" "/tmp/$1.json" &&
          mc admin user add admin "$2" "$3" &&
          { mc admin policy attach admin "$1" --user "$2" 2>&1 || true; }
        } 2>&1
    ) && admin_rc=0 || admin_rc=$?
    case "$admin_out" in
        *"not available"*|*"not implemented"*|*"NotImplemented"*|*"not supported"*) admin_rc=2 ;;
    esac
    if [ "$admin_rc" -eq 0 ]; then
        log "key $2 has policy $1"
    else
        first_line=$(printf '%s\n' "$admin_out" | { IFS= read -r line; printf '%s' "$line"; })
        log "note: this S3 server has no MinIO admin API ($first_line); the $1 key must exist on the server already"
    fi
}

LIST="$DATA_BUCKET $MLFLOW_BUCKET" READ_WRITE="$DATA_BUCKET" READ_ONLY="$MLFLOW_BUCKET" policy churn-pipeline /tmp/churn-pipeline.json
LIST="$MLFLOW_BUCKET" READ_WRITE="$MLFLOW_BUCKET" READ_ONLY="" policy churn-mlflow /tmp/churn-mlflow.json
role_user churn-pipeline "$PIPELINE_S3_ACCESS_KEY" "$PIPELINE_S3_SECRET_KEY"
role_user churn-mlflow "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
rm -f /tmp/churn-pipeline.json /tmp/churn-mlflow.json

# Each key must do its job. (shell expansion only: the minio/mc image is minimal and has no sed)
host_url() { echo "${S3_ENDPOINT_URL%%://*}://$1:$2@${S3_ENDPOINT_URL#*://}"; }
export MC_HOST_pipeline="$(host_url "$PIPELINE_S3_ACCESS_KEY" "$PIPELINE_S3_SECRET_KEY")"
export MC_HOST_mlflow="$(host_url "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY")"
probe="/tmp/minio-init-probe.txt"
echo "written by the minio-init job" > "$probe"
can_write() {  # can_write ALIAS BUCKET
    mc ls "$1/$2" >/dev/null 2>&1 && mc cp "$probe" "$1/$2/.minio-init-probe" >/dev/null 2>&1 \
        && { mc rm "$1/$2/.minio-init-probe" >/dev/null 2>&1 || true; }
}
can_write pipeline "$DATA_BUCKET" || die "the pipeline key PIPELINE_S3_ACCESS_KEY cannot list or write s3://$DATA_BUCKET on $S3_ENDPOINT_URL.
  On MinIO this job creates it; on an S3 server without the MinIO admin API, create that key on the
  server (docker-compose.s3alt.yml does)."
mc ls "pipeline/$MLFLOW_BUCKET" >/dev/null 2>&1 || die "the pipeline key cannot list s3://$MLFLOW_BUCKET (it reads registered models)"
can_write mlflow "$MLFLOW_BUCKET" || die "the MLflow key MLFLOW_S3_ACCESS_KEY cannot list or write s3://$MLFLOW_BUCKET on $S3_ENDPOINT_URL"
log "each key reaches its buckets: done"
