"""Video and zip batches: one RQ job expands an upload into per-frame image jobs on the normal
pipeline (Redis Streams), tracks progress in the RQ job's meta and stores one JSON line per
frame, in frame order.

RQ gives the control plane what it is good at: retries with back-off intervals
(``Retry(max=3, interval=[5, 30, 120])``), job meta for progress, registries for failed and
finished work, and result TTLs. Frame jobs are created with a per-frame idempotency key, so a
retried batch picks up the frames it already submitted instead of submitting them twice. An
upload that cannot be expanded at all raises ``BatchRefused`` and is not retried
(services/control/failures.py); frames come bounded from services/control/frames.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import redis
from rq import get_current_job

from services.control.frames import (
    BatchRefused,
    Frame,
    FrameSlot,
    RefusedFrame,
    video_frames,
    zip_frames,
)
from services.core import keys
from services.core.dag import DagSteps, Exists
from services.core.imaging import ImageLimits
from services.core.jobs import is_terminal, job_view
from services.core.pipeline import PipelineSpec, load_pipelines
from services.core.settings import Settings, get_settings
from services.core.submit import ImageMeta, submit_image_job

log = logging.getLogger("posefleet.control")

VIDEO_SIGNATURES = ((b"RIFF", 0, b"AVI ", 8), (b"ftyp", 4, b"", 0), (b"\x1aE\xdf\xa3", 0, b"", 0))
ZIP_MAGIC = b"PK\x03\x04"


def sniff_batch_type(data: bytes) -> str | None:
    if data[:4] == ZIP_MAGIC:
        return "zip"
    for magic, offset, extra, extra_offset in VIDEO_SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            not extra or data[extra_offset : extra_offset + len(extra)] == extra
        ):
            return "video"
    return None


def expand_batch(batch_id: str) -> dict[str, Any]:
    """The RQ job: submit every frame as an image job and collect the results in order."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.batch(batch_id)).items()}
    upload = client.get(keys.upload(batch_id))
    if meta.get("canceled"):
        raise BatchRefused("batch_canceled", "the batch was canceled")
    if not meta or upload is None:
        raise BatchRefused("batch_expired", "the batch's upload has expired; submit it again")
    spec = load_pipelines(settings.pipelines_file).pipelines[meta["pipeline"]]
    stride, limit = int(meta["frame_stride"]), int(meta["max_frames"])
    limits = ImageLimits.of(settings)
    frames = (
        zip_frames(upload, limit, limits, settings.max_zip_entries, settings.max_zip_inflated_bytes)
        if meta["kind"] == "zip"
        else video_frames(upload, stride, limit, limits)
    )
    rq_job = get_current_job()
    progress = {"total": None, "submitted": 0, "done": 0, "failed": 0}
    steps = DagSteps(client)
    in_flight: dict[str, FrameSlot] = {}  # job id -> its frame's place, without the bytes
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.EVENTS_CHANNEL)

    published: dict[str, Any] = {}

    def publish_progress() -> None:
        if rq_job is not None:
            rq_job.meta.update(progress)
            rq_job.save_meta()
        if progress != published:  # wakes open event streams (GET /v1/batches/{id}/events)
            client.publish(keys.batch_events(batch_id), json.dumps(progress))
            published.update(progress)

    def record(frame: FrameSlot, line: dict[str, Any]) -> None:
        """One result line; the results hash gets its TTL with every write, so it expires
        even when the batch fails part-way."""
        pipe = client.pipeline(transaction=False)
        pipe.hset(keys.batch_results(batch_id), str(frame.index), json.dumps(line))
        pipe.expire(keys.batch_results(batch_id), settings.result_ttl_s)
        pipe.execute()

    def settle() -> None:
        """Record every in-flight frame job that has finished. Statuses are read first, and
        whole records (with their outputs) only for the jobs that are done."""
        pipe = client.pipeline(transaction=False)
        ids = list(in_flight)
        for job_id in ids:
            pipe.hget(keys.job(job_id), "status")
        statuses = pipe.execute()
        finished = [j for j, st in zip(ids, statuses, strict=True) if is_terminal(st)]
        for job_id in finished:
            pipe.hgetall(keys.job(job_id))
        for job_id, raw in zip(finished, pipe.execute(), strict=True):
            view = job_view(raw) if raw else {"status": "expired"}
            frame = in_flight.pop(job_id)
            line = {**frame.line(), "job_id": job_id, "status": view["status"]}
            if view["status"] == "succeeded":
                line.update(view["result"])
                progress["done"] += 1
            else:
                line["error"] = view.get("error")
                progress["failed"] += 1
            record(frame, line)
        publish_progress()

    try:
        exhausted, seen = False, 0
        while not exhausted or in_flight:
            if client.hexists(keys.batch(batch_id), "canceled"):  # DELETE /v1/batches/{id}
                for job_id in in_flight:
                    steps.cancel(job_id)
                raise BatchRefused("batch_canceled", "the batch was canceled")
            while not exhausted and len(in_flight) < settings.batch_window:
                frame = next(frames, None)
                if frame is None:
                    exhausted = True
                    progress["total"] = seen
                    break
                seen += 1
                if isinstance(frame, RefusedFrame):  # over a limit: a failed line, no job
                    error = {"code": frame.code, "message": frame.message}
                    record(
                        frame, {**frame.line(), "job_id": None, "status": "failed", "error": error}
                    )
                    progress["failed"] += 1
                    continue
                job_id = _submit(steps, spec, batch_id, meta["tenant"], frame, settings)
                in_flight[job_id] = frame.slot()
                progress["submitted"] += 1
            settle()
            if in_flight:
                pubsub.get_message(timeout=1.0)  # woken by any job finishing
        client.delete(keys.upload(batch_id))
    finally:
        pubsub.close()
        client.close()
    log.info("batch done", extra={"batch": batch_id, **progress})
    return progress


def _submit(
    steps: DagSteps,
    spec: PipelineSpec,
    batch_id: str,
    tenant: str,
    frame: Frame,
    settings: Settings,
) -> str:
    """The frame's image job; its id is derived from (batch, frame) and its idempotency key
    names the frame, so a retried expansion finds the jobs it already made."""
    job_id = str(uuid.uuid5(uuid.UUID(batch_id), str(frame.index)))
    reply = submit_image_job(
        steps,
        spec,
        frame.image,
        ImageMeta(frame.width, frame.height, frame.content_type, len(frame.image)),
        job_id=job_id,
        tenant=tenant,
        settings=settings,
        idempotency_key=f"batch:{batch_id}:{frame.index}",
        extra={"batch": batch_id},
    )
    return reply.job_id if isinstance(reply, Exists) else job_id
