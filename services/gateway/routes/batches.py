"""Video and zip batches: one upload, one RQ job, one image job per frame."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.control.batches import sniff_batch_type
from services.control.queue import batch_state, batch_view, cancel_batch, enqueue_batch
from services.control.webhooks import batch_webhook_fields, enqueue_batch_delivery
from services.core import keys
from services.core.pipeline import PipelineSpec
from services.gateway.callbacks import CALLBACK_DESCRIPTION, check_callback_url
from services.gateway.deps import Gateway, gateway, pipeline_spec, tenant
from services.gateway.errors import Problem
from services.gateway.routes.jobs import read_upload
from services.gateway.schemas import Batch, BatchAccepted

router = APIRouter(prefix="/v1", tags=["batches"])
GatewayDep = Annotated[Gateway, Depends(gateway)]
TenantDep = Annotated[str, Depends(tenant)]
SpecDep = Annotated[PipelineSpec, Depends(pipeline_spec)]


def _links(batch_id: str) -> dict[str, str]:
    return {"self": f"/v1/batches/{batch_id}", "results": f"/v1/batches/{batch_id}/results"}


@router.post(
    "/pipelines/{name}/batches",
    status_code=202,
    response_model=BatchAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                "video/x-msvideo": {"schema": {"type": "string", "format": "binary"}},
                "video/webm": {"schema": {"type": "string", "format": "binary"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def submit_batch(
    request: Request,
    gw: GatewayDep,
    caller: TenantDep,
    spec: SpecDep,
    frame_stride: Annotated[int, Query(ge=1, description="use every n-th video frame")] = 1,
    max_frames: Annotated[int | None, Query(ge=1, description="stop after this many")] = None,
    callback_url: Annotated[str | None, Query(description=CALLBACK_DESCRIPTION)] = None,
) -> Response:
    """Submit a video (mp4/avi/webm) or a zip of images; each frame becomes an image job on the
    pipeline, and the results come back as JSON Lines in frame order. With ``callback_url``,
    the finished batch is POSTed there when it ends."""
    cap = gw.settings.max_batch_frames
    if max_frames is not None and max_frames > cap:
        raise Problem(422, "too_many_frames", f"max_frames is limited to {cap}")
    data = await read_upload(request, gw.settings.max_upload_bytes, what="upload")
    kind = sniff_batch_type(data)
    if kind is None:
        raise Problem(
            415,
            "unsupported_media_type",
            "the body is not an mp4, avi or webm video, nor a zip of images",
        )
    if callback_url is not None:
        await check_callback_url(gw.settings, caller, callback_url)
    batch_id = str(uuid.uuid4())
    callback = batch_webhook_fields(batch_id, callback_url) if callback_url is not None else {}
    ttl = gw.settings.result_ttl_s
    pipe = gw.redis.pipeline(transaction=True)
    pipe.hset(
        keys.batch(batch_id),
        mapping={
            "id": batch_id,
            "pipeline": spec.name,
            "tenant": caller,
            "kind": kind,
            "frame_stride": frame_stride,
            "max_frames": max_frames or cap,
            "created_at": int(time.time() * 1000),
            "bytes": len(data),
            **callback,
        },
    )
    pipe.expire(keys.batch(batch_id), ttl)
    pipe.set(keys.upload(batch_id), data, ex=ttl)
    await pipe.execute()
    await run_in_threadpool(enqueue_batch, gw.sync_redis, batch_id, gw.settings)
    if callback:
        await run_in_threadpool(enqueue_batch_delivery, gw.sync_redis, batch_id, gw.settings)
    body = {
        "id": batch_id,
        "status": "queued",
        "pipeline": spec.name,
        "kind": kind,
        "links": _links(batch_id),
    }
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/batches/{batch_id}"})


async def batch_record(gw: Gateway, batch_id: str, caller: str) -> dict[str, str]:
    raw = await gw.redis.hgetall(keys.batch(batch_id))
    record = {k.decode(): v.decode() for k, v in raw.items()}
    if not record or record.get("tenant") != caller:
        raise Problem(404, "batch_not_found", f"no batch '{batch_id}' (it may have expired)")
    return record


@router.get("/batches/{batch_id}", response_model=Batch)
async def get_batch(batch_id: str, gw: GatewayDep, caller: TenantDep) -> dict[str, Any]:
    """Status and progress of a batch; results are readable while it runs."""
    return await read_batch(gw, batch_id, await batch_record(gw, batch_id, caller))


async def read_batch(gw: Gateway, batch_id: str, record: dict[str, str]) -> dict[str, Any]:
    """The API's view of a batch: its record plus the control plane's progress."""
    state = await run_in_threadpool(batch_state, gw.sync_redis, batch_id)
    return batch_view(batch_id, record, state)


@router.delete("/batches/{batch_id}", response_model=Batch)
async def delete_batch(batch_id: str, gw: GatewayDep, caller: TenantDep) -> dict[str, Any]:
    """Cancel a queued or running batch: its frame jobs still in flight are canceled and its
    upload is deleted; the result lines already written stay readable until they expire."""
    await batch_record(gw, batch_id, caller)
    ttl = gw.settings.result_ttl_s
    outcome = await run_in_threadpool(cancel_batch, gw.sync_redis, batch_id, ttl)
    if outcome == "expired":
        raise Problem(404, "batch_not_found", f"no batch '{batch_id}' (it may have expired)")
    if outcome != "canceled":
        raise Problem(409, "batch_finished", f"batch '{batch_id}' already {outcome}")
    return await get_batch(batch_id, gw, caller)


@router.get(
    "/batches/{batch_id}/results",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def batch_results(batch_id: str, gw: GatewayDep, caller: TenantDep) -> StreamingResponse:
    """One JSON line per finished frame, in frame order: ``frame``, ``timestamp_ms`` (video) or
    ``name`` (zip), ``status``, and the pipeline's outputs or ``error``."""
    await batch_record(gw, batch_id, caller)
    lines = await gw.redis.hgetall(keys.batch_results(batch_id))
    ordered = [lines[k] for k in sorted(lines, key=int)]

    async def body() -> AsyncIterator[bytes]:
        for line in ordered:
            yield line + b"\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")
