"""The one worker loop every stage runs: collect a batch, settle it with the DAG steps around the
handler, keep proving it is alive — and survive what Redis and the handler throw at it.

The parts are separate units: ``batching`` (what to run next), ``settlement`` (the Lua protocol
around each task), ``liveness`` (keep-alive, registry, heartbeat). This module composes them,
runs the handler with per-task failure isolation, drains on SIGTERM, and backs off while Redis is
unreachable. Instance groups (``POSEFLEET_INSTANCES``) are N of these loops in one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from secrets import token_hex

import redis

from services.core.backlog import backlog_commands, record_backlog
from services.core.backoff import Backoff
from services.core.batching import BatchCollector
from services.core.handler import Handler, HandlerContext, Task
from services.core.liveness import Heartbeat, KeepAlive, Registration
from services.core.metrics import NODE_POOL_COST, STAGE_INFERENCE, WORKER_BUSY
from services.core.pipeline import StageSpec, load_pipelines
from services.core.plugins import load_handler
from services.core.probes import ProbeServer
from services.core.settings import Settings, get_settings
from services.core.settlement import Outcome, Settlement
from services.core.streams import Delivery, StageStream

log = logging.getLogger("posefleet.worker")


def consumer_prefix(pid: int) -> str:
    """Consumer names start with host and pid, so a supervisor can tell which process a
    consumer in the group is; the random tail keeps a restarted pid from reusing a name."""
    return f"{socket.gethostname()}-{pid}-"


class Worker:
    def __init__(
        self,
        client: redis.Redis,
        stage: StageSpec,
        handler: Handler,
        settings: Settings,
        stopping: threading.Event | None = None,
        register: bool = True,
    ) -> None:
        self.client = client
        self.stage = stage
        self.handler = handler
        self.settings = settings
        self.pool = settings.pool
        self.consumer = consumer_prefix(os.getpid()) + token_hex(3)
        self.stream = StageStream(client, stage.name, self.consumer)
        self._stopping = stopping or threading.Event()
        self.collector = BatchCollector(
            self.stream,
            max_batch=stage.max_batch,
            max_delay_ms=stage.max_delay_ms,
            block_ms=settings.block_ms,
            visibility_timeout_s=settings.visibility_timeout_s,
        )
        self.settlement = Settlement(
            client,
            self.stream,
            stage,
            self.pool,
            settings.max_attempts,
            keep_input_s=settings.dead_letter_keep_input_s,
        )
        self.keepalive = KeepAlive(
            self.stream, settings.visibility_timeout_s, settings.batch_timeout_s, self._stopping
        )
        self.registration = (
            Registration(client, self.consumer, stage.name, self.pool, settings)
            if register
            else None
        )
        self.heartbeat = Heartbeat(settings.batch_timeout_s + settings.block_ms / 1000 + 5)
        self.backend = getattr(getattr(handler, "model", None), "backend", "none")
        NODE_POOL_COST.labels(self.pool).set(settings.pool_hourly_cost.get(self.pool, 0.0))

    def stop(self) -> None:
        """Stop pulling work; the batch in hand is finished and acked first."""
        self._stopping.set()

    def run(self) -> None:
        self.keepalive.start()
        joined = announced = False
        backoff = Backoff(self.settings.redis_backoff_max_s)
        while not self._stopping.is_set():
            self.heartbeat.beat()
            try:
                if not joined:  # again after every Redis error: a restart may have lost the group
                    self.stream.ensure_group()
                    joined = True
                if not announced:
                    announced = True
                    log.info(
                        "worker started",
                        extra={
                            "stage": self.stage.name,
                            "consumer": self.consumer,
                            "max_batch": self.stage.max_batch,
                            "max_delay_ms": self.stage.max_delay_ms,
                        },
                    )
                if self.registration is not None:
                    self.registration.refresh()
                batch = self.collect()
                if batch:
                    self.process(batch)
                backoff.succeeded()
            except redis.RedisError as exc:
                # Any Redis error — full (OOM), read-only after a failover, loading after a
                # restart, unreachable, timed out, refused (max clients) — is waited out with
                # the model loaded; a worker that exited would come back to the same Redis.
                joined = False
                pause = backoff.failed(
                    exc, log, "redis error, retrying", stage=self.stage.name, consumer=self.consumer
                )
                self._stopping.wait(pause)
        self.keepalive.join(timeout_s=5)
        log.info("worker stopped", extra={"stage": self.stage.name, "consumer": self.consumer})

    def collect(self) -> list[Delivery]:
        return self.collector.collect()

    def process(self, batch: list[Delivery]) -> None:
        """Run one batch to the end: every task settled (completed, failed or skipped). A Redis
        error in a DAG step leaves this method with the batch's unfinished tasks still pending
        under this consumer: nothing acks a task but its own complete/fail step, so they are
        reclaimed after the visibility timeout and run again (at-least-once; complete.lua makes
        a second finish change nothing)."""
        started = time.perf_counter()
        with self.keepalive.holding([d.entry_id for d in batch]):
            self.settlement.settle(batch, self.execute)
        WORKER_BUSY.labels(self.stage.name, self.pool).inc(time.perf_counter() - started)

    def execute(self, tasks: list[Task]) -> list[Outcome]:
        """Run the batch through the handler; if it raises, run its tasks one by one so only the
        culprit fails."""
        try:
            batch = self.handler.preprocess(tasks)
            started = time.perf_counter()
            raw = self.handler.inference(batch)
            STAGE_INFERENCE.labels(self.stage.name, self.pool, self.backend).observe(
                time.perf_counter() - started
            )
            outputs = self.handler.postprocess(raw, tasks)
            if len(outputs) != len(tasks):
                raise RuntimeError(
                    f"postprocess returned {len(outputs)} results for {len(tasks)} tasks"
                )
            return list(outputs)
        except Exception as exc:
            if len(tasks) == 1:
                return [exc]
            return [self.execute([t])[0] for t in tasks]

    def refresh_backlog(self) -> None:
        """Scrape-time gauges of this worker's stage (its KEDA/Prometheus scaling signal)."""
        pipe = self.client.pipeline(transaction=False)
        names = backlog_commands(pipe, [self.stage.name])
        with contextlib.suppress(redis.RedisError):
            record_backlog(names, pipe.execute())


def stage_model(spec: StageSpec, settings: Settings) -> tuple[str | None, str | None]:
    """The stage's model and version: pipelines.yaml's, unless settings override it."""
    override = settings.stage_models.get(spec.name)
    if not override:
        return spec.model, spec.model_version
    name, _, version = override.partition(":")
    return name, version or None


def start_instances(
    spec: StageSpec, settings: Settings, client: redis.Redis, stopping: threading.Event
) -> list[Worker]:
    """One handler (model copy) and one batch loop per instance. Only the first registers in
    the worker registry: the registry counts pods for cost, and N copies are still one pod."""
    model, version = stage_model(spec, settings)
    workers = []
    for instance in range(settings.instances):
        handler = load_handler(spec)
        handler.initialize(
            HandlerContext(
                stage=spec.name,
                settings=settings,
                model=model,
                model_version=version,
                options=spec.options,
                instance=instance,
            )
        )
        workers.append(
            Worker(client, spec, handler, settings, stopping=stopping, register=instance == 0)
        )
        if stopping.is_set():  # told to stop while models loaded
            break
    return workers


def health_of(workers: list[Worker]) -> Callable[[], tuple[bool, dict[str, object]]]:
    """Healthy only while every instance's loop turns: one stuck copy is a stuck pod."""

    def check() -> tuple[bool, dict[str, object]]:
        results = [w.heartbeat.check() for w in workers]
        worst = next((r for r in results if not r[0]), results[0])
        return worst[0], {**worst[1], "instances": len(workers)}

    return check


def run_stage(stage_name: str, settings: Settings | None = None) -> int:
    """Entry point of ``python -m services.<stage>`` and ``posefleet worker``."""
    from services.core.logs import configure_logging

    settings = settings or get_settings()
    configure_logging(f"worker-{stage_name}")
    config = load_pipelines(settings.pipelines_file)
    if stage_name not in config.stages:
        raise SystemExit(
            f"unknown stage '{stage_name}' (stages in {config.source}: {sorted(config.stages)})"
        )
    spec = config.stages[stage_name]
    # Handlers first: a pod told to stop while its model loads exits cleanly right after.
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.block_ms / 1000 + settings.redis_timeout_s,
    )
    workers = start_instances(spec, settings, client, stopping)
    probes = None
    if settings.metrics_port:
        probes = ProbeServer(
            settings.metrics_port, health_of(workers), workers[0].refresh_backlog
        ).start()
        log.info("probes listening", extra={"port": probes.port, "paths": "/metrics /healthz"})
    threads = [
        threading.Thread(target=w.run, name=f"instance-{i}", daemon=True)
        for i, w in enumerate(workers[1:], start=1)
    ]
    try:
        for thread in threads:
            thread.start()
        workers[0].run()
        for thread in threads:  # each drains its own batch before returning
            thread.join()
    finally:
        if probes is not None:
            probes.stop()
    return 0
