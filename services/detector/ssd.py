"""The ``ssd`` detector family: boxes and scores as separate outputs, already one row per
candidate — SSD/RetinaNet/Faster R-CNN exports (``boxes`` + ``scores`` + ``labels``, TF's object
detection API with ``yxyx`` normalised boxes) and DETR-style set predictors (``pred_boxes``
``cxcywh`` normalised + ``pred_logits`` with a trailing "no object" class).

``decoder`` keys besides the common ones (services/detector/decoding.py): ``boxes`` (output name,
``[batch, n, 4]``), ``scores`` (``[batch, n]`` with a ``labels`` output ``[batch, n]`` of class
ids, or ``[batch, n, classes]`` per-class scores), ``labels`` (output name or null) and
``background``: ``none``, ``first`` or ``last`` — a class column that is "nothing here" (SSD's
background, DETR's no-object): it takes part in the activation (DETR's softmax) but is never a
detection; class ids stay the model's column numbers, so ``labels`` index them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from services.core.families import activate
from services.core.model_input import Placement
from services.detector.decoding import DetectionDecoder

_BACKGROUND_COLUMN = {"none": None, "first": 0, "last": -1}


class BoxesDecoder(DetectionDecoder):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        decoder = spec["decoder"]
        self.boxes: str = decoder["boxes"]
        self.scores: str = decoder["scores"]
        self.label_ids: str | None = decoder.get("labels")
        self.background: str = decoder.get("background", "none")

    def decode(
        self, outputs: Mapping[str, np.ndarray], placement: Placement, min_score: float
    ) -> list[dict[str, Any]]:
        scores = activate(outputs[self.scores].astype(np.float64), self.activation)
        if scores.ndim == 1:  # one score per row, its class in the labels output
            class_ids = outputs[self.label_ids].astype(np.int64).reshape(-1)
        else:
            class_ids, scores = self.best_class(scores, _BACKGROUND_COLUMN[self.background])
        return self.finish(outputs[self.boxes], scores, class_ids, placement, min_score)
