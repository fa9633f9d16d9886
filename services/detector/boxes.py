"""The last step every detector family shares: candidate boxes in image pixels → the stage's
output (clipped, de-duplicated, best first)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

NMS_IOU = 0.5


def person_boxes(
    boxes: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    min_score: float,
    class_ids: np.ndarray | None = None,
    labels: Sequence[str] = (),
    iou: float = NMS_IOU,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """``boxes``: (n, 4) x1, y1, x2, y2 in the image's pixels, ``scores`` (n,), all already at or
    above ``min_score``. Boxes are clipped to the image, slivers (≤ 1 px) dropped, and overlapping
    duplicates of the same object removed with NMS — per class when ``class_ids`` are given (the
    generic families), in which case each box also carries its ``label``. At most ``limit``."""
    if len(boxes) == 0:
        return []
    boxes = boxes.astype(np.float64, copy=True)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    valid = ((boxes[:, 2:] - boxes[:, :2]) > 1).all(axis=1)
    boxes, scores = boxes[valid], scores[valid]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    if class_ids is None:
        chosen = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), min_score, iou)
    else:
        class_ids = class_ids[valid]
        chosen = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), class_ids.tolist(), min_score, iou
        )
    order = sorted(np.array(chosen).reshape(-1).tolist(), key=lambda i: -scores[i])[:limit]
    found = []
    for i in order:
        box: dict[str, Any] = {
            "box": [round(float(v), 2) for v in boxes[i]],
            "score": round(float(scores[i]), 4),
        }
        if class_ids is not None:
            k = int(class_ids[i])
            box["label"] = labels[k] if k < len(labels) else str(k)
        found.append(box)
    return found
