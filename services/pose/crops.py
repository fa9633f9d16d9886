"""Top-down person crops: one padded rectangle per person box, shared by every crop-based pose
model (MoveNet single-pose, MediaPipe pose_landmark, the generic SimCC and heatmap families).

These models expect one roughly centred person filling their input frame. The crop is the box
enlarged 1.25x and then widened or heightened to the input's aspect (a square for MoveNet and
MediaPipe; 192x256 for RTMPose/HRNet-style inputs, as mmpose's top-down affine does), centred on
the box, zero-padded where it leaves the image (an affine warp does crop, pad and resize in one
step); model outputs are mapped back through the same rectangle into the ORIGINAL image's
pixels, so clients never see model-frame coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from services.core.coco import Rect

CROP_SCALE = 1.25


# A model family's decoder: (model outputs, crop index in the batch, its rect) -> keypoints.
Decode = Callable[[dict[str, np.ndarray], int, Rect], list[dict[str, Any]]]


def crop(rgb: np.ndarray, box: list[float], width: int, height: int) -> tuple[np.ndarray, Rect]:
    """The person crop for a ``width`` x ``height`` input; for a square input this is the
    square of 1.25x the box's longer side."""
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 1.0) * CROP_SCALE, max(y2 - y1, 1.0) * CROP_SCALE
    aspect = width / height
    w, h = (w, w / aspect) if w > h * aspect else (h * aspect, h)
    rect = Rect((x1 + x2 - w) / 2, (y1 + y2 - h) / 2, w, h)
    sx, sy = width / w, height / h
    affine = np.array([[sx, 0, -rect.x0 * sx], [0, sy, -rect.y0 * sy]], dtype=np.float64)
    patch = cv2.warpAffine(
        rgb,
        affine,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return patch, rect
