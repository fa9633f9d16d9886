"""The one worker loop every stage runs (DESIGN §5).

It owns what a handler must never see: dynamic batching (block for the first task, top up to
``max_batch`` within ``max_delay_ms``), the DAG steps around each task, crash recovery
(XAUTOCLAIM of entries idle past the visibility timeout, a keep-alive for long batches),
``max_attempts`` → dead letter, per-task failure isolation, and a graceful SIGTERM drain.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from secrets import token_hex
from typing import Any

import redis

from services.core import keys
from services.core.backlog import backlog_commands, record_backlog
from services.core.dag import DagSteps
from services.core.handler import Handler, HandlerContext, Task, TaskError
from services.core.metrics import (
    JOB_DURATION,
    NODE_POOL_COST,
    PIPELINE_COMPUTE,
    STAGE_BATCH_SIZE,
    STAGE_INFERENCE,
    STAGE_QUEUE_WAIT,
    STAGE_TASKS,
    WORKER_BUSY,
)
from services.core.pipeline import REQUEST_PREFIX, StageSpec, load_pipelines
from services.core.probes import Heartbeat, ProbeServer
from services.core.settings import Settings, get_settings
from services.core.streams import Delivery, StageStream

log = logging.getLogger("posefleet.worker")

_SKIP = {b"duplicate", b"terminal", b"gone", b"expired"}
_MAX_CACHED_DAGS = 64
_TOP_UP_POLL_S = 0.001
_REGISTER_EVERY_S = 5.0


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
        self.consumer = consumer_prefix(os.getpid()) + token_hex(3)
        self.stream = StageStream(client, stage.name, self.consumer)
        self.steps = DagSteps(client)
        self.max_batch = stage.max_batch or settings.max_batch
        self.max_delay_ms = (
            settings.max_delay_ms if stage.max_delay_ms is None else stage.max_delay_ms
        )
        self._visibility_ms = int(settings.visibility_timeout_s * 1000)
        self._next_claim = 0.0
        self._next_register = 0.0 if register else float("inf")
        self._started_ms: int | None = None
        self._stopping = stopping or threading.Event()
        self._in_flight: tuple[list[str], float] | None = None  # (entry ids, give-up time)
        self._in_flight_lock = threading.Lock()
        self._dags: dict[bytes, dict[str, Any]] = {}
        self.heartbeat = Heartbeat(settings.batch_timeout_s + settings.block_ms / 1000 + 5)
        self.pool = settings.pool
        model = getattr(handler, "model", None)
        self.backend = getattr(model, "backend", "none")
        NODE_POOL_COST.labels(self.pool).set(settings.pool_hourly_cost.get(self.pool, 0.0))

    def stop(self) -> None:
        """Stop pulling work; the batch in hand is finished and acked first."""
        self._stopping.set()

    def run(self) -> None:
        keeper = threading.Thread(target=self._keep_alive_loop, name="keepalive", daemon=True)
        keeper.start()
        joined = False
        backoff = 0.1
        while not self._stopping.is_set():
            self.heartbeat.beat()
            try:
                if not joined:  # also retried: Redis may come up after the worker
                    self.stream.ensure_group()
                    joined = True
                    log.info(
                        "worker started",
                        extra={
                            "stage": self.stage.name,
                            "consumer": self.consumer,
                            "max_batch": self.max_batch,
                            "max_delay_ms": self.max_delay_ms,
                        },
                    )
                self._register()
                batch = self.collect()
                if batch:
                    self.process(batch)
                backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning(
                    "redis unavailable, retrying", extra={"error": str(exc), "retry_in_s": backoff}
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        keeper.join(timeout=5)
        log.info("worker stopped", extra={"stage": self.stage.name, "consumer": self.consumer})

    def _register(self) -> None:
        """Announce this replica (stage, pool, lifetime) every few seconds: GET /v1/stats turns
        these records into replica-hours per pool, the cost side of cost per 1000 images."""
        if time.monotonic() < self._next_register:
            return
        self._next_register = time.monotonic() + _REGISTER_EVERY_S
        seconds, micros = self.client.time()  # the Redis clock, like every job timestamp
        now_ms = seconds * 1000 + micros // 1000
        self._started_ms = self._started_ms or now_ms
        record = {
            "stage": self.stage.name,
            "pool": self.pool,
            "started_ms": self._started_ms,
            "seen_ms": now_ms,
        }
        self.client.hset(keys.WORKERS, self.consumer, json.dumps(record))

    # -- batching ---------------------------------------------------------------------------
    def collect(self) -> list[Delivery]:
        batch: list[Delivery] = []
        if time.monotonic() >= self._next_claim:
            batch = self.stream.claim_stale(self._visibility_ms, self.max_batch)
            self._next_claim = time.monotonic() + self.settings.visibility_timeout_s / 4
            if batch:
                log.info(
                    "reclaimed stale tasks", extra={"stage": self.stage.name, "count": len(batch)}
                )
        if not batch:
            batch = self.stream.read(self.max_batch, self.settings.block_ms)
            if not batch:
                return []
        # Top up with non-blocking reads: Redis expires a BLOCK timeout only on its server
        # cron tick (100 ms at the default hz 10), far coarser than a few-ms batching window.
        deadline = time.monotonic() + self.max_delay_ms / 1000
        while len(batch) < self.max_batch:
            batch += self.stream.read(self.max_batch - len(batch), None)
            remaining = deadline - time.monotonic()
            if len(batch) >= self.max_batch or remaining <= 0:
                break
            time.sleep(min(remaining, _TOP_UP_POLL_S))
        return batch

    # -- one batch ----------------------------------------------------------------------------
    def process(self, batch: list[Delivery]) -> None:
        started = time.perf_counter()
        with self._keepalive([d.entry_id for d in batch]):
            pipe = self.client.pipeline(transaction=False)
            for d in batch:
                self.steps.begin(
                    d.job_id,
                    d.node,
                    self.consumer,
                    self.pool,
                    self.settings.max_attempts,
                    client=pipe,
                )
            begun = pipe.execute(raise_on_error=False)

            finish = self.client.pipeline(transaction=False)
            settled: list[_Settled] = []  # what each DAG step in ``finish`` means
            runnable: list[tuple[Delivery, Task, _Settled]] = []
            for d, reply in zip(batch, begun, strict=True):
                admitted = self._admit(d, reply, finish, settled)
                if admitted is not None:
                    runnable.append(admitted)

            if runnable:
                STAGE_BATCH_SIZE.labels(self.stage.name).observe(len(runnable))
                phase_started = time.perf_counter()
                outcomes = self._execute([t for _, t, _ in runnable])
                compute_ms = (time.perf_counter() - phase_started) * 1000
                for (d, _, info), outcome in zip(runnable, outcomes, strict=True):
                    self._finish(d, outcome, compute_ms, finish, info, settled)
                    if info.pipeline is not None:
                        PIPELINE_COMPUTE.labels(info.pipeline, self.pool).inc(
                            compute_ms / 1000 / len(runnable)
                        )
            self._observe(settled, finish.execute())
        WORKER_BUSY.labels(self.stage.name, self.pool).inc(time.perf_counter() - started)

    def _admit(
        self, d: Delivery, reply: Any, finish: Any, settled: list[_Settled]
    ) -> tuple[Delivery, Task, _Settled] | None:
        """Turn a begin reply into a Task, or settle the delivery here when it must not run."""
        if isinstance(reply, Exception):
            raise reply
        kind = reply[0]
        if kind == b"run":
            queue_ms, age_ms = int(reply[2]), int(reply[3])
            STAGE_QUEUE_WAIT.labels(self.stage.name).observe(queue_ms / 1000)
            task, pipeline = self._task(d, reply[4], reply[5:])
            return d, task, _Settled(pipeline, age_ms, time.monotonic())
        if kind in _SKIP:
            self.stream.ack([d.entry_id], pipe=finish)
            STAGE_TASKS.labels(self.stage.name, self.pool, "skipped").inc()
            return None
        if kind == b"exhausted":
            error = {
                "code": "max_attempts_exceeded",
                "node": d.node,
                "stage": self.stage.name,
                "message": f"the task was delivered {reply[1].decode()} times without "
                "finishing (worker crashes or timeouts); moved to dead letters",
            }
            outcome, reason = "dead_lettered", "max_attempts_exceeded"
        else:  # b"missing": an upstream output vanished, which only expiry can cause
            error = {
                "code": "missing_input",
                "node": d.node,
                "stage": self.stage.name,
                "message": f"input {reply[1].decode()} is no longer stored",
            }
            outcome, reason = "failed", ""
        settled.append(_Settled(None, 0, 0.0, len(finish.command_stack), outcome))
        self.steps.fail(
            d.job_id,
            d.node,
            self.stage.name,
            d.entry_id,
            error,
            dead_letter_reason=reason,
            client=finish,
            keep_input_s=self.settings.dead_letter_keep_input_s,
        )
        return None

    def _task(self, d: Delivery, dag_json: bytes, values: list[bytes]) -> tuple[Task, str]:
        dag = self._dags.get(dag_json)
        if dag is None:
            if len(self._dags) >= _MAX_CACHED_DAGS:
                self._dags.clear()
            dag = self._dags[dag_json] = json.loads(dag_json)
        node = dag["nodes"][d.node]
        by_ref = {
            ref: raw if ref.startswith(REQUEST_PREFIX) else json.loads(raw)
            for ref, raw in zip(node["refs"], values, strict=True)
        }
        inputs = {
            name: [by_ref[r] for r in ref] if isinstance(ref, list) else by_ref[ref]
            for name, ref in node["inputs"].items()
        }
        task = Task(job_id=d.job_id, node=d.node, inputs=inputs, params=node["params"])
        return task, dag["pipeline"]

    def _finish(
        self,
        d: Delivery,
        outcome: dict[str, Any] | BaseException,
        compute_ms: float,
        finish: Any,
        info: _Settled,
        settled: list[_Settled],
    ) -> None:
        index = len(finish.command_stack)
        if isinstance(outcome, dict):
            try:
                self.steps.complete(
                    d.job_id,
                    d.node,
                    self.stage.name,
                    d.entry_id,
                    outcome,
                    compute_ms,
                    client=finish,
                )
                settled.append(info.at(index, "succeeded"))
                return
            except (TypeError, ValueError) as exc:  # not JSON-serialisable: a handler bug
                outcome = exc
        code = "invalid_input" if isinstance(outcome, TaskError) else "stage_error"
        if code == "stage_error":
            log.error(
                "task failed",
                exc_info=outcome,
                extra={"stage": self.stage.name, "job": d.job_id, "node": d.node},
            )
        error = {"code": code, "node": d.node, "stage": self.stage.name, "message": str(outcome)}
        self.steps.fail(d.job_id, d.node, self.stage.name, d.entry_id, error, client=finish)
        settled.append(info.at(index, "failed"))

    def _observe(self, settled: list[_Settled], replies: list[Any]) -> None:
        """Count each settled task, and time each job whose last step this batch ran."""
        for item in settled:
            STAGE_TASKS.labels(self.stage.name, self.pool, item.outcome).inc()
            reply = replies[item.index]
            if item.pipeline is not None and reply in (b"finished", b"failed"):
                seconds = item.age_ms / 1000 + time.monotonic() - item.begun
                status = "succeeded" if reply == b"finished" else "failed"
                JOB_DURATION.labels(item.pipeline, status).observe(seconds)

    def _execute(self, tasks: list[Task]) -> list[dict[str, Any] | BaseException]:
        """Run the batch; if it raises, run its tasks one by one so only the culprit fails."""
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
            return [self._execute([t])[0] for t in tasks]

    @contextmanager
    def _keepalive(self, entry_ids: list[str]) -> Iterator[None]:
        """Hand the batch's entries to the keep-alive thread for as long as the batch runs."""
        with self._in_flight_lock:
            self._in_flight = (entry_ids, time.monotonic() + self.settings.batch_timeout_s)
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight = None

    def _keep_alive_loop(self) -> None:
        """One thread for the worker's life (a thread per batch cost 18% of a no-op stage's
        CPU): every third of the visibility timeout it touches the entries of the batch in
        hand, so a slow batch is not reclaimed — but only until ``batch_timeout_s``: a hung
        batch must not hold its tasks forever."""
        interval = self.settings.visibility_timeout_s / 3
        while not self._stopping.wait(interval):
            with self._in_flight_lock:
                in_flight = self._in_flight
                if in_flight is not None and time.monotonic() > in_flight[1]:
                    self._in_flight = None  # give up once: the tasks become reclaimable
                    log.error(
                        "batch exceeded batch_timeout_s; releasing its tasks",
                        extra={"stage": self.stage.name, "tasks": len(in_flight[0])},
                    )
                    continue
            if in_flight is None:
                continue
            entry_ids = in_flight[0]
            try:
                self.stream.touch(entry_ids)
            except redis.RedisError as exc:
                log.warning("keep-alive failed", extra={"error": str(exc)})

    def refresh_backlog(self) -> None:
        """Scrape-time gauges of this worker's stage (its KEDA/Prometheus scaling signal)."""
        pipe = self.client.pipeline(transaction=False)
        names = backlog_commands(pipe, [self.stage.name])
        with contextlib.suppress(redis.RedisError):
            record_backlog(names, pipe.execute())


@dataclass(slots=True)
class _Settled:
    """A task settled in a batch: its pipeline, its job's age when it began, and which command
    of the finishing pipeline carries its DAG step (to learn whether it ended the job)."""

    pipeline: str | None
    age_ms: int
    begun: float
    index: int = -1
    outcome: str = ""

    def at(self, index: int, outcome: str) -> _Settled:
        return _Settled(self.pipeline, self.age_ms, self.begun, index, outcome)


def load_handler(stage: StageSpec) -> Handler:
    module_name, _, class_name = stage.handler.partition(":")
    handler_cls = getattr(importlib.import_module(module_name), class_name)
    return handler_cls()


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
    workers = start_instances(spec, settings, redis.Redis.from_url(settings.redis_url), stopping)
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
