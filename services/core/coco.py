"""The COCO-17 keypoint vocabulary every pose stage answers in, whatever its model.

Stages map their model's own points onto these names (MediaPipe's 33 landmarks, MoveNet's 17), so
clients, the CLI's drawing and the console all read one shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

COCO17 = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


# COCO-17 limbs by keypoint name.
SKELETON = (
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"),
    ("nose", "left_eye"),
    ("nose", "right_eye"),
    ("left_eye", "left_ear"),
    ("right_eye", "right_ear"),
)


@dataclass(frozen=True, slots=True)
class Rect:
    """The part of the image a model saw (a person crop, a letterboxed frame), in image pixels:
    top-left corner and size — the model input's aspect, so model outputs given as fractions of
    the input map back to the ORIGINAL image."""

    x0: float
    y0: float
    width: float
    height: float

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """A point given as fractions of the rect's width and height → image pixels."""
        return self.x0 + x * self.width, self.y0 + y * self.height


def keypoints(rect: Rect, points: Iterable[tuple[float, float, float]]) -> list[dict[str, Any]]:
    """COCO-17 (x, y, score) with x/y as fractions of ``rect`` → the API's keypoints."""
    named = []
    for name, (x, y, score) in zip(COCO17, points, strict=True):
        px, py = rect.to_image(float(x), float(y))
        named.append(
            {"name": name, "x": round(px, 2), "y": round(py, 2), "score": round(float(score), 4)}
        )
    return named
