"""The DAG engine's atomic steps, each one Lua script (services/core/lua/*.lua), and their replies
as small typed results — decoded here and nowhere else.

Each script reads and writes one job record, so it is atomic without locks: fan-out (one node
releasing several successors) and fan-in (a successor counting its finished inputs down to zero)
are counters in the job hash, and a redelivered task finds its node already done and changes
nothing. The same wrapper serves the sync client (workers, control plane) and the asyncio client
(gateway): called directly, a step returns its typed reply (awaitable with the asyncio client);
given ``client=`` a pipeline, it only queues the script, and the caller decodes the pipeline's
replies with the ``parse_*`` functions (one round trip for a whole batch).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, TypeVar

from services.core import keys
from services.core.jobs import JobState, new_record
from services.core.pipeline import PipelineSpec

T = TypeVar("T")


def _script(name: str, *libraries: str) -> str:
    lua = resources.files("services.core").joinpath("lua")
    return "\n".join(lua.joinpath(f"{n}.lua").read_text() for n in (*libraries, name))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- create.lua ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Created:
    created_ms: int


@dataclass(frozen=True, slots=True)
class Exists:
    """The idempotency key was used before: the job it made, and what it was made from."""

    job_id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Busy:
    """A root stage already holds ``max_backlog`` tasks: admission refused, nothing written."""

    stage: str
    depth: int


def parse_create(raw: list[Any]) -> Created | Exists | Busy:
    kind = _text(raw[0])
    if kind == "created":
        return Created(int(raw[1]))
    if kind == "exists":
        job_id, _, fingerprint = _text(raw[1]).partition(" ")
        return Exists(job_id, fingerprint)
    return Busy(_text(raw[1]), int(raw[2]))


# -- begin.lua -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Run:
    """The task may run: its attempt number, queue time and job age (Redis clock, ms), the
    job's compiled DAG and the node's input values in the DAG's ``refs`` order."""

    attempts: int
    queue_ms: int
    age_ms: int
    dag: bytes
    values: list[bytes]


class SkipReason(StrEnum):
    DUPLICATE = "duplicate"  # the node already succeeded (a redelivery)
    TERMINAL = "terminal"  # the job ended (failed, canceled, …)
    GONE = "gone"  # the job record expired
    EXPIRED = "expired"  # the job passed its deadline now; begin.lua ended it


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to run: ack the delivery and move on."""

    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Exhausted:
    """Delivered more than ``max_attempts`` times: dead-letter it and fail the job."""

    attempts: int


@dataclass(frozen=True, slots=True)
class Missing:
    """An upstream output is no longer stored (only expiry can cause it): fail the job."""

    ref: str


BeginReply = Run | Skip | Exhausted | Missing


def parse_begin(raw: list[Any]) -> BeginReply:
    kind = _text(raw[0])
    if kind == "run":
        return Run(int(raw[1]), int(raw[2]), int(raw[3]), raw[4], list(raw[5:]))
    if kind == "exhausted":
        return Exhausted(int(raw[1]))
    if kind == "missing":
        return Missing(_text(raw[1]))
    return Skip(SkipReason(kind))


# -- complete.lua and fail.lua ---------------------------------------------------------------
class Settled(StrEnum):
    """What a complete or fail step did to the job."""

    OK = "ok"  # node stored, job still running
    FINISHED = "finished"  # this node was the last: the job succeeded
    FAILED = "failed"  # the job failed with this node's error
    DUPLICATE = "duplicate"  # the node had already succeeded; nothing changed
    TERMINAL = "terminal"  # the job had already ended; only the task was acked
    GONE = "gone"  # the job record expired; only the task was acked

    @property
    def ended_job(self) -> JobState | None:
        """The state this step put the job in, when it was the step that ended it."""
        return {Settled.FINISHED: JobState.SUCCEEDED, Settled.FAILED: JobState.FAILED}.get(self)


def parse_settled(raw: bytes | str) -> Settled:
    return Settled(_text(raw))


# -- cancel.lua ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Canceled:
    """``canceled`` when this call canceled the job; otherwise the state it had already
    reached, or ``None`` when the job is gone."""

    already: JobState | None = None
    gone: bool = False

    @property
    def done(self) -> bool:
        return not self.gone and self.already is None


def parse_cancel(raw: bytes | str) -> Canceled:
    text = _text(raw)
    if text == "gone":
        return Canceled(gone=True)
    if text.startswith("terminal:"):
        return Canceled(already=JobState(text.removeprefix("terminal:")))
    return Canceled()


# -- replay.lua ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Replayed:
    """``outcome`` is ``replayed`` (``detail``: the nodes enqueued) or why nothing changed:
    ``not_found``, ``job_expired``, ``not_failed_here``, ``inputs_gone``."""

    outcome: str
    detail: str


def parse_replay(raw: list[Any]) -> Replayed:
    return Replayed(_text(raw[0]), _text(raw[1]))


def _typed(raw: Any, parse: Callable[[Any], T], client: Any) -> T | Awaitable[T] | None:
    """A direct call's reply, decoded (awaitable with the asyncio client); nothing for a
    pipelined call, whose reply the caller decodes after executing the pipeline."""
    if client is not None:
        return None
    if inspect.isawaitable(raw):

        async def decoded() -> T:
            return parse(await raw)

        return decoded()
    return parse(raw)


class DagSteps:
    def __init__(self, client: Any) -> None:
        self._create = client.register_script(_script("create"))
        self._begin = client.register_script(_script("begin", "callbacks"))
        self._complete = client.register_script(_script("complete", "stats", "callbacks"))
        self._fail = client.register_script(_script("fail", "stats", "callbacks"))
        self._cancel = client.register_script(_script("cancel", "callbacks"))
        self._replay = client.register_script(_script("replay"))

    def create(
        self,
        job_id: str,
        spec: PipelineSpec,
        image: bytes,
        fields: dict[str, str],
        *,
        ttl_s: int,
        deadline_s: float,
        idempotency: tuple[str, str] | None = None,
        max_backlog: int = 0,
        client: Any = None,
    ) -> Any:
        """Create the record, store the image and enqueue the root nodes: ``Created``,
        ``Exists`` (the idempotency key's earlier job) or ``Busy`` (admission refused)."""
        idem_key, idem_value = idempotency or ("", "")
        pairs = [x for kv in new_record(spec, fields).items() for x in kv]
        roots = [x for n in spec.roots() for x in (n, spec.nodes[n].stage)]
        raw = self._create(
            keys=[keys.job(job_id), keys.blob(job_id), idem_key or keys.job(job_id)],
            args=[
                job_id,
                image,
                ttl_s,
                deadline_s,
                idem_value,
                keys.STREAM_PREFIX,
                max_backlog,
                len(pairs) // 2,
                *pairs,
                *roots,
            ],
            client=client,
        )
        return _typed(raw, parse_create, client)

    def begin(
        self, job_id: str, node: str, worker: str, pool: str, max_attempts: int, client: Any = None
    ) -> Any:
        """Start a task: a ``BeginReply``."""
        raw = self._begin(
            keys=[keys.job(job_id), keys.blob(job_id), keys.CALLBACKS_STREAM],
            args=[node, worker, pool, max_attempts, keys.EVENTS_CHANNEL],
            client=client,
        )
        return _typed(raw, parse_begin, client)

    def complete(
        self,
        job_id: str,
        node: str,
        stage: str,
        entry_id: str,
        outputs: dict[str, Any],
        compute_ms: float,
        client: Any = None,
    ) -> Any:
        """Store a node's outputs and release its successors: a ``Settled``. Raises
        ``TypeError``/``ValueError`` before touching Redis if an output is not JSON."""
        pairs: list[str] = []
        for field, value in outputs.items():
            pairs += [field, json.dumps(value, separators=(",", ":"), allow_nan=False)]
        raw = self._complete(
            keys=[
                keys.job(job_id),
                keys.blob(job_id),
                keys.stream(stage),
                keys.STATS_PREFIX,
                keys.CALLBACKS_STREAM,
            ],
            args=[
                node,
                round(compute_ms, 3),
                keys.group(stage),
                entry_id,
                keys.STREAM_PREFIX,
                keys.EVENTS_CHANNEL,
                *pairs,
            ],
            client=client,
        )
        return _typed(raw, parse_settled, client)

    def fail(
        self,
        job_id: str,
        node: str,
        stage: str,
        entry_id: str,
        error: dict[str, Any],
        dead_letter_reason: str = "",
        client: Any = None,
        keep_input_s: int = 0,
    ) -> Any:
        """Fail the job with ``error`` (the first failure wins), optionally dead-lettering the
        task: a ``Settled``. ``keep_input_s``: how long a dead-lettered job keeps its request
        image, so that a replay can re-run a node that reads it."""
        raw = self._fail(
            keys=[
                keys.job(job_id),
                keys.blob(job_id),
                keys.stream(stage),
                keys.dead(stage),
                keys.STATS_PREFIX,
                keys.CALLBACKS_STREAM,
            ],
            args=[
                node,
                job_id,
                keys.group(stage),
                entry_id,
                json.dumps(error),
                keys.EVENTS_CHANNEL,
                dead_letter_reason,
                keep_input_s,
            ],
            client=client,
        )
        return _typed(raw, parse_settled, client)

    def cancel(self, job_id: str, client: Any = None) -> Any:
        """Cancel a job that has not ended: a ``Canceled``."""
        raw = self._cancel(
            keys=[keys.job(job_id), keys.blob(job_id), keys.CALLBACKS_STREAM],
            args=[keys.EVENTS_CHANNEL],
            client=client,
        )
        return _typed(raw, parse_cancel, client)

    def replay(
        self,
        stage: str,
        entry_id: str,
        job_id: str,
        by: str,
        *,
        ttl_s: int,
        deadline_s: float,
        client: Any = None,
    ) -> Any:
        """Put the job a dead letter failed back to running (see replay.lua): a ``Replayed``."""
        raw = self._replay(
            keys=[keys.dead(stage), keys.job(job_id), keys.blob(job_id)],
            args=[entry_id, by, keys.STREAM_PREFIX, deadline_s, ttl_s, job_id],
            client=client,
        )
        return _typed(raw, parse_replay, client)
