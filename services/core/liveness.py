"""A worker's proofs of life: to Redis (its in-flight tasks kept from being reclaimed, its entry in
the worker registry) and to the kubelet (a heartbeat that ``/healthz`` checks).

Each is small and testable alone; the worker loop owns when they are called.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from services.core.registry import Registry
from services.core.settings import Settings
from services.core.streams import StageStream

log = logging.getLogger("posefleet.worker")

REGISTER_EVERY_S = 5.0


class Heartbeat:
    """The worker loop beats once per turn; stale after ``max_age_s`` without a beat."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def check(self) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.last
        return age <= self.max_age_s, {"last_loop_s": round(age, 3)}


class KeepAlive:
    """One thread for the worker's life (a thread per batch cost 18% of a no-op stage's CPU):
    every third of the visibility timeout it touches the entries of the batch in hand, so a slow
    batch is not reclaimed — but only until ``batch_timeout_s``: a hung batch must not hold its
    tasks forever."""

    def __init__(
        self,
        stream: StageStream,
        visibility_timeout_s: float,
        batch_timeout_s: float,
        stopping: threading.Event,
    ) -> None:
        self.stream = stream
        self.interval_s = visibility_timeout_s / 3
        self.batch_timeout_s = batch_timeout_s
        self._stopping = stopping
        self._in_flight: tuple[list[str], float] | None = None  # (entry ids, give-up time)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="keepalive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout=timeout_s)

    @contextmanager
    def holding(self, entry_ids: list[str]) -> Iterator[None]:
        """Keep these entries alive for as long as the ``with`` block runs."""
        with self._lock:
            self._in_flight = (entry_ids, time.monotonic() + self.batch_timeout_s)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight = None

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            with self._lock:
                in_flight = self._in_flight
                if in_flight is not None and time.monotonic() > in_flight[1]:
                    self._in_flight = None  # give up once: the tasks become reclaimable
                    log.error(
                        "batch exceeded batch_timeout_s; releasing its tasks",
                        extra={"stage": self.stream.stage, "tasks": len(in_flight[0])},
                    )
                    continue
            if in_flight is None:
                continue
            try:
                self.stream.touch(in_flight[0])
            except redis.RedisError as exc:
                log.warning(
                    "keep-alive failed",
                    extra={"error_class": type(exc).__name__, "error": str(exc)},
                )


class Registration:
    """This replica's entry in the worker registry (stage, pool, lifetime), refreshed every few
    seconds on the Redis clock: GET /v1/stats turns the entries into replica-hours per pool,
    the cost side of cost per 1000 images. Each refresh also prunes what dead replicas left
    (services.core.registry), so the registry and the stage's group stay bounded."""

    def __init__(
        self, client: redis.Redis, consumer: str, stage: str, pool: str, settings: Settings
    ) -> None:
        self.client = client
        self.consumer = consumer
        self.stage = stage
        self.pool = pool
        self.registry = Registry(client, stage, settings)
        self._started_ms: int | None = None
        self._next = 0.0

    def refresh(self) -> None:
        """Write the entry when it is due; a no-op otherwise."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + REGISTER_EVERY_S
        seconds, micros = self.client.time()  # the Redis clock, like every job timestamp
        now_ms = seconds * 1000 + micros // 1000
        self._started_ms = self._started_ms or now_ms
        record = {
            "stage": self.stage,
            "pool": self.pool,
            "started_ms": self._started_ms,
            "seen_ms": now_ms,
        }
        self.registry.register(self.consumer, record)
