"""Every crop-based pose model in the catalog serves the pose stage — a settings change — and
gives plausible COCO-17 skeletons on the bundled photos, in the same API shape."""

import numpy as np
import pytest

from services.core.coco import COCO17, Rect
from services.core.handler import HandlerContext
from services.core.settings import get_settings
from services.factory.catalog import BLAZEPOSE_TO_COCO17, CATALOG
from services.pose import mediapipe
from services.pose.handler import PoseHandler
from services.pose.mediapipe import to_coco17
from tests.inprocess import assert_plausible_skeleton, keypoints, pipeline

POSE_MODELS = [
    name
    for name, recipe in CATALOG.items()
    if recipe.preprocessing.get("family") in ("movenet", "mediapipe-pose")
]


@pytest.fixture(scope="module", params=POSE_MODELS)
def pose_model(request, build_catalog) -> PoseHandler:
    build_catalog(request.param)
    handler = PoseHandler()
    handler.initialize(HandlerContext("pose", get_settings(), model=request.param))
    return handler


def test_one_person_in_astronaut(detector, pose_model, photos):
    (people,) = pipeline(detector, pose_model, [photos["astronaut"]])
    assert len(people) == 1
    assert_plausible_skeleton(people[0])
    kp = keypoints(people[0])
    assert kp["left_shoulder"][0] > kp["right_shoulder"][0]  # she faces the camera


def test_two_people_in_basketball(detector, pose_model, photos):
    (people,) = pipeline(detector, pose_model, [photos["basketball1"]])
    assert len(people) == 2
    facing, turned = sorted(people, key=lambda p: p["box"][0])
    assert_plausible_skeleton(facing)
    # The right-hand player turns away; MediaPipe full tilts his shoulders 50 px (11% of his
    # height, over the 10% the upright check allows), so only the head-above-hips order and
    # the points-in-box part are asserted for him.
    kp = keypoints(turned)
    assert kp["nose"][1] < (kp["left_hip"][1] + kp["right_hip"][1]) / 2
    x1, y1, x2, y2 = turned["box"]
    margin = 0.15 * max(x2 - x1, y2 - y1)
    for x, y, score in kp.values():
        if score >= 0.3:
            assert x1 - margin <= x <= x2 + margin and y1 - margin <= y <= y2 + margin


def test_models_agree_with_movenet_lightning_on_a_full_body(detector, pose_model, pose, photos):
    """Against the served default, on the player facing the camera (full body in view):
    measured 16 of 16 confident keypoints within 0.1 x box for every model. On the astronaut
    (cut at the waist) MediaPipe's full-body prior pulls shoulders and hips up — a documented
    limitation, not asserted here."""
    images = [photos["basketball1"]]
    (theirs,), (ours,) = (pipeline(detector, p, images) for p in (pose, pose_model))
    a, b = (keypoints(min(people, key=lambda p: p["box"][0])) for people in (theirs, ours))
    x1, y1, x2, y2 = min(ours, key=lambda p: p["box"][0])["box"]
    tolerance = 0.1 * max(x2 - x1, y2 - y1)
    close = [
        np.hypot(a[n][0] - b[n][0], a[n][1] - b[n][1]) <= tolerance
        for n in COCO17
        if a[n][2] >= 0.3 and b[n][2] >= 0.3
    ]
    assert len(close) >= 12 and np.mean(close) >= 0.9


def test_blazepose_33_maps_to_coco17_in_order():
    rows = np.arange(39 * 5, dtype=np.float32).reshape(39, 5)
    mapped = to_coco17(rows.reshape(-1), list(BLAZEPOSE_TO_COCO17))
    assert mapped.shape == (17, 5)
    assert list(mapped[:, 0] // 5) == [
        0,
        2,
        5,
        7,
        8,
        11,
        12,
        13,
        14,
        15,
        16,
        23,
        24,
        25,
        26,
        27,
        28,
    ]
    assert CATALOG["mediapipe-pose-full"].preprocessing["coco17_from"] == list(BLAZEPOSE_TO_COCO17)


def test_mediapipe_landmarks_map_from_crop_pixels_to_the_image_scored_by_visibility():
    landmarks = np.zeros((2, 39, 5), np.float32)
    landmarks[1, 0] = (128, 64, -30, 0.0, 5)  # nose: top centre of the 256 crop, visibility 0
    landmarks[1, 11] = (256, 256, -30, 4.0, 5)  # left shoulder: the crop's far corner
    outputs = {
        "landmarks": landmarks.reshape(2, 195),
        "pose_flag": np.array([[1.0], [0.5]], np.float32),
    }
    decode = mediapipe.decoder(256, list(BLAZEPOSE_TO_COCO17))
    kp = {k["name"]: k for k in decode(outputs, 1, Rect(100.0, 50.0, 512.0, 512.0))}
    assert (kp["nose"]["x"], kp["nose"]["y"]) == (356.0, 178.0)
    assert (kp["left_shoulder"]["x"], kp["left_shoulder"]["y"]) == (612.0, 562.0)
    # The graph gives visibility as a logit (MediaPipe applies the sigmoid after the model),
    # scaled by the crop's person-present probability.
    assert kp["nose"]["score"] == 0.25
    assert kp["left_shoulder"]["score"] == pytest.approx(0.5 / (1 + np.exp(-4.0)), abs=1e-4)
