"""Submit, read, wait for and cancel jobs (DESIGN §4)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.core import keys
from services.core.imaging import UndecodableImage, decode_image, sniff_image_type
from services.core.jobs import job_view
from services.core.metrics import JOBS_REJECTED, JOBS_SUBMITTED
from services.core.pipeline import PipelineSpec
from services.gateway.deps import Gateway, gateway, pipeline_spec, tenant
from services.gateway.errors import Problem
from services.gateway.schemas import Job, JobAccepted

router = APIRouter(prefix="/v1", tags=["jobs"])

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": None, "description": desc, "content": {"application/problem+json": {}}}
    for code, desc in {
        400: "malformed request",
        401: "missing or invalid API key",
        404: "unknown job or pipeline",
        409: "idempotency conflict or job already finished",
        413: "image over the size limit",
        415: "not a JPEG, PNG or WebP image",
        422: "undecodable image or pixel count out of bounds",
        429: "backlog over the limit",
        503: "Redis unreachable",
    }.items()
}

GatewayDep = Annotated[Gateway, Depends(gateway)]
TenantDep = Annotated[str, Depends(tenant)]
SpecDep = Annotated[PipelineSpec, Depends(pipeline_spec)]


def prefer_wait(request: Request, cap: float) -> float | None:
    match = _PREFER_WAIT.search(request.headers.get("prefer", ""))
    return min(float(match.group(1)), cap) if match else None


async def read_upload(request: Request, limit: int, what: str = "image") -> bytes:
    """The upload from a raw body or a multipart ``file`` part, refusing oversize early."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise Problem(413, f"{what}_too_large", f"the body exceeds the {limit}-byte limit")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=limit + 1)
        except StarletteHTTPException as exc:  # Starlette's multipart parser refused the body
            if "maximum size" in str(exc.detail):
                too_large = f"the {what} exceeds the {limit}-byte limit"
                raise Problem(413, f"{what}_too_large", too_large) from None
            malformed = f"the multipart body is malformed: {exc.detail}"
            raise Problem(400, "bad_multipart", malformed) from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Problem(400, "missing_file", f"multipart body needs the {what} in a 'file' part")
        data = await upload.read()
    else:
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Problem(
                        413, f"{what}_too_large", f"the body exceeds the {limit}-byte limit"
                    )
                chunks.append(chunk)
        except ClientDisconnect:
            raise Problem(400, "incomplete_body", "the client closed the request early") from None
        data = b"".join(chunks)
    if len(data) > limit:
        raise Problem(413, f"{what}_too_large", f"the {what} exceeds the {limit}-byte limit")
    if not data:
        raise Problem(400, "empty_body", f"send the {what} bytes as the body or a 'file' part")
    return data


def _check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    try:
        pixels: np.ndarray = decode_image(data)
    except UndecodableImage:
        raise Problem(422, "undecodable_image", "the image could not be decoded") from None
    height, width = pixels.shape[:2]
    if width * height > max_pixels:
        raise Problem(
            422, "image_too_many_pixels", f"{width}x{height} exceeds the {max_pixels}-pixel limit"
        )
    return width, height


async def read_job(gw: Gateway, job_id: str, caller: str) -> dict[str, Any]:
    raw = await gw.redis.hgetall(keys.job(job_id))
    if not raw or raw.get(b"tenant", b"").decode() != caller:
        raise Problem(404, "job_not_found", f"no job '{job_id}' (it may have expired)")
    return job_view(raw)


async def _wait_for(gw: Gateway, job_id: str, caller: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with gw.events.watch(job_id) as done:
            view = await read_job(gw, job_id, caller)
            remaining = deadline - time.monotonic()
            if view["status"] in keys.TERMINAL or remaining <= 0:
                return view
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), remaining)


def _job_response(view: dict[str, Any], waited: float | None) -> JSONResponse:
    terminal = view["status"] in keys.TERMINAL
    headers = {"Location": f"/v1/jobs/{view['id']}"}
    if waited is not None:
        headers["Preference-Applied"] = f"wait={waited:g}"
    if terminal:
        return JSONResponse(view, status_code=200, headers=headers)
    return JSONResponse(
        _accepted(view["id"], view["status"], view["pipeline"]), status_code=202, headers=headers
    )


def _accepted(job_id: str, status: str, pipeline: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "pipeline": pipeline,
        "links": {"self": f"/v1/jobs/{job_id}"},
    }


@router.post(
    "/pipelines/{name}/jobs",
    status_code=202,
    response_model=JobAccepted,
    responses={200: {"model": Job, "description": "finished within Prefer: wait"}, **_ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/webp": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def submit_job(
    request: Request, gw: GatewayDep, caller: TenantDep, spec: SpecDep
) -> Response:
    """Submit an image; poll the returned link, or send ``Prefer: wait=N`` to get the finished
    job in this response when it completes within N seconds."""
    name = spec.name
    data = await read_upload(request, gw.settings.max_image_bytes)
    mime = sniff_image_type(data)
    if mime is None:
        JOBS_REJECTED.labels(name, "unsupported_media_type").inc()
        raise Problem(415, "unsupported_media_type", "the body is not a JPEG, PNG or WebP image")
    width, height = await run_in_threadpool(_check_pixels, data, gw.settings.max_image_pixels)

    idempotency, fingerprint = None, ""
    key = request.headers.get("idempotency-key")
    job_id = str(uuid.uuid4())
    if key:
        if len(key) > 255:
            raise Problem(400, "bad_idempotency_key", "Idempotency-Key is limited to 255 chars")
        fingerprint = hashlib.sha256(name.encode() + b"\0" + data).hexdigest()
        idempotency = (keys.idempotency(caller, key), f"{job_id} {fingerprint}")
    image_meta = {"width": width, "height": height, "content_type": mime, "bytes": len(data)}
    waited = prefer_wait(request, gw.settings.max_wait_s)
    deadline = time.monotonic() + (waited or 0.0)
    # Watching before the job exists: its completion cannot be missed, and a waiting submit
    # needs no read of the record until it is done.
    with gw.events.watch(job_id) as done:
        created = await gw.steps.create(
            job_id,
            spec,
            data,
            {"tenant": caller, "image": json.dumps(image_meta)},
            ttl_s=gw.settings.result_ttl_s,
            deadline_s=gw.settings.job_deadline_s,
            idempotency=idempotency,
            max_backlog=gw.settings.max_backlog,
        )
        if created[0] == b"busy":
            stage, depth = created[1].decode(), created[2].decode()
            JOBS_REJECTED.labels(name, "backlog_full").inc()
            raise Problem(
                429,
                "backlog_full",
                f"stage '{stage}' has {depth} queued tasks (limit "
                f"{gw.settings.max_backlog}); retry later",
                headers={"Retry-After": "2"},
            )
        if created[0] == b"exists":
            job_id, stored_fingerprint = created[1].decode().split(" ", 1)
            if stored_fingerprint != fingerprint:
                raise Problem(
                    409,
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different image or pipeline",
                )
        else:
            JOBS_SUBMITTED.labels(name).inc()
            if waited is None:
                return JSONResponse(
                    _accepted(job_id, "queued", name),
                    status_code=202,
                    headers={"Location": f"/v1/jobs/{job_id}"},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), waited)
    view = await _wait_for(gw, job_id, caller, max(0.0, deadline - time.monotonic()))
    return _job_response(view, waited)


@router.get(
    "/jobs/{job_id}", response_model=Job, responses={202: {"model": JobAccepted}, **_ERRORS}
)
async def get_job(job_id: str, request: Request, gw: GatewayDep, caller: TenantDep) -> Response:
    """The job's state, per-node timings and, once finished, its result or error.
    ``Prefer: wait=N`` long-polls until the job finishes or N seconds pass."""
    waited = prefer_wait(request, gw.settings.max_wait_s)
    if waited is None:
        return JSONResponse(await read_job(gw, job_id, caller))
    view = await _wait_for(gw, job_id, caller, waited)
    return JSONResponse(view, headers={"Preference-Applied": f"wait={waited:g}"})


@router.delete("/jobs/{job_id}", response_model=Job, responses=_ERRORS)
async def cancel_job(job_id: str, gw: GatewayDep, caller: TenantDep) -> Response:
    """Cancel a queued or running job; tasks not yet started are dropped by the workers."""
    await read_job(gw, job_id, caller)
    outcome = (await gw.steps.cancel(job_id)).decode()
    if outcome == "gone":
        raise Problem(404, "job_not_found", f"no job '{job_id}' (it may have expired)")
    if outcome != "canceled":
        state = outcome.removeprefix("terminal:")
        raise Problem(409, "job_finished", f"job '{job_id}' already {state}")
    return JSONResponse(await read_job(gw, job_id, caller))
