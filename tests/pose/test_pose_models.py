"""The real models on bundled photos: people found, skeletons plausible, pixels original."""

import cv2
import numpy as np
import pytest

from services.core.handler import Task, TaskError
from services.core.imaging import decode_image
from tests.conftest import encode
from tests.inprocess import (
    assert_plausible_skeleton,
    assert_same_people,
    keypoints,
    pipeline,
    run,
    with_exif_orientation,
)


def test_one_person_in_astronaut(detector, pose, photos):
    (people,) = pipeline(detector, pose, [photos["astronaut"]])
    assert len(people) == 1
    x1, _y1, x2, y2 = people[0]["box"]
    assert x1 < 60 and x2 > 300 and y2 > 450  # she fills the left two-thirds of the frame
    assert_plausible_skeleton(people[0])
    kp = keypoints(people[0])
    # Facing the camera: her left shoulder is on the image's right.
    assert kp["left_shoulder"][0] > kp["right_shoulder"][0]


@pytest.mark.parametrize("name", ["basketball1", "basketball2"])
def test_two_people_in_basketball(detector, pose, photos, name):
    (people,) = pipeline(detector, pose, [photos[name]])
    assert len(people) == 2
    left, right = sorted(people, key=lambda p: p["box"][0])
    assert left["box"][2] < 320 < right["box"][0]  # one each side of the 640 px frame
    for person in people:
        assert_plausible_skeleton(person)


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_people_in_person_free_photos_is_a_normal_result(detector, pose, photos, name):
    assert pipeline(detector, pose, [photos[name]]) == [[]]


def test_batch_equals_one_at_a_time(detector, pose, photos):
    images = [photos["basketball1"], photos["astronaut"], photos["coffee"], photos["basketball2"]]
    together = pipeline(detector, pose, images)
    for image, batched in zip(images, together, strict=True):
        (alone,) = pipeline(detector, pose, [image])
        assert_same_people(batched, alone, atol=0.05)


def test_exif_rotated_photo_gives_keypoints_in_the_displayed_frame(detector, pose, photos):
    raw = decode_image(photos["basketball1"])  # 640 x 480
    tagged = with_exif_orientation(encode(raw, ".jpg"), 6)  # displayed rotated 90° clockwise
    upright = encode(cv2.rotate(raw, cv2.ROTATE_90_CLOCKWISE), ".jpg")
    assert decode_image(tagged).shape[:2] == (640, 480)
    (from_exif,), (from_pixels,) = (pipeline(detector, pose, [img]) for img in (tagged, upright))
    assert len(from_exif) == len(from_pixels) >= 1
    for a, b in zip(
        sorted(from_exif, key=lambda p: p["box"][1]),
        sorted(from_pixels, key=lambda p: p["box"][1]),
        strict=True,
    ):
        np.testing.assert_allclose(a["box"], b["box"], atol=8)
        nose_a, nose_b = keypoints(a)["nose"], keypoints(b)["nose"]
        assert abs(nose_a[0] - nose_b[0]) < 8 and abs(nose_a[1] - nose_b[1]) < 8
        assert max(k["x"] for k in a["keypoints"]) <= 480 + 40  # the rotated frame's width


def test_garbage_bytes_are_a_task_error(detector, pose):
    with pytest.raises(TaskError, match="could not be decoded"):
        detector.preprocess([Task("j", "detect", {"image": b"\xff\xd8\xff garbage"})])
    box = {"box": [0, 0, 10, 10], "score": 0.9}
    with pytest.raises(TaskError):
        pose.preprocess([Task("j", "keypoints", {"image": b"nope", "boxes": [box]})])


def test_pose_of_a_box_at_the_image_edge_is_padded_not_shifted(pose, photos):
    # A box touching the right edge: the square crop extends past the image and is zero-padded,
    # so keypoints must still land inside the image near the person.
    (out,) = run(
        pose,
        [
            Task(
                "j",
                "k",
                {
                    "image": photos["basketball1"],
                    "boxes": [{"box": [489, 14, 640, 474], "score": 0.3}],
                },
            )
        ],
    )
    kp = keypoints(out["people"][0])
    assert 480 < kp["nose"][0] < 640 and kp["nose"][1] < 200
