"""``posefleet control-worker``: the control plane's process.

The main thread runs an RQ SimpleWorker (no fork per job: batch jobs are long and few) with
RQ's scheduler, which runs the retry intervals of batches and webhook deliveries alike. Beside
it run the webhook relay and delivery threads (services/control/callbacks.py); the main worker
also serves the webhook queue, so deliveries go on while it has no batch.
"""

from __future__ import annotations

import logging

import redis
from rq import SimpleWorker

from services.control.callbacks import webhook_threads
from services.control.queue import control_queue
from services.control.webhooks import webhook_queue
from services.core import keys
from services.core.settings import Settings

log = logging.getLogger("posefleet.control")


def run_control_worker(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    worker = SimpleWorker([control_queue(client), webhook_queue(client)], connection=client)
    log.info(
        "control worker started",
        extra={
            "queues": [keys.CONTROL_QUEUE, keys.WEBHOOK_QUEUE],
            "webhook_workers": settings.webhook_workers,
        },
    )
    with webhook_threads(settings):
        worker.work(with_scheduler=True, logging_level="WARNING")
    return 0
