"""The last step every detector family shares: candidate person boxes in image pixels → the
stage's output (clipped, de-duplicated, best first)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

NMS_IOU = 0.5


def person_boxes(
    boxes: np.ndarray, scores: np.ndarray, width: int, height: int, min_score: float
) -> list[dict[str, Any]]:
    """``boxes``: (n, 4) x1, y1, x2, y2 in the image's pixels, ``scores`` (n,), all already at or
    above ``min_score``. Boxes are clipped to the image, slivers (≤ 1 px) dropped, and overlapping
    duplicates of the same person removed with NMS."""
    if len(boxes) == 0:
        return []
    boxes = boxes.astype(np.float64, copy=True)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    valid = ((boxes[:, 2:] - boxes[:, :2]) > 1).all(axis=1)
    boxes, scores = boxes[valid], scores[valid]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    chosen = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), min_score, NMS_IOU)
    order = sorted(np.array(chosen).reshape(-1).tolist(), key=lambda i: -scores[i])
    return [
        {"box": [round(float(v), 2) for v in boxes[i]], "score": round(float(scores[i]), 4)}
        for i in order
    ]
