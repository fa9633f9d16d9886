"""The ``simcc`` pose family: top-down SimCC heads (RTMPose and other mmpose SimCC exports).

SimCC classifies each keypoint's x and y separately: ``decoder.x`` is ``[batch, K, W * r]`` and
``decoder.y`` ``[batch, K, H * r]``, one bin per 1/r input pixel (``split_ratio`` r, 2.0 in
RTMPose). A keypoint sits at the arg-max bins divided by r, in input pixels; its score is the
smaller of the two maxima (mmpose's ``get_simcc_maximum``), after ``score_activation`` when the
export gives logits. ``coco17_from`` picks COCO-17 among K keypoints (identity when K is 17;
the first 17 of COCO-WholeBody's 133 or Halpe's 26 are COCO-17's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.coco import Rect, keypoints
from services.core.families import activate
from services.core.model_input import input_size

COCO17_IDENTITY = list(range(17))


class SimccDecoder:
    def __init__(self, spec: dict[str, Any]) -> None:
        decoder = spec["decoder"]
        self.x, self.y = decoder["x"], decoder["y"]
        self.ratio = float(decoder.get("split_ratio", 2.0))
        self.width, self.height = input_size(spec)
        self.coco17_from = decoder.get("coco17_from") or COCO17_IDENTITY
        self.activation: str = decoder.get("score_activation", "none")

    def __call__(
        self, outputs: dict[str, np.ndarray], i: int, region: Rect
    ) -> list[dict[str, Any]]:
        simcc_x = activate(outputs[self.x][i][self.coco17_from], self.activation)
        simcc_y = activate(outputs[self.y][i][self.coco17_from], self.activation)
        xs = simcc_x.argmax(axis=1) / self.ratio / self.width
        ys = simcc_y.argmax(axis=1) / self.ratio / self.height
        scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
        return keypoints(region, zip(xs, ys, scores, strict=True))
