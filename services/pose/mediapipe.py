"""MediaPipe pose_landmark (BlazePose GHUM lite/full/heavy) on the detector's person crops.

Input: float RGB in [0, 1]. Output: 39 landmarks x (x, y, z, visibility, presence) in crop
pixels, the first 33 being BlazePose's body points; the catalog's ``coco17_from`` picks the 17
COCO keypoints among them, so the API's shape does not change with the model. A keypoint's score
is sigmoid(visibility), times the model's own person-present flag: a crop MediaPipe thinks holds
no one should not yield confident points.

MediaPipe's own pipeline rotates the crop so the body is upright (from its detector's keypoints);
our detector gives axis-aligned boxes, so crops are not rotated — fine for upright people, less
so for lying or inverted ones. MediaPipe also refines each landmark on the model's heatmap
output (a 7x7 window); the build drops that output and we take the regressed points as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.coco import Rect, keypoints
from services.pose.crops import Decode


def prepare(patch: np.ndarray) -> np.ndarray:
    return patch.astype(np.float32) / 255.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def to_coco17(landmarks: np.ndarray, coco17_from: list[int]) -> np.ndarray:
    """(39 x 5) BlazePose rows -> (17 x 5) in COCO-17 order."""
    return landmarks.reshape(-1, 5)[coco17_from]


def decoder(size: int, coco17_from: list[int]) -> Decode:
    """A decoder bound to the model's input size (landmarks come in its pixels) and mapping."""

    def decode(outputs: dict[str, np.ndarray], i: int, region: Rect) -> list[dict[str, Any]]:
        rows = to_coco17(outputs["landmarks"][i], coco17_from)
        present = float(outputs["pose_flag"][i].reshape(-1)[0])
        scores = sigmoid(rows[:, 3]) * present
        return keypoints(region, zip(rows[:, 0] / size, rows[:, 1] / size, scores, strict=True))

    return decode
