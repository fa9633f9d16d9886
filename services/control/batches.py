"""Video and zip batches: one RQ job expands an upload into per-frame image jobs on the normal
pipeline (Redis Streams), tracks progress in the RQ job's meta and stores one JSON line per
frame, in frame order.

RQ gives the control plane what it is good at: retries with back-off intervals
(``Retry(max=3, interval=[5, 30, 120])``), job meta for progress, registries for failed and
finished work, and result TTLs. Frame jobs are created with a per-frame idempotency key, so a
retried batch picks up the frames it already submitted instead of submitting them twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import redis
from rq import get_current_job

from services.core import keys
from services.core.dag import DagSteps
from services.core.imaging import UndecodableImage, decode_image, sniff_image_type
from services.core.jobs import job_view
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings

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


@dataclass(frozen=True, slots=True)
class Frame:
    index: int
    timestamp_ms: float | None
    name: str | None
    jpeg: bytes
    width: int
    height: int


def video_frames(data: bytes, stride: int, limit: int) -> Iterator[Frame]:
    """Every ``stride``-th frame, at most ``limit``; OpenCV needs a file, so one is written."""
    with tempfile.NamedTemporaryFile(suffix=".video") as f:
        f.write(data)
        f.flush()
        capture = cv2.VideoCapture(f.name)
        if not capture.isOpened():
            raise ValueError("the video could not be opened")
        try:
            position, emitted = 0, 0
            while emitted < limit and capture.grab():
                if position % stride == 0:
                    ok, bgr = capture.retrieve()
                    if not ok:
                        break
                    stamp = capture.get(cv2.CAP_PROP_POS_MSEC)
                    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
                    yield Frame(
                        emitted, round(stamp, 1), None, jpeg.tobytes(), bgr.shape[1], bgr.shape[0]
                    )
                    emitted += 1
                position += 1
        finally:
            capture.release()


def zip_frames(data: bytes, limit: int) -> Iterator[Frame]:
    """Image entries in name order; other entries are skipped, undecodable images fail."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        index = 0
        for name in names:
            if index >= limit:
                return
            content = archive.read(name)
            if sniff_image_type(content) is None:
                continue
            try:
                pixels = decode_image(content)
            except UndecodableImage:
                raise ValueError(f"zip entry {name} is not a decodable image") from None
            yield Frame(index, None, name, content, pixels.shape[1], pixels.shape[0])
            index += 1


def expand_batch(batch_id: str) -> dict[str, Any]:
    """The RQ job: submit every frame as an image job and collect the results in order."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.batch(batch_id)).items()}
    upload = client.get(keys.upload(batch_id))
    if not meta or upload is None:
        raise LookupError(f"batch {batch_id}: its record or upload has expired")
    spec = load_pipelines(settings.pipelines_file).pipelines[meta["pipeline"]]
    stride, limit = int(meta["frame_stride"]), int(meta["max_frames"])
    frames = (
        zip_frames(upload, limit) if meta["kind"] == "zip" else video_frames(upload, stride, limit)
    )
    rq_job = get_current_job()
    progress = {"total": None, "submitted": 0, "done": 0, "failed": 0}
    steps = DagSteps(client)
    in_flight: dict[str, Frame] = {}
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

    def settle() -> None:
        """Record every in-flight frame job that has finished. Statuses are read first, and
        whole records (with their outputs) only for the jobs that are done."""
        pipe = client.pipeline(transaction=False)
        ids = list(in_flight)
        for job_id in ids:
            pipe.hget(keys.job(job_id), "status")
        statuses = pipe.execute()
        finished = [
            j
            for j, st in zip(ids, statuses, strict=True)
            if st is None or st.decode() in keys.TERMINAL
        ]
        for job_id in finished:
            pipe.hgetall(keys.job(job_id))
        for job_id, raw in zip(finished, pipe.execute(), strict=True):
            view = job_view(raw) if raw else {"status": "expired"}
            frame = in_flight.pop(job_id)
            line: dict[str, Any] = {
                "frame": frame.index,
                "timestamp_ms": frame.timestamp_ms,
                "job_id": job_id,
                "status": view["status"],
            }
            if frame.name is not None:
                line["name"] = frame.name
            if view["status"] == "succeeded":
                line.update(view["result"])
                progress["done"] += 1
            else:
                line["error"] = view.get("error")
                progress["failed"] += 1
            client.hset(keys.batch_results(batch_id), str(frame.index), json.dumps(line))
        publish_progress()

    try:
        exhausted = False
        while not exhausted or in_flight:
            while not exhausted and len(in_flight) < settings.batch_window:
                frame = next(frames, None)
                if frame is None:
                    exhausted = True
                    progress["total"] = progress["submitted"]
                    break
                in_flight[_submit(steps, spec, batch_id, meta, frame, settings)] = frame
                progress["submitted"] += 1
            settle()
            if in_flight:
                pubsub.get_message(timeout=1.0)  # woken by any job finishing
        client.expire(keys.batch_results(batch_id), settings.result_ttl_s)
        client.delete(keys.upload(batch_id))
    finally:
        pubsub.close()
        client.close()
    log.info("batch done", extra={"batch": batch_id, **progress})
    return progress


def _submit(
    steps: DagSteps, spec: Any, batch_id: str, meta: dict[str, str], frame: Frame, settings: Any
) -> str:
    job_id = str(uuid.uuid5(uuid.UUID(batch_id), str(frame.index)))  # stable across retries
    fingerprint = hashlib.sha256(frame.jpeg).hexdigest()
    image = {
        "width": frame.width,
        "height": frame.height,
        "content_type": "image/jpeg",
        "bytes": len(frame.jpeg),
    }
    created = steps.create(
        job_id,
        spec,
        frame.jpeg,
        {"tenant": meta["tenant"], "image": json.dumps(image), "batch": batch_id},
        ttl_s=settings.result_ttl_s,
        deadline_s=settings.job_deadline_s,
        idempotency=(
            keys.idempotency(meta["tenant"], f"batch:{batch_id}:{frame.index}"),
            f"{job_id} {fingerprint}",
        ),
    )
    return created[1].decode().split(" ", 1)[0] if created[0] == b"exists" else job_id
