"""The control worker's webhook side: the relay from the callbacks stream into RQ, and the RQ
workers, in threads, that deliver.

The DAG step that ends a job with a callback appends the job to ``pf:callbacks`` in the same
atomic step (services/core/lua/callbacks.lua). The relay reads that stream in a consumer group,
queues one RQ delivery per entry — the RQ job id is derived from the entry and unique, so an
entry read twice is queued once — and only then acks and deletes the entry. An entry therefore
leaves the stream only once its delivery is in RQ, and the entries of a relay that died between
the two are taken over by a live one (``XAUTOCLAIM`` after ``visibility_timeout_s``). The
stream's length is the number of ended jobs whose delivery is not yet queued.

Deliveries run in ``webhook_workers`` RQ workers in threads beside the batch worker (the main
thread's), so no delivery waits behind a batch expansion of several minutes, and one slow
receiver holds one thread, not all deliveries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.timeouts import TimerDeathPenalty

from services.control.webhooks import enqueue_delivery, webhook_queue
from services.core import keys
from services.core.settings import Settings

log = logging.getLogger("posefleet.webhooks")

BLOCK_MS = 1000  # longest wait for a new entry before re-checking shutdown and reclaiming
MAX_BACKOFF_S = 30.0  # longest wait between retries while Redis fails
IDLE_POLL_S = 2  # longest wait for a delivery job before a thread re-checks shutdown


class CallbackRelay:
    """Moves ``pf:callbacks`` entries into RQ delivery jobs; see the module docstring."""

    def __init__(self, client: redis.Redis, settings: Settings, stop: threading.Event) -> None:
        self.client, self.settings, self.stop = client, settings, stop
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.reclaim_every_s = settings.visibility_timeout_s / 4
        self._next_reclaim = 0.0

    def run(self) -> None:
        """Relay until ``stop``; any Redis error (down, full, read-only, loading, the group
        gone) is waited out with capped exponential back-off, and the relay resumes."""
        backoff = 0.5
        while not self.stop.is_set():
            try:
                self._ensure_group()
                while not self.stop.is_set():
                    self.relay_once()
                    backoff = 0.5
            except redis.RedisError as exc:
                log.warning("callback relay: Redis error", extra={"error": str(exc)})
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(
                keys.CALLBACKS_STREAM, keys.CALLBACKS_GROUP, id="0", mkstream=True
            )
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def relay_once(self) -> int:
        """Queue the deliveries of new entries (and of stale ones, when a reclaim is due)."""
        entries = self._reclaim() if time.monotonic() >= self._next_reclaim else []
        read = self.client.xreadgroup(
            keys.CALLBACKS_GROUP,
            self.consumer,
            {keys.CALLBACKS_STREAM: ">"},
            count=100,
            block=BLOCK_MS,
        )
        for _, fresh in read or []:
            entries += fresh
        for entry_id, fields in entries:
            if b"job" in fields:  # written by callbacks.lua only; anything else is dropped
                job_id, entry = fields[b"job"].decode(), entry_id.decode()
                enqueue_delivery(self.client, "job", job_id, f"{job_id}-{entry}", self.settings)
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(keys.CALLBACKS_STREAM, keys.CALLBACKS_GROUP, entry_id)
            pipe.xdel(keys.CALLBACKS_STREAM, entry_id)
            pipe.execute()
        return len(entries)

    def _reclaim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Take over entries a dead relay read but never queued, then drop consumers with
        nothing pending, so the group does not grow with every restart."""
        self._next_reclaim = time.monotonic() + self.reclaim_every_s
        idle_ms = int(self.settings.visibility_timeout_s * 1000)
        claimed = self.client.xautoclaim(
            keys.CALLBACKS_STREAM, keys.CALLBACKS_GROUP, self.consumer, idle_ms, count=100
        )
        for consumer in self.client.xinfo_consumers(keys.CALLBACKS_STREAM, keys.CALLBACKS_GROUP):
            name = consumer["name"].decode()
            if name != self.consumer and not consumer["pending"] and consumer["idle"] > idle_ms:
                self.client.xgroup_delconsumer(keys.CALLBACKS_STREAM, keys.CALLBACKS_GROUP, name)
        return [(entry_id, fields) for entry_id, fields in claimed[1] if fields]


class ThreadWorker(SimpleWorker):
    """An RQ worker that runs in a thread: the process's signals belong to the main thread's
    worker, and job timeouts use a timer, since SIGALRM only reaches the main thread."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals are the main worker's (``signal.signal`` fails outside the main thread)."""

    def stop_soon(self) -> None:
        """Finish the job in hand, then return from ``work`` (within ``IDLE_POLL_S`` when
        idle). RQ's own flag: its ``request_stop`` installs signal handlers."""
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """RQ's idle wait loops until a job comes (the main thread leaves it by a signal);
        here it ends every ``IDLE_POLL_S`` to look at the stop flag, and None ends ``work``."""
        while not self._stop_requested:
            found = super().dequeue_job_and_maintain_ttl(IDLE_POLL_S, max_idle_time=IDLE_POLL_S)
            if found is not None:
                return found
        return None


class DeliveryThread:
    """One delivery worker; restarted after a back-off if RQ's loop quits (it does on a
    Redis timeout or an unexpected error), so deliveries never stop for good."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings, self.stop = settings, stop
        self.worker: ThreadWorker | None = None
        self.thread = threading.Thread(target=self.run, name="webhook-delivery", daemon=True)

    def run(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            client = redis.Redis.from_url(self.settings.redis_url)
            self.worker = ThreadWorker([webhook_queue(client)], connection=client)
            try:
                self.worker.work(logging_level="WARNING")
            except Exception as exc:  # whatever stopped RQ's loop, deliveries must go on
                log.warning("webhook delivery worker: restarting", extra={"error": str(exc)})
            finally:
                client.close()
            self.stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def stop_soon(self) -> None:
        if self.worker is not None:
            self.worker.stop_soon()


@contextmanager
def webhook_threads(settings: Settings) -> Iterator[None]:
    """The relay and ``webhook_workers`` delivery threads, for as long as the block runs; on
    exit each finishes the delivery in hand (bounded by the attempt's timeout)."""
    stop = threading.Event()
    relay_client = redis.Redis.from_url(settings.redis_url)
    relay = threading.Thread(
        target=CallbackRelay(relay_client, settings, stop).run, name="callback-relay", daemon=True
    )
    deliveries = [DeliveryThread(settings, stop) for _ in range(settings.webhook_workers)]
    relay.start()
    for delivery in deliveries:
        delivery.thread.start()
    try:
        yield
    finally:
        stop.set()
        for delivery in deliveries:
            delivery.stop_soon()
        relay.join(timeout=BLOCK_MS / 1000 + 5)
        for delivery in deliveries:
            delivery.thread.join(timeout=2 * settings.webhook_timeout_s + IDLE_POLL_S + 5)
        relay_client.close()
