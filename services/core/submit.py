"""Creating an image job, the one way: the gateway's uploads and the control plane's video frames
and zip entries all become jobs through ``submit_image_job``.

It fills in what every image job carries (tenant, image facts, TTL and deadline from settings,
the idempotency record) and runs create.lua; the caller gets the step's typed reply (awaitable
with the asyncio client). An idempotency key is stored with the job id and a fingerprint of
(pipeline, image), so a repeat with the same key finds its job, and a repeat with another image
is told apart (``Exists.fingerprint != image_fingerprint(...)``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from services.core import keys
from services.core.dag import DagSteps
from services.core.pipeline import PipelineSpec
from services.core.settings import Settings


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """What the job API echoes about the submitted image (``image`` in GET /v1/jobs/{id})."""

    width: int
    height: int
    content_type: str
    bytes: int


def image_fingerprint(pipeline: str, image: bytes) -> str:
    return hashlib.sha256(pipeline.encode() + b"\0" + image).hexdigest()


def submit_image_job(
    steps: DagSteps,
    spec: PipelineSpec,
    image: bytes,
    meta: ImageMeta,
    *,
    job_id: str,
    tenant: str,
    settings: Settings,
    idempotency_key: str | None = None,
    extra: dict[str, str] | None = None,
    max_backlog: int = 0,
) -> Any:
    """Create the job; returns ``Created``, ``Exists`` or ``Busy`` (see services.core.dag).
    ``extra`` adds fields to the record (e.g. the batch a frame belongs to)."""
    idempotency = None
    if idempotency_key is not None:
        value = f"{job_id} {image_fingerprint(spec.name, image)}"
        idempotency = (keys.idempotency(tenant, idempotency_key), value)
    return steps.create(
        job_id,
        spec,
        image,
        {"tenant": tenant, "image": json.dumps(asdict(meta)), **(extra or {})},
        ttl_s=settings.result_ttl_s,
        deadline_s=settings.job_deadline_s,
        idempotency=idempotency,
        max_backlog=max_backlog,
    )
