"""Top-down person crops: one padded square per person box, shared by every crop-based pose
model (MoveNet single-pose, MediaPipe pose_landmark).

These models expect one roughly centred person filling a square frame. The crop is 1.25x the
box's longer side, centred on the box, zero-padded where it leaves the image (an affine warp does
crop, pad and resize in one step); model outputs are mapped back through the same square into
the ORIGINAL image's pixels, so clients never see model-frame coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from services.core.models.catalog import COCO17

CROP_SCALE = 1.25


@dataclass(frozen=True, slots=True)
class Square:
    """The crop's square in image pixels: top-left corner and side length."""

    x0: float
    y0: float
    side: float

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """A point given as a fraction of the square → original image pixels."""
        return self.x0 + x * self.side, self.y0 + y * self.side


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


def keypoints(square: Square, points: Iterable[tuple[float, float, float]]) -> list[dict[str, Any]]:
    """COCO-17 (x, y, score) with x/y as fractions of the square → the API's keypoints."""
    named = []
    for name, (x, y, score) in zip(COCO17, points, strict=True):
        px, py = square.to_image(float(x), float(y))
        named.append(
            {"name": name, "x": round(px, 2), "y": round(py, 2), "score": round(float(score), 4)}
        )
    return named
