"""Hostile batches (issue 10, finding 5) through a real ``posefleet control-worker`` process:
a zip bomb fails cleanly while the worker stays small, zip entries obey the image limits of
``/jobs``, an upload that cannot be expanded fails at once (no RQ retries), and every key a
batch leaves behind expires."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import tracemalloc
import uuid
import zipfile
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest
import redis
from rq.job import Job, JobStatus

from services.control.frames import BatchRefused, Frame, RefusedFrame, video_frames, zip_frames
from services.core import keys
from services.core.imaging import ImageLimits
from services.core.settings import Settings
from tests.faults.hostile import PNG_SIGNATURE, png_zeros, zip_bomb, zip_of
from tests.faults.served import control_worker_process, memory_kib
from tests.workers import TEST_PIPELINES, make_worker, worker_threads

pytestmark = pytest.mark.faults

MIB = 1024 * 1024
# What a user must never read in an error: library internals, paths, tracebacks.
INTERNALS = ("cv2", "OpenCV", "/io/", "Traceback", "Error:", "zipfile")


@pytest.fixture
def control_worker(redis_url, tmp_path) -> Iterator[int]:
    log = tmp_path / "control.log"
    with control_worker_process(
        redis_url, log, POSEFLEET_PIPELINES_FILE=str(TEST_PIPELINES)
    ) as pid:
        yield pid


@pytest.fixture
def api(start_gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=start_gateway(), timeout=30) as client:
        yield client


@pytest.fixture
def measure_workers(redis_client) -> Iterator[None]:
    """The model-free stages behind the test pipelines ``single`` and ``slow``."""
    with worker_threads() as start:
        start(make_worker(redis_client, "measure"))
        start(make_worker(redis_client, "slow-measure"))
        yield


def submit(api: httpx.Client, pipeline: str, body: bytes) -> str:
    accepted = api.post(f"/v1/pipelines/{pipeline}/batches", content=body)
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["id"]


def wait_batch(api: httpx.Client, batch_id: str, timeout_s: float) -> tuple[dict, float]:
    """The batch's final state and the seconds it took to get there."""
    started = time.monotonic()
    while (state := api.get(f"/v1/batches/{batch_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() - started < timeout_s, state
        time.sleep(0.1)  # a client polling, as the CLI does
    return state, time.monotonic() - started


def assert_batch_keys_expire(client: redis.Redis, batch_id: str) -> None:
    batch_keys = list(client.scan_iter("pf:batch:*"))
    assert keys.batch(batch_id).encode() in batch_keys
    assert {key: client.ttl(key) for key in batch_keys if client.ttl(key) <= 0} == {}


def assert_for_users(error: dict) -> None:
    assert error["code"] and error["message"], error
    assert not any(word in error["message"] for word in INTERNALS), error


def test_zip_bomb_fails_cleanly_while_the_control_worker_stays_small(
    api, control_worker, redis_client
):
    bomb = zip_bomb(entries=4, entry_bytes=256 * MIB)  # ~1 MB inflating to 1 GiB
    assert len(bomb) < 2 * MIB
    batch_id = submit(api, "single", bomb)
    state, seconds = wait_batch(api, batch_id, timeout_s=30)
    peak = memory_kib(control_worker, "VmHWM") / 1024
    figures = f"{state}, {seconds:.1f} s, control worker peak {peak:.0f} MiB"
    assert state["status"] == "failed", figures
    assert state["error"]["code"] == "archive_too_large", figures
    assert_for_users(state["error"])
    assert peak < 300, figures
    assert not redis_client.exists(keys.upload(batch_id))
    assert_batch_keys_expire(redis_client, batch_id)


def test_zip_entries_obey_the_limits_of_jobs(api, control_worker, measure_workers, redis_client):
    """Each entry over a limit fails its own line with the code ``/jobs`` answers for it; the
    other entries are processed."""
    archive = zip_of(
        {
            "a-ok.png": png_zeros(64, 48, rgb=True),
            "b-64mpx.png": png_zeros(8000, 8000),  # 64 Mpx, over the 50 Mpx limit
            "c-25mib.png": png_zeros(32, 32) + b"\0" * (25 * MIB),  # over the 20 MiB limit
            "d-50000x2.png": png_zeros(50000, 2, rgb=True),  # a side over 16384
            "e-notes.txt": b"not an image: skipped",
        }
    )
    batch_id = submit(api, "single", archive)
    state, _ = wait_batch(api, batch_id, timeout_s=60)
    assert state["status"] == "succeeded", state
    assert (state["total"], state["done"], state["failed"]) == (4, 1, 3), state
    results = api.get(f"/v1/batches/{batch_id}/results").text.splitlines()
    lines = {line["name"]: line for line in map(json.loads, results)}
    codes = {name: line.get("error") and line["error"]["code"] for name, line in lines.items()}
    assert codes == {
        "a-ok.png": None,
        "b-64mpx.png": "image_too_many_pixels",
        "c-25mib.png": "image_too_large",
        "d-50000x2.png": "image_side_too_long",
    }
    assert lines["a-ok.png"]["status"] == "succeeded"
    for name in ("b-64mpx.png", "c-25mib.png", "d-50000x2.png"):
        assert lines[name]["status"] == "failed"
        assert_for_users(lines[name]["error"])
    assert not redis_client.exists(keys.upload(batch_id))
    assert_batch_keys_expire(redis_client, batch_id)


def test_an_upload_that_is_not_a_video_fails_at_once(api, control_worker, redis_client):
    """A text file with an mp4 header: RQ retried it for 156 s before it failed."""
    text = b"\0\0\0\x18ftypmp42" + b"this is a text file, not a video\n" * 500
    batch_id = submit(api, "single", text)
    state, seconds = wait_batch(api, batch_id, timeout_s=60)
    assert state["status"] == "failed" and seconds < 5, (state, seconds)
    assert state["error"]["code"] == "not_a_video"
    assert_for_users(state["error"])
    assert not redis_client.exists(keys.upload(batch_id))
    assert_batch_keys_expire(redis_client, batch_id)


def video(tmp_path, width: int, height: int, frames: int = 4) -> bytes:
    """A real Motion-JPEG AVI (OpenCV's own encoder) of noise frames of the given size."""
    path = tmp_path / f"{width}x{height}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (width, height))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def test_a_video_whose_frames_are_over_a_limit_fails_at_once(
    api, control_worker, redis_client, tmp_path
):
    """A frame size is fixed per video, so a video of 1600x32 frames (aspect 50:1, the shape
    that blew up the classifiers as an image) fails the whole batch, with the limit named, and
    never becomes a job."""
    batch_id = submit(api, "single", video(tmp_path, 1600, 32))
    state, seconds = wait_batch(api, batch_id, timeout_s=60)
    assert state["status"] == "failed" and seconds < 5, (state, seconds)
    assert state["error"]["code"] == "image_aspect_too_extreme"
    assert "1600x32" in state["error"]["message"]
    assert_for_users(state["error"])
    assert state["submitted"] == 0
    assert not redis_client.exists(keys.upload(batch_id))


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (ImageLimits(10 * MIB, 100_000, 4096, 20), "image_too_many_pixels"),  # 320x240 = 76,800 ok
        (ImageLimits(10 * MIB, 50_000_000, 400, 20), "image_side_too_long"),
    ],
)
def test_video_frame_limits_are_read_from_the_header(tmp_path, limits, code):
    small = video(tmp_path, 320, 240, frames=2)
    assert [type(f) for f in video_frames(small, 1, 10, limits)] == [Frame, Frame]
    big = video(tmp_path, 640, 480, frames=2)
    with pytest.raises(BatchRefused) as refused:
        next(video_frames(big, 1, 10, limits))
    assert refused.value.code == code and "640x480" in refused.value.message


def test_a_video_frame_over_the_byte_limit_is_a_failed_line(tmp_path):
    """Each frame is re-encoded as a JPEG for its job; one over max_bytes is refused alone."""
    limits = ImageLimits(2_000, 50_000_000, 4096, 20)
    frames = list(video_frames(video(tmp_path, 320, 240, frames=2), 1, 10, limits))
    assert [(type(f), f.code) for f in frames] == [(RefusedFrame, "image_too_large")] * 2


def test_a_batch_killed_part_way_leaves_only_expiring_keys(
    api, control_worker, measure_workers, redis_client
):
    """The control worker dies (SIGKILL) after the first results are written: nothing the
    batch wrote stays forever."""
    entries = {f"{i:02}.png": png_zeros(16 + i, 16, rgb=True) for i in range(8)}
    batch_id = submit(api, "slow", zip_of(entries))  # 1.5 s per model batch of 4
    deadline = time.monotonic() + 30
    while not redis_client.exists(keys.batch_results(batch_id)):
        assert time.monotonic() < deadline, "no result line was written"
        time.sleep(0.05)  # poll for the first line
    os.kill(control_worker, signal.SIGKILL)
    assert redis_client.hlen(keys.batch_results(batch_id)) < len(entries)  # killed part-way
    assert_batch_keys_expire(redis_client, batch_id)


def test_a_queued_batch_canceled_deletes_its_upload(api, redis_client):
    """No control worker runs: the batch is still queued when it is canceled."""
    batch_id = submit(api, "single", zip_of({"a.png": png_zeros(8, 8)}))
    assert redis_client.exists(keys.upload(batch_id))
    canceled = api.delete(f"/v1/batches/{batch_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert not redis_client.exists(keys.upload(batch_id))
    assert api.delete(f"/v1/batches/{batch_id}").json()["status"] == "canceled"  # idempotent
    assert_batch_keys_expire(redis_client, batch_id)


def test_a_running_batch_canceled_stops_and_cancels_its_frames(
    api, control_worker, measure_workers, redis_client
):
    entries = {f"{i:02}.png": png_zeros(16 + i, 16, rgb=True) for i in range(40)}
    batch_id = submit(api, "slow", zip_of(entries))  # 1.5 s per model batch of 4
    deadline = time.monotonic() + 30
    while api.get(f"/v1/batches/{batch_id}").json()["submitted"] == 0:
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.05)  # poll for the expansion to start
    canceled = api.delete(f"/v1/batches/{batch_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert not redis_client.exists(keys.upload(batch_id))
    while Job.fetch(batch_id, connection=redis_client).get_status() == JobStatus.STARTED:
        assert time.monotonic() < deadline + 30, "the expansion did not stop"
        time.sleep(0.1)  # poll for the control worker's next step
    assert redis_client.hlen(keys.batch_results(batch_id)) < len(entries)  # it stopped early
    state = api.get(f"/v1/batches/{batch_id}").json()
    assert state["status"] == "canceled" and state["error"] is None
    assert api.delete(f"/v1/batches/{batch_id}").status_code == 200
    statuses = {
        redis_client.hget(keys.job(str(uuid.uuid5(uuid.UUID(batch_id), str(i)))), "status")
        for i in range(state["submitted"])
    }
    assert b"canceled" in statuses, statuses  # the frames in flight were canceled
    assert_batch_keys_expire(redis_client, batch_id)


def test_a_finished_batch_cannot_be_canceled(api, control_worker, measure_workers):
    batch_id = submit(api, "single", zip_of({"a.png": png_zeros(8, 8)}))
    assert wait_batch(api, batch_id, timeout_s=30)[0]["status"] == "succeeded"
    refused = api.delete(f"/v1/batches/{batch_id}")
    assert refused.status_code == 409 and refused.json()["code"] == "batch_finished"


def test_an_entry_is_never_inflated_past_its_declared_size():
    """A zip whose directory declares 1 MiB for an entry of 200 MiB: the reader stops at the
    declared size (and finds the CRC wrong), so the declared sizes bound what is inflated."""
    archive = bytearray(zip_of({"liar.png": PNG_SIGNATURE + b"\0" * (200 * MIB)}))
    record = archive.index(b"PK\x01\x02")  # the entry's central directory record
    archive[record + 24 : record + 28] = (1 * MIB).to_bytes(4, "little")  # uncompressed size
    tracemalloc.start()
    try:
        frames = list(zip_frames(bytes(archive), 10, LIMITS, 10, 2 * MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(f.name, f.code) for f in frames if isinstance(f, RefusedFrame)] == [
        ("liar.png", "corrupt_zip_entry")
    ]
    assert peak < 16 * MIB, peak


LIMITS = ImageLimits.of(Settings())


@pytest.mark.parametrize(
    ("archive", "code"),
    [
        (zip_of({f"{i}.txt": b"" for i in range(30)}), "too_many_entries"),
        (zip_of({"notes.txt": b"no image here"}), "no_frames"),
        (b"PK\x03\x04 and then nothing a zip reader can use", "bad_zip"),
        (zip_of({"a.png": png_zeros(8, 8), "b.png": png_zeros(8, 8)}), "archive_too_large"),
    ],
)
def test_whole_archive_refusals(archive, code):
    frames = zip_frames(archive, 10, LIMITS, max_entries=20, max_inflated=100)
    with pytest.raises(BatchRefused) as refused:
        list(frames)
    assert refused.value.code == code
    assert_for_users(refused.value.error)


def test_bzip2_entries_are_refused_unread():
    """bzip2 (and LZMA) inflate a whole read at once, unbounded; only deflate is read."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("a.png", png_zeros(8, 8))
    (frame,) = zip_frames(buffer.getvalue(), 10, LIMITS, 10, MIB)
    assert isinstance(frame, RefusedFrame) and frame.code == "unsupported_zip_entry"
    assert not isinstance(frame, Frame)
