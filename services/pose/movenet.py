"""MoveNet single-pose, run top-down: one padded square crop per person box.

MoveNet expects one roughly centred person filling a square frame. The crop is 1.25x the box's
longer side, centred on the box, zero-padded where it leaves the image (an affine warp does crop,
pad and resize in one step), and its (y, x) outputs — normalised to the crop — are mapped back
through the same square into the ORIGINAL image's pixels, so clients never see model-frame
coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from services.core.models.catalog import COCO17

INPUT_SIZE = 192
CROP_SCALE = 1.25


@dataclass(frozen=True, slots=True)
class Square:
    """The crop's square in image pixels: top-left corner and side length."""

    x0: float
    y0: float
    side: float


def crop(rgb: np.ndarray, box: list[float]) -> tuple[np.ndarray, Square]:
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1, 1.0) * CROP_SCALE
    square = Square((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side)
    s = INPUT_SIZE / side
    affine = np.array([[s, 0, -square.x0 * s], [0, s, -square.y0 * s]], dtype=np.float64)
    patch = cv2.warpAffine(
        rgb,
        affine,
        (INPUT_SIZE, INPUT_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return patch.astype(np.int32), square


def decode(output: np.ndarray, square: Square) -> list[dict[str, Any]]:
    """``output``: (1, 17, 3) rows of y, x, score normalised to the crop."""
    points = output.reshape(17, 3)
    return [
        {
            "name": name,
            "x": round(float(square.x0 + x * square.side), 2),
            "y": round(float(square.y0 + y * square.side), 2),
            "score": round(float(score), 4),
        }
        for name, (y, x, score) in zip(COCO17, points, strict=True)
    ]
