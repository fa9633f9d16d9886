"""The job API's HTTP surface: submit, read, wait for and cancel jobs over the data plane."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.core.jobs import JobState, is_terminal
from services.core.pipeline import PipelineSpec
from services.gateway import dataplane
from services.gateway.callbacks import CALLBACK_DESCRIPTION
from services.gateway.deps import Gateway, gateway, pipeline_spec, tenant
from services.gateway.errors import Problem, problem_responses
from services.gateway.responses import FastJSONResponse as JSONResponse
from services.gateway.schemas import Job, JobAccepted

router = APIRouter(prefix="/v1", tags=["jobs"])

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_ERRORS = problem_responses(
    {
        400: "malformed request",
        401: "missing or invalid API key",
        404: "unknown job or pipeline",
        409: "idempotency conflict or job already finished",
        413: "image over the size limit (image_too_large)",
        415: "not a JPEG, PNG or WebP image",
        422: "image refused from its header or decoder, before any stage sees it "
        "(docs/limits.md): undecodable_image, image_too_many_pixels, image_side_too_long, "
        "image_aspect_too_extreme; callback_url not allowed (callback_not_allowed)",
        429: "backlog over the limit",
        503: "job store full (store_full), busy (store_busy) or unavailable (store_unavailable)",
    }
)

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
        data = await read_body(request, limit, what)
    if len(data) > limit:
        raise Problem(413, f"{what}_too_large", f"the {what} exceeds the {limit}-byte limit")
    if not data:
        raise Problem(400, "empty_body", f"send the {what} bytes as the body or a 'file' part")
    return data


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The raw body, refused with 413 as soon as it grows past ``limit`` bytes."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"{what}_too_large", f"the body exceeds the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem(400, "incomplete_body", "the client closed the request early") from None
    return b"".join(chunks)


def _job_response(view: dict[str, Any], waited: float | None) -> JSONResponse:
    terminal = is_terminal(view["status"])
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
    request: Request,
    gw: GatewayDep,
    caller: TenantDep,
    spec: SpecDep,
    callback_url: Annotated[str | None, Query(description=CALLBACK_DESCRIPTION)] = None,
) -> Response:
    """Submit an image; poll the returned link, or send ``Prefer: wait=N`` to get the finished
    job in this response when it completes within N seconds."""
    data = await read_upload(request, gw.settings.max_image_bytes)
    waited = prefer_wait(request, gw.settings.max_wait_s)
    outcome = await dataplane.submit(
        gw,
        spec,
        data,
        caller,
        idempotency_key=request.headers.get("idempotency-key"),
        wait_s=waited,
        callback_url=callback_url,
    )
    if outcome.view is None:
        return JSONResponse(
            _accepted(outcome.job_id, JobState.QUEUED, spec.name),
            status_code=202,
            headers={"Location": f"/v1/jobs/{outcome.job_id}"},
        )
    return _job_response(outcome.view, waited)


@router.get(
    "/jobs/{job_id}", response_model=Job, responses={202: {"model": JobAccepted}, **_ERRORS}
)
async def get_job(job_id: str, request: Request, gw: GatewayDep, caller: TenantDep) -> Response:
    """The job's state, per-node timings and, once finished, its result or error.
    ``Prefer: wait=N`` long-polls until the job finishes or N seconds pass."""
    waited = prefer_wait(request, gw.settings.max_wait_s)
    if waited is None:
        return JSONResponse(await dataplane.read_job(gw, job_id, caller))
    view = await dataplane.wait_for(gw, job_id, caller, waited)
    return JSONResponse(view, headers={"Preference-Applied": f"wait={waited:g}"})


@router.delete("/jobs/{job_id}", response_model=Job, responses=_ERRORS)
async def cancel_job(job_id: str, gw: GatewayDep, caller: TenantDep) -> Response:
    """Cancel a queued or running job; tasks not yet started are dropped by the workers."""
    return JSONResponse(await dataplane.cancel(gw, job_id, caller))
