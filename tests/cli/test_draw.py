import numpy as np

from services.cli.draw import SKELETON, draw_people

NAMES = sorted({n for limb in SKELETON for n in limb})


def person(points: dict[str, tuple[float, float]], score: float = 0.9) -> dict:
    keypoints = [
        {
            "name": n,
            "x": points.get(n, (0, 0))[0],
            "y": points.get(n, (0, 0))[1],
            "score": score if n in points else 0.0,
        }
        for n in NAMES
    ]
    return {"box": [10, 10, 90, 190], "score": 0.8, "keypoints": keypoints}


def test_limbs_are_drawn_between_confident_keypoints_in_image_pixels():
    canvas = np.zeros((200, 100, 3), np.uint8)
    out = draw_people(canvas, [person({"left_shoulder": (30, 50), "left_elbow": (30, 150)})])
    assert out[100, 30].any()  # midway along the upper arm
    assert not out[100, 70].any()  # nothing drawn where no limb is
    assert not canvas.any()  # the input is left untouched


def test_low_confidence_keypoints_are_not_joined():
    canvas = np.zeros((200, 100, 3), np.uint8)
    out = draw_people(
        canvas, [person({"left_shoulder": (30, 50), "left_elbow": (30, 150)}, score=0.1)]
    )
    assert not out[100, 30].any()
