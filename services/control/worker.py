"""``posefleet control-worker``: the control plane's process.

The main thread runs an RQ SimpleWorker (no fork per job: batch jobs are long and few) with
RQ's scheduler, which runs the retry intervals of batches and webhook deliveries alike. Beside
it run the webhook relay and delivery threads (services/control/callbacks.py); the main worker
also serves the webhook queue, so deliveries go on while it has no batch.

RQ's work loop quits on any Redis error it meets (a full Redis, a restart, a failover): a
control worker that exited would come back to the same Redis, so instead the loop is started
again after a capped back-off, like every stage worker's, until a signal asks it to stop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq import SimpleWorker

from services.control.callbacks import webhook_threads
from services.control.queue import control_queue
from services.control.webhooks import webhook_queue
from services.core import keys
from services.core.backoff import Backoff
from services.core.settings import Settings

log = logging.getLogger("posefleet.control")


class ControlWorker(SimpleWorker):
    """RQ's SimpleWorker that remembers being told to stop (SIGTERM/SIGINT), which is the one
    reason for its work loop to end that must not start it again."""

    stop_requested = False

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)


def run_control_worker(settings: Settings) -> int:
    log.info(
        "control worker started",
        extra={
            "queues": [keys.CONTROL_QUEUE, keys.WEBHOOK_QUEUE],
            "webhook_workers": settings.webhook_workers,
        },
    )
    backoff = Backoff(settings.redis_backoff_max_s)
    with webhook_threads(settings):
        while True:
            client = redis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=settings.redis_timeout_s
            )
            queues = [control_queue(client), webhook_queue(client)]
            worker = ControlWorker(queues, connection=client)
            try:
                worker.work(with_scheduler=True, logging_level="WARNING")
                error: BaseException = RuntimeError("RQ's work loop quit")
            except redis.RedisError as exc:  # before RQ's loop began (registering the worker)
                error = exc
            finally:
                client.close()
            if worker.stop_requested:
                return 0
            time.sleep(backoff.failed(error, log, "control worker: redis error, restarting"))
