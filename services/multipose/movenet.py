"""MoveNet MultiPose, run bottom-up: the whole image in, up to six people with skeletons out.

The model finds people itself (a CenterNet-style head with its own NMS), so this stage needs no
detector. Its graph accepts any size that is a multiple of 32; we feed a fixed 256x256 square —
the image scaled to fit, top-left, zero padded, as @vladmandic/human pads it — so every image of a
batch has the same shape and one ``session.run`` serves the batch. Outputs are normalised to that
square; scaling by the image's longer side maps them back to the ORIGINAL image's pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.coco import COCO17, Rect, keypoints
from services.core.imaging import Letterbox, letterbox

INPUT_SIZE = 256
KEYPOINTS = len(COCO17)


def prepare(rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
    """(256, 256, 3) int32 RGB 0-255 input: the image letterboxed."""
    canvas, frame = letterbox(rgb, INPUT_SIZE)
    return canvas.astype(np.int32), frame


def decode(output: np.ndarray, frame: Letterbox, min_score: float) -> list[dict[str, Any]]:
    """``output``: (6, 56) rows of 17 x (y, x, score), then ymin, xmin, ymax, xmax, score, all
    normalised to the square. People at or above ``min_score``, best first, in the pose stage's
    shape."""
    people = []
    for row in sorted(output, key=lambda r: -r[-1]):
        score = float(row[-1])
        if score < min_score:
            break
        ymin, xmin, ymax, xmax = row[3 * KEYPOINTS : 3 * KEYPOINTS + 4] * frame.side
        box = [
            min(max(xmin, 0.0), frame.width),
            min(max(ymin, 0.0), frame.height),
            min(max(xmax, 0.0), frame.width),
            min(max(ymax, 0.0), frame.height),
        ]
        points = row[: 3 * KEYPOINTS].reshape(KEYPOINTS, 3)
        square = Rect(0.0, 0.0, frame.side, frame.side)  # the model's square, image pixels
        people.append(
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(score, 4),
                "keypoints": keypoints(square, ((x, y, s) for y, x, s in points)),
            }
        )
    return people
