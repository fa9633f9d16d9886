"""Run the real stage handlers in-process: the reference the served system must match."""

import struct

import numpy as np

from services.core.handler import Task


def run(handler, tasks: list[Task]) -> list[dict]:
    return handler.postprocess(handler.inference(handler.preprocess(tasks)), tasks)


def pipeline(detector, pose, images: list[bytes]) -> list[list[dict]]:
    """detect → keypoints for several images, each stage as one batch."""
    boxes = run(detector, [Task(f"j{i}", "detect", {"image": b}) for i, b in enumerate(images)])
    tasks = [
        Task(f"j{i}", "keypoints", {"image": b, "boxes": o["boxes"]})
        for i, (b, o) in enumerate(zip(images, boxes, strict=True))
    ]
    return [o["people"] for o in run(pose, tasks)]


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment carrying only the Orientation tag (0x0112)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + app1 + jpeg[2:]


def assert_same_people(got: list[dict], expected: list[dict], atol: float) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a["box"], b["box"], atol=atol)
        np.testing.assert_allclose(
            [[k["x"], k["y"], k["score"]] for k in a["keypoints"]],
            [[k["x"], k["y"], k["score"]] for k in b["keypoints"]],
            atol=atol,
        )
        assert [k["name"] for k in a["keypoints"]] == [k["name"] for k in b["keypoints"]]


def keypoints(person: dict) -> dict[str, tuple[float, float, float]]:
    return {k["name"]: (k["x"], k["y"], k["score"]) for k in person["keypoints"]}


def assert_plausible_skeleton(person: dict) -> None:
    x1, y1, x2, y2 = person["box"]
    kp = keypoints(person)
    assert len(person["keypoints"]) == 17
    confident = [v for v in kp.values() if v[2] >= 0.3]
    assert len(confident) >= 8  # the right-hand player turns away: his far side is hidden
    for x, y, _ in confident:  # inside the box, allowing the crop's margin
        margin = 0.15 * max(x2 - x1, y2 - y1)
        assert x1 - margin <= x <= x2 + margin and y1 - margin <= y <= y2 + margin
    hips_y = (kp["left_hip"][1] + kp["right_hip"][1]) / 2
    shoulders_y = (kp["left_shoulder"][1] + kp["right_shoulder"][1]) / 2
    assert kp["nose"][1] < shoulders_y < hips_y  # head above shoulders above hips
    top = y1 + 0.35 * (y2 - y1)  # the head is in the top of the box
    assert max(kp["nose"][1], kp["left_eye"][1], kp["right_eye"][1]) < top
    assert abs(kp["left_shoulder"][1] - kp["right_shoulder"][1]) < 0.1 * (y2 - y1)  # upright
