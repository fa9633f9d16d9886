"""Notifications for ``Prefer: wait`` and the event streams: one pub/sub connection per process.

The DAG's Lua steps PUBLISH a job id on ``pf:events`` when the job reaches a terminal state.
Waiters register before they read the job's status, so a notification can never slip between
the read and the wait; the read settles jobs that finished earlier.

Event streams (``routes/events.py``) also follow a job's or batch's own progress channel
(``keys.job_events``, ``keys.batch_events``). Those channels are subscribed on the same
connection only while a stream follows them, so a node starting or ending costs Redis one
PUBLISH to nobody when no one watches, and each gateway receives only what its streams show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

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
        self._followers: dict[str, set[asyncio.Event]] = {}  # progress channel -> streams
        self._confirmed: dict[str, asyncio.Event] = {}  # progress channel -> SUBSCRIBE acked
        self._pubsub: aioredis.client.PubSub | None = None
        self._unsubscribing: set[asyncio.Task[None]] = set()
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
    def watch(self, job_id: str, event: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
        """An event set when ``job_id`` reaches a terminal state (or the connection drops);
        pass ``event`` to share one with other notifications."""
        event = event or asyncio.Event()
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

    @contextlib.asynccontextmanager
    async def follow(
        self, channel: str, event: asyncio.Event | None = None, timeout_s: float = 2.0
    ) -> AsyncIterator[asyncio.Event]:
        """An event set on every message of ``channel`` (and when the connection drops).

        Enters once Redis has confirmed the subscription (or ``timeout_s`` passed), so the
        caller's next read of the record cannot miss a change published after it."""
        event = event or asyncio.Event()
        followers = self._followers.setdefault(channel, set())
        followers.add(event)
        if channel not in self._confirmed:
            self._confirmed[channel] = asyncio.Event()
            await self._send("subscribe", channel)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._confirmed[channel].wait(), timeout_s)
        try:
            yield event
        finally:
            followers.discard(event)
            if not followers:
                del self._followers[channel]
                self._confirmed.pop(channel, None)
                # A task, not an await: a stream ends by cancellation when its client leaves,
                # and an await here would be cancelled too, leaving the channel subscribed.
                task = asyncio.create_task(self._release(channel))
                self._unsubscribing.add(task)
                task.add_done_callback(self._unsubscribing.discard)

    @property
    def streams(self) -> int:
        """Event streams open in this process (each follows one channel)."""
        return sum(len(f) for f in self._followers.values())

    async def _send(self, command: str, channel: str) -> None:
        """(Un)subscribe on the live connection; if it is down, the listener's reconnect
        subscribes every followed channel again, so a failure here loses nothing."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError):
            await getattr(pubsub, command)(channel)

    async def _release(self, channel: str) -> None:
        if channel not in self._followers:  # a new stream may have followed it meanwhile
            await self._send("unsubscribe", channel)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def wait_subscribed(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        return self.subscribed

    def _wake_everyone(self) -> None:
        for events in (*self._waiters.values(), *self._followers.values()):
            for event in events:
                event.set()

    async def _listen(self) -> None:
        backoff = Backoff(self._backoff_max_s)
        while True:
            pubsub = self._client.pubsub()
            try:
                channels = [keys.EVENTS_CHANNEL, *self._followers]
                await pubsub.subscribe(*channels)
                self._pubsub = pubsub
                # Streams that started following while the subscription was being made.
                late = [c for c in self._followers if c not in channels]
                if late:
                    await pubsub.subscribe(*late)
                self._subscribed.set()
                backoff.succeeded()
                async for message in pubsub.listen():
                    channel = message["channel"].decode()
                    if message["type"] == "subscribe":
                        if channel in self._confirmed:
                            self._confirmed[channel].set()
                    elif message["type"] != "message":
                        continue
                    elif channel == keys.EVENTS_CHANNEL:
                        for event in self._waiters.get(message["data"].decode(), ()):
                            event.set()
                    else:
                        for event in self._followers.get(channel, ()):
                            event.set()
            except redis.RedisError as exc:  # any of them: the subscription must come back
                self._subscribed.clear()
                self._pubsub = None
                # Wake every waiter and stream: each re-reads its record, so none waits on a
                # lost message.
                self._wake_everyone()
                await asyncio.sleep(
                    backoff.failed(exc, log, "event subscription lost, reconnecting")
                )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
