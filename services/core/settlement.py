"""Settling a batch with the DAG steps: every task begun in one round trip, turned into a runnable
``Task`` or settled at once when it must not run, then every outcome completed or failed in one
round trip, and counted.

This is the Lua protocol's only client in the worker (the replies are typed by
services.core.dag). What runs the tasks is passed in, so settlement knows nothing of handlers and
the handler knows nothing of Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from services.core.dag import (
    DagSteps,
    Exhausted,
    Missing,
    Run,
    Skip,
    parse_begin,
    parse_settled,
)
from services.core.handler import Task, TaskError
from services.core.metrics import (
    JOB_DURATION,
    PIPELINE_COMPUTE,
    STAGE_BATCH_SIZE,
    STAGE_QUEUE_WAIT,
    STAGE_TASKS,
)
from services.core.pipeline import REQUEST_PREFIX, StageSpec
from services.core.streams import Delivery, StageStream

log = logging.getLogger("posefleet.worker")

# A handler's answer for one task: its outputs, or why it has none.
Outcome = dict[str, Any] | BaseException
Execute = Callable[[list[Task]], list[Outcome]]

_MAX_CACHED_DAGS = 64


@dataclass(slots=True)
class _Step:
    """One queued complete/fail step: which command of the finishing pipeline carries it, what
    it counts as, and — for tasks that ran — the job's pipeline and age, to time the job if
    this step ends it."""

    index: int
    outcome: str
    pipeline: str | None = None
    age_ms: int = 0
    begun: float = 0.0


@dataclass(slots=True)
class _Runnable:
    delivery: Delivery
    task: Task
    pipeline: str
    age_ms: int
    begun: float


class Settlement:
    def __init__(
        self,
        client: redis.Redis,
        stream: StageStream,
        stage: StageSpec,
        pool: str,
        max_attempts: int,
        keep_input_s: int = 0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.stage = stage
        self.consumer = stream.consumer
        self.pool = pool
        self.max_attempts = max_attempts
        # How long a dead-lettered job keeps its request image, so a replay can re-run a node
        # that reads it (posefleet dlq replay).
        self.keep_input_s = keep_input_s
        self.steps = DagSteps(client)
        self._dags: dict[bytes, dict[str, Any]] = {}

    def settle(self, batch: list[Delivery], execute: Execute) -> None:
        """Begin, run (through ``execute``) and finish every delivery of the batch. A task whose
        begin step Redis refused (full, read-only…) stays pending and is reclaimed later, while
        the tasks that did begin still run now; the refusal is raised at the end."""
        pipe = self.client.pipeline(transaction=False)
        for d in batch:
            self.steps.begin(d.job_id, d.node, self.consumer, self.pool, self.max_attempts, pipe)
        begun = pipe.execute(raise_on_error=False)

        finish = self.client.pipeline(transaction=False)
        steps: list[_Step] = []
        runnable: list[_Runnable] = []
        refused: list[Exception] = []
        for d, raw in zip(batch, begun, strict=True):
            if isinstance(raw, Exception):
                refused.append(raw)
                continue
            ready = self._admit(d, parse_begin(raw), finish, steps)
            if ready is not None:
                runnable.append(ready)
        if runnable:
            STAGE_BATCH_SIZE.labels(self.stage.name).observe(len(runnable))
            started = time.perf_counter()
            outcomes = execute([r.task for r in runnable])
            compute_ms = (time.perf_counter() - started) * 1000
            share_s = compute_ms / 1000 / len(runnable)
            for ready, outcome in zip(runnable, outcomes, strict=True):
                steps.append(self._finish(ready, outcome, compute_ms, finish))
                PIPELINE_COMPUTE.labels(ready.pipeline, self.pool).inc(share_s)
        self._observe(steps, finish.execute())
        if refused:
            raise refused[0]  # the worker loop backs off

    def _admit(self, d: Delivery, reply: Any, finish: Any, steps: list[_Step]) -> _Runnable | None:
        """A runnable task, or ``None`` when the delivery was settled here instead."""
        if isinstance(reply, Run):
            STAGE_QUEUE_WAIT.labels(self.stage.name).observe(reply.queue_ms / 1000)
            task, pipeline = self._task(d, reply)
            return _Runnable(d, task, pipeline, reply.age_ms, time.monotonic())
        if isinstance(reply, Skip):
            self.stream.ack([d.entry_id], pipe=finish)
            STAGE_TASKS.labels(self.stage.name, self.pool, "skipped").inc()
            return None
        if isinstance(reply, Exhausted):
            message = (
                f"the task was delivered {reply.attempts} times without finishing (worker "
                "crashes or timeouts); moved to dead letters"
            )
            error = self._error("max_attempts_exceeded", d, message)
            outcome, reason = "dead_lettered", "max_attempts_exceeded"
        else:
            assert isinstance(reply, Missing)
            error = self._error("missing_input", d, f"input {reply.ref} is no longer stored")
            outcome, reason = "failed", ""
        steps.append(_Step(len(finish.command_stack), outcome))
        self.steps.fail(
            d.job_id,
            d.node,
            self.stage.name,
            d.entry_id,
            error,
            dead_letter_reason=reason,
            client=finish,
            keep_input_s=self.keep_input_s,
        )
        return None

    def _error(self, code: str, d: Delivery, message: str) -> dict[str, Any]:
        return {"code": code, "node": d.node, "stage": self.stage.name, "message": message}

    def _task(self, d: Delivery, reply: Run) -> tuple[Task, str]:
        dag = self._dags.get(reply.dag)
        if dag is None:
            if len(self._dags) >= _MAX_CACHED_DAGS:
                self._dags.clear()
            dag = self._dags[reply.dag] = json.loads(reply.dag)
        node = dag["nodes"][d.node]
        by_ref = {
            ref: raw if ref.startswith(REQUEST_PREFIX) else json.loads(raw)
            for ref, raw in zip(node["refs"], reply.values, strict=True)
        }
        inputs = {
            name: [by_ref[r] for r in ref] if isinstance(ref, list) else by_ref[ref]
            for name, ref in node["inputs"].items()
        }
        task = Task(job_id=d.job_id, node=d.node, inputs=inputs, params=node["params"])
        return task, dag["pipeline"]

    def _finish(self, ready: _Runnable, outcome: Outcome, compute_ms: float, finish: Any) -> _Step:
        d = ready.delivery
        step = _Step(
            len(finish.command_stack), "succeeded", ready.pipeline, ready.age_ms, ready.begun
        )
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
                return step
            except (TypeError, ValueError) as exc:  # not JSON-serialisable: a handler bug
                outcome = exc
        code = "invalid_input" if isinstance(outcome, TaskError) else "stage_error"
        if code == "stage_error":
            log.error(
                "task failed",
                exc_info=outcome,
                extra={"stage": self.stage.name, "job": d.job_id, "node": d.node},
            )
        error = self._error(code, d, str(outcome))
        self.steps.fail(d.job_id, d.node, self.stage.name, d.entry_id, error, client=finish)
        step.outcome = "failed"
        return step

    def _observe(self, steps: list[_Step], replies: list[Any]) -> None:
        """Count each settled task, and time each job whose last step this batch ran."""
        for step in steps:
            STAGE_TASKS.labels(self.stage.name, self.pool, step.outcome).inc()
            ended = parse_settled(replies[step.index]).ended_job
            if step.pipeline is not None and ended is not None:
                seconds = step.age_ms / 1000 + time.monotonic() - step.begun
                JOB_DURATION.labels(step.pipeline, ended).observe(seconds)
