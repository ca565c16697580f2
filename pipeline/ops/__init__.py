"""The scale-out topology as local processes, for tests and for users without Docker.

`stack.up()` starts (or reuses) SeaweedFS for S3, a Prefect server on PostgreSQL, an MLflow
server on PostgreSQL that proxies artifacts to S3, a `process` work pool with the training and
tuning-shard deployments, N Prefect workers for the tuning shards (queue `default`) plus one
`trainer` worker for the training runs (queue `training`, so a training run waiting for its
shards does not hold a shard worker's slot), all with an environment that points the pipeline at
those services. Databases, buckets, the pool and the deployments are created idempotently.

One module per concern:
- `state`: settings, the recorded stack (`<state_dir>/stack.json`, no secrets) and its secrets
  (`<state_dir>/secrets.json`, mode 0600, printed only by `stack env` and `stack credentials`);
- `supervise`: start, stop and reap processes and their descendants (psutil);
- `provision`: PostgreSQL roles and databases, the MySQL Optuna user, S3 buckets and identities,
  MLflow users;
- `servers`: start SeaweedFS, the Prefect server and the MLflow server and wait until healthy;
- `deployments`: Prefect client/settings, the hardened work pool, the deployments;
- `workers`: the Prefect workers of the pool;
- `schedules`, `alerts`: the deployments' crons and the alert automations;
- `stack`: `up`, `down`, `status`.
The `stack` and `schedule` commands are in `pipeline/cli.py` with the other commands.

Security (see README, "Logins and secrets"): the Prefect API wants HTTP basic auth
(`PREFECT_SERVER_API_AUTH_STRING`), MLflow runs its basic-auth app (an admin user for the
pipeline, a read-only `viewer` for people), every secret is generated here and reaches the
servers through their environment, never a command line. Least privilege: Prefect and MLflow
log in to PostgreSQL as their own roles that own only their database; the Optuna user is
per stack and limited to its own database; SeaweedFS gets one S3 identity per role (admin:
buckets; pipeline: data bucket read/write, MLflow bucket read-only; MLflow: its bucket only).
The work pool's job template accepts no command, environment or working-directory override.

Ports: Prefect `prefect_port` (4200), MLflow `mlflow_port` (5500) and, when SeaweedFS is
started here, `s3_port`..`s3_port+4` (S3, master, volume, filer, admin; 8333-8337) plus each
+10000 for gRPC (18333-18337). WebDAV, Iceberg and Lance are disabled.
"""
