"""CenterNet person detection: image → person boxes in the image's own pixels.

The model takes the whole image stretched to 512x512 (as it was trained and as the upstream
library feeds it) and returns its top 100 centre-point detections as input-pixel boxes. We keep
class 0 (person) above ``min_score`` — its person scores run low: 0.2 finds people that 0.3
misses without adding false people on person-free photos — scale the boxes back to the image,
clip them, and drop overlapping duplicates of the same person with NMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from services.detector.boxes import person_boxes

INPUT_SIZE = 512
PERSON_CLASS = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """How a model input maps back to its image: original size."""

    width: int
    height: int


def prepare(rgb: np.ndarray) -> tuple[np.ndarray, Frame]:
    height, width = rgb.shape[:2]
    resized = cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return resized.astype(np.float32), Frame(width, height)


def decode(
    outputs: Mapping[str, np.ndarray], frame: Frame, min_score: float
) -> list[dict[str, Any]]:
    """``outputs["detections"]``: (100, 6) rows of x1, y1, x2, y2 (input pixels), score, class."""
    detections = outputs["detections"]
    keep = (detections[:, 5] == PERSON_CLASS) & (detections[:, 4] >= min_score)
    rows = detections[keep]
    scale = np.array([frame.width, frame.height, frame.width, frame.height]) / INPUT_SIZE
    return person_boxes(rows[:, :4] * scale, rows[:, 4], frame.width, frame.height, min_score)
