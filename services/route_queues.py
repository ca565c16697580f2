"""Deploy step of the compose stack: run training flows on the `trainer`, tuning shards on the `worker`s.

`python -m pipeline deploy` already registers the training deployment on queue `training` (and
tuning-shard on the pool's default queue, see `pipeline.stack.DEPLOYMENT_QUEUES`); this step also
honours TRAINING_QUEUE and deployments registered by older versions. A training run waits for
its tuning shards while holding its worker's only slot (`--limit 1`), so on shared workers it
would take one tuning worker away, or, with a single worker, wait forever.
This puts the training deployment on its own queue of the same pool (TRAINING_QUEUE, default
`training`), which only the `trainer` service polls; `worker`s poll the default queue.
Idempotent: creates the queue if missing and sets the deployment's queue every time.
"""

from __future__ import annotations

import os
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


def main() -> int:
    pool = os.environ.get("PREFECT_WORK_POOL", "churn-pool")
    queue = os.environ.get("TRAINING_QUEUE", "training")
    deployment_name = os.environ.get("TRAINING_DEPLOYMENT", "training/training")
    with get_client(sync_client=True) as client:
        try:
            client.read_work_queue_by_name(queue, work_pool_name=pool)
        except ObjectNotFound:
            try:
                client.create_work_queue(name=queue, work_pool_name=pool)
            except ObjectAlreadyExists:
                pass
        deployment = client.read_deployment_by_name(deployment_name)
        if deployment.work_queue_name != queue:
            client.update_deployment(deployment.id, DeploymentUpdate(work_queue_name=queue))
        print(f"deployment {deployment_name}: work pool {pool}, queue {queue} (polled by the trainer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
