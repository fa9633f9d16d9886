"""MoveNet single-pose (Lightning 192², Thunder 256²): int32 RGB 0-255 in, (y, x, score) per
COCO-17 keypoint out, normalised to the crop."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.coco import Rect, keypoints


def prepare(patch: np.ndarray) -> np.ndarray:
    return patch.astype(np.int32)


def decode(outputs: dict[str, np.ndarray], i: int, region: Rect) -> list[dict[str, Any]]:
    """``outputs["keypoints"][i]``: (1, 17, 3) rows of y, x, score."""
    return keypoints(region, ((x, y, s) for y, x, s in outputs["keypoints"][i].reshape(17, 3)))
