"""The ``heatmap`` pose family: top-down heatmap heads (HRNet, ViTPose, SimpleBaseline exports).

``decoder.output`` is ``[batch, K, h, w]``, one heatmap per keypoint, usually a quarter of the
input's resolution. A keypoint is the heatmap's arg-max moved a quarter pixel towards its higher
neighbour on each axis (the sub-pixel refinement of mmpose's MSRA codec and of the original
HRNet code), scaled to the input; its score is the peak value. ``coco17_from`` as in SimCC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.coco import Rect, keypoints
from services.core.families import activate
from services.pose.simcc import COCO17_IDENTITY

QUARTER = 0.25


def refine(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, h, w) → x and y in heatmap pixels (arg-max + quarter-pixel shift) and peak values."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    ys, xs = np.divmod(flat.argmax(axis=1), w)
    rows = np.arange(k)

    def shift(along_x: bool) -> np.ndarray:
        at, size = (xs, w) if along_x else (ys, h)
        before, after = np.clip(at - 1, 0, size - 1), np.clip(at + 1, 0, size - 1)
        if along_x:
            diff = heatmaps[rows, ys, after] - heatmaps[rows, ys, before]
        else:
            diff = heatmaps[rows, after, xs] - heatmaps[rows, before, xs]
        inside = (at > 0) & (at < size - 1)
        return QUARTER * np.sign(diff) * inside

    return xs + shift(True), ys + shift(False), flat.max(axis=1)


class HeatmapDecoder:
    def __init__(self, spec: dict[str, Any]) -> None:
        decoder = spec["decoder"]
        self.output: str = decoder["output"]
        self.coco17_from = decoder.get("coco17_from") or COCO17_IDENTITY
        self.activation: str = decoder.get("score_activation", "none")

    def __call__(
        self, outputs: dict[str, np.ndarray], i: int, region: Rect
    ) -> list[dict[str, Any]]:
        heatmaps = outputs[self.output][i][self.coco17_from]
        xs, ys, peaks = refine(heatmaps)
        h, w = heatmaps.shape[1:]
        scores = activate(peaks, self.activation)  # none or sigmoid (checked at import)
        return keypoints(region, zip(xs / w, ys / h, scores, strict=True))
