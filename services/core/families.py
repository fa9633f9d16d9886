"""The generic model families' shared vocabulary: the values model.yaml's ``decoder`` keys may
take (docs/model-families.md), read by both sides of the contract — the importer that writes
and checks them (``services.factory``) and the stages' decoders that act on them — so the
two can never disagree on a spelling.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("none", "sigmoid", "softmax")
BOX_FORMATS = ("xyxy", "cxcywh", "xywh", "yxyx")
YOLO_LAYOUTS = ("anchors-first", "channels-first")
BACKGROUNDS = ("none", "first", "last")
# Boxes one image may yield: a YOLO head has thousands of candidates, and a low threshold on a
# busy photo must not turn into an unbounded result. Per model: ``decoder.max_detections``.
MAX_DETECTIONS = 100


def activate(scores: np.ndarray, how: str) -> np.ndarray:
    """Scores as an output gives them → probabilities (``score_activation``; softmax over the
    last axis)."""
    if how == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scores))
    if how == "softmax":
        shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return scores
