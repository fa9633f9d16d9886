"""What the generic detector families (``yolo``, ``ssd``) share: the model.yaml ``decoder``
contract's common keys (docs/model-families.md), box formats, score activations, class
filtering and the way back from model-input pixels to the image.

Common keys: ``box_format`` (``xyxy``, ``cxcywh``, ``xywh``, ``yxyx``), ``normalized`` (boxes
as fractions of the input size instead of input pixels), ``classes`` (the class ids kept; null =
all; person-detection imports keep the person class), ``score_activation`` (``none``,
``sigmoid``, ``softmax``), ``nms_iou`` and ``max_detections``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from services.core.families import MAX_DETECTIONS
from services.core.model_input import Placement, WholeImageInput
from services.detector.boxes import NMS_IOU, person_boxes


def to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """(n, 4) boxes in ``box_format`` → x1, y1, x2, y2."""
    a, b, c, d = (boxes[:, i].astype(np.float64) for i in range(4))
    if box_format == "cxcywh":
        return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=1)
    if box_format == "xywh":
        return np.stack([a, b, a + c, b + d], axis=1)
    if box_format == "yxyx":
        return np.stack([b, a, d, c], axis=1)
    return np.stack([a, b, c, d], axis=1)


class DetectionDecoder:
    """Reads the common keys; subclasses turn their outputs into (boxes, per-class scores)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        decoder = spec["decoder"]
        self.prepare = WholeImageInput(spec)
        self.box_format: str = decoder.get("box_format", "xyxy")
        self.normalized = bool(decoder.get("normalized", False))
        self.classes: list[int] | None = decoder.get("classes")
        self.activation: str = decoder.get("score_activation", "none")
        self.iou = float(decoder.get("nms_iou", NMS_IOU))
        self.limit = int(decoder.get("max_detections", MAX_DETECTIONS))
        self.labels: list[str] = list(spec.get("labels") or [])

    def best_class(
        self, class_scores: np.ndarray, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, classes) scores → each row's best kept class id (its column) and its score;
        ``exclude`` is a column that is never a class (a background / no-object column)."""
        columns = class_scores.shape[1]
        kept = np.arange(columns) if self.classes is None else np.asarray(self.classes, np.int64)
        if exclude is not None:
            kept = kept[kept != exclude % columns]
        sub = class_scores[:, kept]
        best = sub.argmax(axis=1)
        return kept[best], sub[np.arange(len(sub)), best]

    def finish(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        placement: Placement,
        min_score: float,
    ) -> list[dict[str, Any]]:
        """Boxes in the model's format and frame, with their class and score → the stage's
        boxes in the original image's pixels."""
        keep = scores >= min_score
        if self.classes is not None:
            keep &= np.isin(class_ids, self.classes)
        xyxy = to_xyxy(boxes[keep], self.box_format)
        if self.normalized:
            xyxy *= np.array([self.prepare.width, self.prepare.height] * 2)
        return person_boxes(
            placement.to_image(xyxy),
            scores[keep],
            placement.width,
            placement.height,
            min_score,
            class_ids=class_ids[keep],
            labels=self.labels,
            iou=self.iou,
            limit=self.limit,
        )

    def decode(
        self, outputs: Mapping[str, np.ndarray], placement: Placement, min_score: float
    ) -> list[dict[str, Any]]:
        raise NotImplementedError
