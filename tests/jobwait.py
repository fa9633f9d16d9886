"""Wait for a job to finish the way the gateway does: subscribe, then read, then wait."""

from __future__ import annotations

import time
from typing import Any

import redis

from services.core import keys
from services.core.jobs import is_terminal, job_view


def wait_terminal(client: redis.Redis, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.EVENTS_CHANNEL)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            view = job_view(client.hgetall(keys.job(job_id)))
            if is_terminal(view["status"]):
                return view
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} still {view['status']} after {timeout_s}s")
            pubsub.get_message(timeout=min(remaining, 1.0))
    finally:
        pubsub.close()
