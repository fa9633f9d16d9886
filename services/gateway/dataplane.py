"""The gateway's one data plane: validate an image, submit it as a job, read, wait for and cancel
jobs. Every protocol the gateway speaks is a thin adapter over these functions (KServe's
``dataplane.py`` idea), so validation, limits, tenancy, idempotency, backpressure and metrics are
the same whichever way a request came in. Errors are ``Problem``s; an adapter maps them onto its
protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from services.core import keys
from services.core.dag import Busy, Exists
from services.core.imaging import (
    ImageLimits,
    ImageRefused,
    check_complete,
    check_image,
    sniff_image_type,
)
from services.core.jobs import is_terminal, job_view
from services.core.metrics import JOBS_REJECTED, JOBS_SUBMITTED
from services.core.pipeline import PipelineSpec
from services.core.settings import Settings
from services.core.submit import ImageMeta, image_fingerprint, submit_image_job
from services.gateway.callbacks import check_callback_url
from services.gateway.deps import Gateway
from services.gateway.errors import Problem

# Images up to this size are checked on the event loop: their check (header, PNG CRCs or a
# JPEG's end marker) takes under 0.2 ms, less than the hop to a worker thread and back.
_CHECK_INLINE_BYTES = 512 * 1024


def _check_pixels(data: bytes, limits: ImageLimits) -> tuple[int, int]:
    """The limits from the header and the data complete (PNG CRCs, a JPEG's end marker), with
    no pixel decoded: the stages decode; decoding here too cost a full decode per image for a
    guarantee the checks give at a fraction of it (docs/performance.md)."""
    try:
        header = check_image(data, limits)
        check_complete(data, header)
    except ImageRefused as exc:
        status = 413 if exc.code == "image_too_large" else 422
        raise Problem(status, exc.code, str(exc)) from None
    return header.width, header.height


async def validate_image(pipeline: str, data: bytes, settings: Settings) -> ImageMeta:
    """415 for what is not a JPEG, PNG or WebP; 422 (413 for bytes) for what cannot or must not
    be decoded: the header's size is checked against the limits before any pixel is decoded."""
    mime = sniff_image_type(data)
    if mime is None:
        JOBS_REJECTED.labels(pipeline, "unsupported_media_type").inc()
        raise Problem(415, "unsupported_media_type", "the body is not a JPEG, PNG or WebP image")
    limits = ImageLimits.of(settings)
    if len(data) <= _CHECK_INLINE_BYTES:
        width, height = _check_pixels(data, limits)
    else:  # a CRC over megabytes would hold up every other request on the event loop
        width, height = await run_in_threadpool(_check_pixels, data, limits)
    return ImageMeta(width, height, mime, len(data))


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission's outcome: the job's id, whether this call created it (an idempotent repeat
    did not), and its view — read after the wait, or for a repeat; ``None`` for a new job
    submitted without waiting."""

    job_id: str
    created: bool
    view: dict[str, Any] | None


async def submit(
    gw: Gateway,
    spec: PipelineSpec,
    data: bytes,
    caller: str,
    *,
    idempotency_key: str | None = None,
    wait_s: float | None = None,
    callback_url: str | None = None,
) -> Submitted:
    """Validate, create the job (admission control inside the same atomic step) and, with
    ``wait_s``, wait for it to end. 429 when a root stage's backlog is full; 409 when the
    idempotency key was used with another image or pipeline; 422 when the fleet must not call
    ``callback_url`` (it is POSTed the job when it ends)."""
    if idempotency_key is not None and len(idempotency_key) > 255:
        raise Problem(400, "bad_idempotency_key", "Idempotency-Key is limited to 255 chars")
    meta = await validate_image(spec.name, data, gw.settings)
    extra = {}
    if callback_url is not None:
        await check_callback_url(gw.settings, caller, callback_url)
        extra["callback"] = callback_url
    job_id = str(uuid.uuid4())
    deadline = time.monotonic() + (wait_s or 0.0)
    # Watching before the job exists: its completion cannot be missed, and a waiting submit
    # needs no read of the record until it is done.
    with gw.events.watch(job_id) as done:
        reply = await submit_image_job(
            gw.steps,
            spec,
            data,
            meta,
            job_id=job_id,
            tenant=caller,
            settings=gw.settings,
            idempotency_key=idempotency_key,
            extra=extra,
            max_backlog=gw.settings.max_backlog,
        )
        if isinstance(reply, Busy):
            JOBS_REJECTED.labels(spec.name, "backlog_full").inc()
            raise Problem(
                429,
                "backlog_full",
                f"stage '{reply.stage}' has {reply.depth} queued tasks (limit "
                f"{gw.settings.max_backlog}); retry later",
                headers={"Retry-After": "2"},
            )
        created = not isinstance(reply, Exists)
        if not created:
            if reply.fingerprint != image_fingerprint(spec.name, data):
                raise Problem(
                    409,
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different image or pipeline",
                )
            job_id = reply.job_id
        else:
            JOBS_SUBMITTED.labels(spec.name).inc()
            if wait_s is None:
                return Submitted(job_id, True, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), wait_s)
    # An idempotent repeat answers with the job as it is now, like a zero-second wait.
    view = await wait_for(gw, job_id, caller, max(0.0, deadline - time.monotonic()))
    return Submitted(job_id, created, view)


async def read_job(gw: Gateway, job_id: str, caller: str) -> dict[str, Any]:
    """The job as the API shows it; another tenant's job is as absent as an expired one."""
    raw = await gw.reads.hgetall(keys.job(job_id))
    if not raw or raw.get(b"tenant", b"").decode() != caller:
        raise Problem(404, "job_not_found", f"no job '{job_id}' (it may have expired)")
    return job_view(raw)


async def wait_for(gw: Gateway, job_id: str, caller: str, timeout_s: float) -> dict[str, Any]:
    """The job once it ended, or as it is when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        with gw.events.watch(job_id) as done:
            view = await read_job(gw, job_id, caller)
            remaining = deadline - time.monotonic()
            if is_terminal(view["status"]) or remaining <= 0:
                return view
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), remaining)


async def cancel(gw: Gateway, job_id: str, caller: str) -> dict[str, Any]:
    """Cancel a job that has not ended; 404 when it is not the caller's, 409 when it ended."""
    await read_job(gw, job_id, caller)
    outcome = await gw.steps.cancel(job_id)
    if outcome.gone:
        raise Problem(404, "job_not_found", f"no job '{job_id}' (it may have expired)")
    if not outcome.done:
        raise Problem(409, "job_finished", f"job '{job_id}' already {outcome.already}")
    return await read_job(gw, job_id, caller)
