"""Server-sent events: a job's or a batch's state as it changes (public API, docs/events.md).

Every event is derived from the record in Redis (the job hash, the batch's progress and result
lines), re-read whenever a notification arrives, so a stream can never show a state the record
never had, and a lost notification only delays an event. Fast transitions may coalesce: a node
that queued, ran and finished between two reads is one ``node`` event carrying its final state.

Job streams resume: each event's id is an opaque token of the state the client has seen, and a
reconnect with ``Last-Event-ID`` gets only what changed since. The last event of every stream has
the id ``end``; a reconnect carrying it gets ``204 No Content``, which tells a browser's
EventSource to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Header, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.core import keys
from services.core.jobs import is_terminal
from services.gateway.dataplane import read_job
from services.gateway.deps import Gateway, gateway, tenant
from services.gateway.errors import Problem
from services.gateway.routes.batches import batch_record, read_batch

router = APIRouter(prefix="/v1", tags=["events"])
GatewayDep = Annotated[Gateway, Depends(gateway)]
TenantDep = Annotated[str, Depends(tenant)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]

END_ID = "end"
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an event stream (text/event-stream); see docs/events.md",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    204: {"description": "Last-Event-ID was `end`: the stream is over, do not reconnect"},
    401: {"description": "missing or invalid API key"},
    404: {"description": "unknown job or batch (or another tenant's)"},
    503: {"description": "too many open streams on this gateway, or Redis unreachable"},
}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def node_codes(view: dict[str, Any]) -> list[str]:
    """Each node's state as ``{status letter}{attempts}`` in DAG order: what an event id
    records, so a resumed stream knows which node changes the client has not seen."""
    return [f"{n['status'][0]}{n['attempts']}" for n in view["nodes"].values()]


def state_token(status: str, codes: list[str]) -> str:
    return f"{status[0]}.{'-'.join(codes)}"


def parse_token(token: str | None, nodes: int) -> list[str] | None:
    """The node codes an event id names, or None for a fresh stream (no id, or one that is not
    a token of this job: the client then gets a full ``state`` event)."""
    if not token or "." not in token:
        return None
    codes = token.split(".", 1)[1].split("-")
    return codes if len(codes) == nodes else None


def job_events(view: dict[str, Any], seen: list[str] | None) -> list[ServerSentEvent]:
    """The events that take a client from ``seen`` (None: nothing yet) to ``view``."""
    codes, terminal = node_codes(view), is_terminal(view["status"])
    if seen is None:
        if terminal:
            return [ServerSentEvent(_json(view), event="end", id=END_ID)]
        return [ServerSentEvent(_json(view), event="state", id=state_token(view["status"], codes))]
    events, current = [], list(seen)
    for i, (name, node) in enumerate(view["nodes"].items()):
        if codes[i] != current[i]:
            current[i] = codes[i]
            data = {"job": view["id"], "job_status": view["status"], "node": name, **node}
            token = state_token(view["status"], current)
            events.append(ServerSentEvent(_json(data), event="node", id=token))
    if terminal:
        events.append(ServerSentEvent(_json(view), event="end", id=END_ID))
    return events


def _problem_event(code: str, detail: str) -> ServerSentEvent:
    """Sent as ``problem`` (EventSource reserves ``error`` for its own connection errors)."""
    return ServerSentEvent(_json({"code": code, "detail": detail}), event="problem")


async def _woken(wake: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), max(timeout_s, 0.0))


def _check_capacity(gw: Gateway) -> None:
    limit = gw.settings.events_max_streams
    if gw.events.streams >= limit:
        raise Problem(
            503,
            "too_many_streams",
            f"this gateway has {limit} event streams open (POSEFLEET_EVENTS_MAX_STREAMS)",
            headers={"Retry-After": "5"},
        )


def _stream(gw: Gateway, events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(events, ping=gw.settings.events_keepalive_s, sep="\n")


@router.get("/jobs/{job_id}/events", response_class=Response, responses=_RESPONSES)
async def job_event_stream(
    job_id: str, gw: GatewayDep, caller: TenantDep, last_event_id: LastEventId = None
) -> Response:
    """The job's state as it changes: ``state`` (the whole job, first), ``node`` (a node was
    queued, started, retried or finished, with its timings), then ``end`` (the finished job,
    with its result or error) — the last event; the server then closes the stream."""
    if last_event_id == END_ID:
        return Response(status_code=204)
    view = await read_job(gw, job_id, caller)
    _check_capacity(gw)
    seen = parse_token(last_event_id, len(view["nodes"]))

    async def stream() -> AsyncIterator[ServerSentEvent]:
        nonlocal seen
        yield ServerSentEvent(retry=gw.settings.events_retry_ms)
        closes_at = time.monotonic() + gw.settings.events_max_stream_s
        wake = asyncio.Event()
        async with gw.events.follow(keys.job_events(job_id), wake):
            with gw.events.watch(job_id, wake):
                while True:
                    wake.clear()
                    try:
                        view = await read_job(gw, job_id, caller)
                    except Problem as exc:  # expired while streaming
                        yield _problem_event(exc.code, exc.detail)
                        return
                    except (redis.ConnectionError, redis.TimeoutError):
                        yield _problem_event("store_unavailable", "Redis is unreachable")
                        return
                    for event in job_events(view, seen):
                        yield event
                    if is_terminal(view["status"]):
                        return
                    seen = node_codes(view)
                    remaining = closes_at - time.monotonic()
                    if remaining <= 0:
                        return  # the client reconnects with Last-Event-ID and resumes
                    await _woken(wake, remaining)

    return _stream(gw, stream())


@router.get("/batches/{batch_id}/events", response_class=Response, responses=_RESPONSES)
async def batch_event_stream(
    batch_id: str, gw: GatewayDep, caller: TenantDep, last_event_id: LastEventId = None
) -> Response:
    """The batch as it runs: ``progress`` (the same body as ``GET /v1/batches/{id}``, whenever
    it changes), ``frame`` (one finished frame's result line, as ``/results`` has it), then
    ``end`` (the final progress). A reconnect starts over: frames come again, and clients
    de-duplicate by ``frame``."""
    if last_event_id == END_ID:
        return Response(status_code=204)
    await batch_record(gw, batch_id, caller)
    _check_capacity(gw)
    results = keys.batch_results(batch_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=gw.settings.events_retry_ms)
        closes_at = time.monotonic() + gw.settings.events_max_stream_s
        sent: set[int] = set()
        last: dict[str, Any] | None = None
        wake = asyncio.Event()
        async with gw.events.follow(keys.batch_events(batch_id), wake):
            while True:
                wake.clear()
                try:
                    state = await read_batch(gw, batch_id, await batch_record(gw, batch_id, caller))
                    if await gw.redis.hlen(results) > len(sent):
                        new = sorted({int(f) for f in await gw.redis.hkeys(results)} - sent)
                        lines = await gw.redis.hmget(results, [str(i) for i in new])
                        for index, line in zip(new, lines, strict=True):
                            if line is not None:
                                sent.add(index)
                                yield ServerSentEvent(line.decode(), event="frame")
                except Problem as exc:
                    yield _problem_event(exc.code, exc.detail)
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    yield _problem_event("store_unavailable", "Redis is unreachable")
                    return
                if is_terminal(state["status"]):
                    yield ServerSentEvent(_json(state), event="end", id=END_ID)
                    return
                if state != last:
                    yield ServerSentEvent(_json(state), event="progress")
                    last = state
                remaining = closes_at - time.monotonic()
                if remaining <= 0:
                    return
                await _woken(wake, min(gw.settings.events_batch_poll_s, remaining))

    return _stream(gw, stream())
