"""Top-down person crops: one padded square per person box, shared by every crop-based pose
model (MoveNet single-pose, MediaPipe pose_landmark).

These models expect one roughly centred person filling a square frame. The crop is 1.25x the
box's longer side, centred on the box, zero-padded where it leaves the image (an affine warp does
crop, pad and resize in one step); model outputs are mapped back through the same square into
the ORIGINAL image's pixels, so clients never see model-frame coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from services.core.coco import Square

CROP_SCALE = 1.25


# A model family's decoder: (model outputs, crop index in the batch, its square) -> keypoints.
Decode = Callable[[dict[str, np.ndarray], int, Square], list[dict[str, Any]]]


def crop(rgb: np.ndarray, box: list[float], size: int) -> tuple[np.ndarray, Square]:
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 1.0) * CROP_SCALE
    square = Square((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side)
    s = size / side
    affine = np.array([[s, 0, -square.x0 * s], [0, s, -square.y0 * s]], dtype=np.float64)
    patch = cv2.warpAffine(
        rgb,
        affine,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return patch, square
