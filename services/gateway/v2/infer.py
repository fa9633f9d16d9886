"""A V2 inference, protocol-neutral: the images of the `image` tensor become jobs through the
gateway's data plane (same validation, limits, tenancy, idempotency, backpressure and metrics as
the job API), the finished jobs' results become the model's output tensors.

Batches: an `image` tensor of B elements is B jobs. Every image is validated and admitted before
any result is awaited; if one is refused (bad image, full backlog), the jobs already created for
the request are canceled and the request fails naming the image's index — nothing half-done
keeps running. Once admitted, the request succeeds only if every job succeeds; otherwise it fails
with the first failed image's error, and ``job_ids`` in the error message lets the caller read
the others through the job API.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from services.core.jobs import JobState
from services.core.settings import Settings
from services.gateway import dataplane
from services.gateway.deps import Gateway
from services.gateway.errors import Problem
from services.gateway.v2.models import INPUT, VERSION, ModelCatalog, OutputTensor, PipelineModel
from services.gateway.v2.wire import Tensor, elements


@dataclass(frozen=True, slots=True)
class InputTensor:
    """An input as a transport decoded it: BYTES elements, whatever their encoding was."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    elements: list[bytes]


@dataclass(frozen=True, slots=True)
class InferRequest:
    model: str
    version: str
    id: str
    inputs: list[InputTensor]
    outputs: list[str]  # requested output names; empty = all
    timeout_s: float | None  # the client's budget (Triton's `timeout` parameter, a deadline)
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class InferResponse:
    model: str
    version: str
    id: str
    job_ids: list[str]
    tensors: list[Tensor]


async def infer(
    gw: Gateway, catalog: ModelCatalog, request: InferRequest, caller: str
) -> InferResponse:
    model = catalog.get(request.model, request.version)
    selected = [model.output(n) for n in request.outputs] or list(model.outputs)
    images = image_batch(model, request.inputs, gw.settings)
    budget = gw.settings.max_wait_s
    wait_s = min(request.timeout_s, budget) if request.timeout_s is not None else budget
    views = await run_jobs(gw, model, images, caller, request.idempotency_key, wait_s)
    job_ids = [view["id"] for view in views]
    try:
        results = [_result(view, index, len(views), wait_s) for index, view in enumerate(views)]
    except Problem as problem:
        if len(views) > 1:
            problem.detail += f" (this request's jobs, in image order: {', '.join(job_ids)})"
        raise
    return InferResponse(
        model=model.name,
        version=VERSION,
        id=request.id,
        job_ids=job_ids,
        tensors=[_tensor(out, results) for out in selected],
    )


def timeout_parameter(params: dict[str, Any]) -> float | None:
    """Triton's request parameter ``timeout`` (microseconds, REST and gRPC alike), in s."""
    value = params.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise Problem(400, "bad_request", "the 'timeout' parameter is a positive number of µs")
    return value / 1e6


def image_batch(model: PipelineModel, inputs: list[InputTensor], settings: Settings) -> list[bytes]:
    """The images of the request: exactly one BYTES input named `image`, 1..oip_max_batch long,
    each within max_image_bytes (the job API's upload limit)."""
    max_batch = settings.oip_max_batch
    unknown = sorted({i.name for i in inputs} - {INPUT})
    if unknown:
        raise Problem(
            400, "unknown_input", f"model '{model.name}' takes only '{INPUT}', not {unknown}"
        )
    found = [i for i in inputs if i.name == INPUT]
    if len(found) != 1:
        raise Problem(400, "missing_input", f"send one BYTES input '{INPUT}' (encoded images)")
    (tensor,) = found
    if tensor.datatype != "BYTES":
        raise Problem(
            400, "bad_datatype", f"'{INPUT}' is BYTES (encoded images), not {tensor.datatype}"
        )
    if elements(tensor.shape) != len(tensor.elements):
        raise Problem(
            400,
            "bad_shape",
            f"'{INPUT}' has shape {list(tensor.shape)} but {len(tensor.elements)} elements",
        )
    if not 1 <= len(tensor.elements) <= max_batch:
        raise Problem(
            400,
            "bad_batch",
            f"'{INPUT}' holds {len(tensor.elements)} images; send 1 to {max_batch} (oip_max_batch)",
        )
    for index, image in enumerate(tensor.elements):
        if len(image) > settings.max_image_bytes:
            raise Problem(
                400,
                "image_too_large",
                f"image {index} has {len(image)} bytes, over the {settings.max_image_bytes}-byte "
                "limit",
            )
    return tensor.elements


async def run_jobs(
    gw: Gateway,
    model: PipelineModel,
    images: list[bytes],
    caller: str,
    idempotency_key: str | None,
    wait_s: float,
) -> list[dict[str, Any]]:
    """One job per image; the job views once they ended or ``wait_s`` ran out."""
    spec = gw.config.pipelines[model.name]

    def key(index: int) -> str | None:  # image i of a request with key K is submitted as K/i
        return None if idempotency_key is None else f"{idempotency_key}/{index}"

    if len(images) == 1:  # the common case: exactly the job API's submit with Prefer: wait
        outcome = await dataplane.submit(
            gw, spec, images[0], caller, idempotency_key=key(0), wait_s=wait_s
        )
        assert outcome.view is not None  # a waiting submit always reads the job
        return [outcome.view]
    deadline = time.monotonic() + wait_s
    submitted: list[dataplane.Submitted] = []
    try:
        for index, image in enumerate(images):
            try:
                submitted.append(
                    await dataplane.submit(gw, spec, image, caller, idempotency_key=key(index))
                )
            except Problem as problem:
                raise _about_image(problem, index, len(images)) from None
    except BaseException:
        for done in submitted:
            if done.created:  # an idempotent repeat's job is not ours to cancel
                with contextlib.suppress(Problem):
                    await dataplane.cancel(gw, done.job_id, caller)
        raise
    remaining = max(0.0, deadline - time.monotonic())
    return list(
        await asyncio.gather(
            *(dataplane.wait_for(gw, s.job_id, caller, remaining) for s in submitted)
        )
    )


def _about_image(problem: Problem, index: int, count: int) -> Problem:
    if count == 1:
        return problem
    return Problem(
        problem.status,
        problem.code,
        f"image {index}: {problem.detail}",
        headers=problem.headers,
        **problem.extra,
    )


def _result(view: dict[str, Any], index: int, count: int, wait_s: float) -> dict[str, Any]:
    """The job's result, or the Problem that says why there is none."""
    status, job_id = view["status"], view["id"]
    if status == JobState.SUCCEEDED:
        return view["result"]
    where = f"job {job_id}" + ("" if count == 1 else f" (image {index})")
    if status in (JobState.QUEUED, JobState.RUNNING):
        raise Problem(
            504,
            "timeout",
            f"{where} still {status} after {wait_s:g} s; it keeps running and its result "
            f"will be at /v1/jobs/{job_id}",
        )
    if status == JobState.CANCELED:
        raise Problem(409, "job_canceled", f"{where} was canceled")
    error = view.get("error") or {}
    code = str(error.get("code", "job_failed"))
    message = f"{where} {status}: {error.get('message', code)}"
    if code == "invalid_input":
        raise Problem(400, code, message)
    if status == JobState.EXPIRED or code == "deadline_exceeded":
        raise Problem(504, "deadline_exceeded", message)
    raise Problem(500, code, message)


def _tensor(out: OutputTensor, results: list[dict[str, Any]]) -> Tensor:
    values = out.gather(results)
    shape = (len(values),) if isinstance(values, list) else tuple(values.shape)
    return Tensor(out.spec.name, out.spec.datatype, shape, values)
