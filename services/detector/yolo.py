"""The ``yolo`` detector family: one output of candidate boxes with per-class scores, NMS done
by us — the head most exported one-stage detectors have (Ultralytics YOLOv5/v8/11, YOLOX,
many others after their own decoding).

``decoder`` keys besides the common ones (services/detector/decoding.py): ``output`` (its name),
``layout`` — ``anchors-first`` ``[batch, anchors, 4 + classes]`` or ``channels-first``
``[batch, 4 + classes, anchors]`` (YOLOv8's raw export is ``[1, 84, 8400]``) — and
``objectness``: a fifth column multiplied into every class score (YOLOv5's ``[.., 5 + classes]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from services.core.families import activate
from services.core.model_input import Placement
from services.detector.decoding import DetectionDecoder


class YoloDecoder(DetectionDecoder):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        decoder = spec["decoder"]
        self.output: str = decoder["output"]
        self.channels_first = decoder.get("layout", "anchors-first") == "channels-first"
        self.objectness = bool(decoder.get("objectness", False))

    def decode(
        self, outputs: Mapping[str, np.ndarray], placement: Placement, min_score: float
    ) -> list[dict[str, Any]]:
        rows = outputs[self.output]
        rows = rows.T if self.channels_first else rows
        first_class = 5 if self.objectness else 4
        class_scores = activate(rows[:, first_class:], self.activation)
        if self.objectness:
            class_scores = class_scores * activate(rows[:, 4:5], self.activation)
        class_ids, scores = self.best_class(class_scores)
        return self.finish(rows[:, :4], scores, class_ids, placement, min_score)
