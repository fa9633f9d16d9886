"""Video and zip batches through the control plane (RQ) and the normal pipeline."""

import io
import json
import time
import zipfile

import cv2

from services.control.batches import sniff_batch_type
from services.control.frames import RefusedFrame, video_frames, zip_frames
from services.core.imaging import ImageLimits
from services.core.settings import Settings
from tests.clirun import posefleet
from tests.conftest import OPENCV_DATA

VIDEO = OPENCV_DATA / "vtest.avi"


def wait_batch(api, batch_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while (state := api.get(f"/v1/batches/{batch_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.2)  # a client polling, as the CLI does
    return state


def results(api, batch_id: str) -> list[dict]:
    response = api.get(f"/v1/batches/{batch_id}/results")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_video_batch_gives_one_line_per_frame_in_order(api):
    accepted = api.post(
        "/v1/pipelines/pose/batches",
        params={"frame_stride": 50, "max_frames": 4},
        content=VIDEO.read_bytes(),
    )
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["kind"] == "video" and body["links"]["results"].endswith("/results")
    state = wait_batch(api, body["id"])
    assert state["status"] == "succeeded", state
    assert (state["total"], state["done"], state["failed"], state["progress"]) == (4, 4, 0, 1.0)
    lines = results(api, body["id"])
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    stamps = [line["timestamp_ms"] for line in lines]
    assert stamps == sorted(stamps) and stamps[1] > stamps[0]
    assert all(line["status"] == "succeeded" and line["people"] for line in lines)


def test_zip_batch_uses_image_entries_in_name_order(api, photos):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("b-coffee.jpg", photos["coffee"])
        archive.writestr("a-chelsea.jpg", photos["chelsea"])
        archive.writestr("notes.txt", "not an image")
    accepted = api.post("/v1/pipelines/classify/batches", content=buffer.getvalue()).json()
    assert accepted["kind"] == "zip"
    assert wait_batch(api, accepted["id"])["status"] == "succeeded"
    lines = results(api, accepted["id"])
    assert [(line["frame"], line["name"]) for line in lines] == [
        (0, "a-chelsea.jpg"),
        (1, "b-coffee.jpg"),
    ]
    assert lines[1]["label"] == "espresso"


def test_batch_input_errors(api):
    response = api.post("/v1/pipelines/pose/batches", content=b"just text")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    response = api.post(
        "/v1/pipelines/pose/batches",
        params={"max_frames": 10**9},
        content=VIDEO.read_bytes()[:1000],
    )
    assert response.status_code == 422 and response.json()["code"] == "too_many_frames"
    response = api.post("/v1/pipelines/pose/batches", params={"frame_stride": 0}, content=b"x")
    assert response.status_code == 400
    assert api.get("/v1/batches/nope").json()["code"] == "batch_not_found"


def test_cli_submit_video_writes_an_annotated_video(stack, tmp_path):
    out = tmp_path / "annotated.avi"
    result = posefleet(
        "submit",
        str(VIDEO),
        "--pipeline",
        "pose",
        "--frame-stride",
        "60",
        "--max-frames",
        "3",
        "--draw",
        str(out),
        "--url",
        stack.url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded, 3 frames done, 0 failed" in result.stdout
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.grab():
        frames += 1
    assert frames == 3


def test_frame_sources_and_sniffing():
    data = VIDEO.read_bytes()
    assert sniff_batch_type(data) == "video" and sniff_batch_type(b"PK\x03\x04") == "zip"
    assert sniff_batch_type(b"\x89PNG") is None
    limits = ImageLimits.of(Settings())
    frames = list(video_frames(data, stride=100, limit=3, limits=limits))
    assert [f.index for f in frames] == [0, 1, 2] and frames[0].width == 768
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("broken.png", b"\x89PNG\r\n\x1a\n garbage")
    (refused,) = zip_frames(buffer.getvalue(), 10, limits, max_entries=10, max_inflated=1 << 20)
    assert isinstance(refused, RefusedFrame)
    assert (refused.name, refused.code) == ("broken.png", "undecodable_image")
