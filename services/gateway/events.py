"""Completion notifications for ``Prefer: wait``: one pub/sub subscription per gateway process.

The DAG's Lua steps PUBLISH a job id when the job reaches a terminal state. Waiters register
before they read the job's status, so a notification can never slip between the read and the
wait; the read settles jobs that finished earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis
import redis.asyncio as aioredis

from services.core import keys
from services.core.backoff import Backoff
from services.core.metrics import GATEWAY_WAITERS

log = logging.getLogger("posefleet.gateway.events")


class JobEvents:
    def __init__(self, client: aioredis.Redis, backoff_max_s: float) -> None:
        self._client = client
        self._backoff_max_s = backoff_max_s
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watch(self, job_id: str):  # type: ignore[no-untyped-def]
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        GATEWAY_WAITERS.inc()
        try:
            yield event
        finally:
            GATEWAY_WAITERS.dec()
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def wait_subscribed(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        return self.subscribed

    async def _listen(self) -> None:
        backoff = Backoff(self._backoff_max_s)
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.EVENTS_CHANNEL)
                self._subscribed.set()
                backoff.succeeded()
                async for message in pubsub.listen():
                    job_id = message["data"].decode()
                    for event in self._waiters.get(job_id, ()):
                        event.set()
            except redis.RedisError as exc:  # any of them: the subscription must come back
                self._subscribed.clear()
                # Wake every waiter: each re-reads its job, so none waits on a lost message.
                for waiters in self._waiters.values():
                    for event in waiters:
                        event.set()
                await asyncio.sleep(
                    backoff.failed(exc, log, "event subscription lost, reconnecting")
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
