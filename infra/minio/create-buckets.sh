#!/bin/sh
# One-shot job (minio/mc image): the S3 buckets of the stack and the pipeline's access key.
# Idempotent: running it again changes nothing.
#
#   1. buckets DATA_BUCKET (pipeline run data) and MLFLOW_BUCKET (MLflow artifacts, proxied by the mlflow service)
#   2. on MinIO: a policy limited to those two buckets, a user PIPELINE_S3_ACCESS_KEY with that policy
#      (MinIO admin API). Servers without the MinIO admin API (another S3 server, the offline
#      stand-in) keep their own users: the job logs a note and only checks that the key works.
#   3. checks that the pipeline key can list and write both buckets.
set -eu

log() { echo "minio-init: $*"; }
die() { echo "minio-init: ERROR: $*" >&2; exit 1; }

: "${S3_ENDPOINT_URL:?S3_ENDPOINT_URL is not set}"
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set}"
: "${PIPELINE_S3_ACCESS_KEY:?PIPELINE_S3_ACCESS_KEY is not set}"
: "${PIPELINE_S3_SECRET_KEY:?PIPELINE_S3_SECRET_KEY is not set}"
DATA_BUCKET="${DATA_BUCKET:-churn-data}"
MLFLOW_BUCKET="${MLFLOW_BUCKET:-mlflow-artifacts}"
POLICY="${PIPELINE_S3_POLICY:-churn-pipeline}"
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

if [ "$PIPELINE_S3_ACCESS_KEY" = "$MINIO_ROOT_USER" ]; then
    log "note: PIPELINE_S3_ACCESS_KEY is the root user: no separate pipeline key is created"
else
    policy_file=/tmp/churn-pipeline-policy.json
    cat > "$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET", "arn:aws:s3:::$MLFLOW_BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$DATA_BUCKET/*", "arn:aws:s3:::$MLFLOW_BUCKET/*"]}
  ]
}
JSON
    admin_out=$(
        { mc admin policy create admin "$POLICY" "$policy_file" &&
          mc admin user add admin "$PIPELINE_S3_ACCESS_KEY" "$PIPELINE_S3_SECRET_KEY" &&
          { mc admin policy attach admin "$POLICY" --user "$PIPELINE_S3_ACCESS_KEY" 2>&1 || true; }
        } 2>&1
    ) && admin_rc=0 || admin_rc=$?
    rm -f "$policy_file"
    case "$admin_out" in
        *"not available"*|*"not implemented"*|*"NotImplemented"*|*"not supported"*) admin_rc=2 ;;
    esac
    if [ "$admin_rc" -eq 0 ]; then
        log "pipeline key $PIPELINE_S3_ACCESS_KEY has policy $POLICY (buckets $DATA_BUCKET, $MLFLOW_BUCKET only)"
    else
        first_line=$(printf '%s\n' "$admin_out" | { IFS= read -r line; printf '%s' "$line"; })
        log "note: this S3 server has no MinIO admin API ($first_line);"
        log "note: the pipeline key is not created here: it must exist on the server already"
    fi
fi

# The key the pipeline and MLflow use must reach both buckets.
# (shell expansion only: the minio/mc image is minimal and has no sed)
export MC_HOST_pipeline="${S3_ENDPOINT_URL%%://*}://${PIPELINE_S3_ACCESS_KEY}:${PIPELINE_S3_SECRET_KEY}@${S3_ENDPOINT_URL#*://}"
probe="/tmp/minio-init-probe.txt"
echo "written by the minio-init job" > "$probe"
for bucket in "$DATA_BUCKET" "$MLFLOW_BUCKET"; do
    if ! mc ls "pipeline/$bucket" >/dev/null 2>&1 || ! mc cp "$probe" "pipeline/$bucket/.minio-init-probe" >/dev/null 2>&1; then
        die "the pipeline key PIPELINE_S3_ACCESS_KEY cannot list or write s3://$bucket on $S3_ENDPOINT_URL.
  On MinIO this job creates it; on an S3 server without the MinIO admin API, create that key on the
  server (docker-compose.s3alt.yml does), or set PIPELINE_S3_ACCESS_KEY/PIPELINE_S3_SECRET_KEY to
  MINIO_ROOT_USER/MINIO_ROOT_PASSWORD in .env."
    fi
    mc rm "pipeline/$bucket/.minio-init-probe" >/dev/null 2>&1 || true
done
log "pipeline key can read and write both buckets: done"
