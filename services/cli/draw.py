"""Skeletons drawn on the submitted photo: proof that coordinates are in its own pixel space."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from services.core.coco import SKELETON

_LEFT, _RIGHT, _CENTRE = (255, 140, 0), (0, 170, 255), (60, 220, 60)


def draw_people(
    rgb: np.ndarray, people: list[dict[str, Any]], min_score: float = 0.3
) -> np.ndarray:
    """Return a copy of ``rgb`` with each person's box and confident limbs drawn."""
    canvas = rgb.copy()
    scale = max(1, round(max(canvas.shape[:2]) / 400))
    for person in people:
        x1, y1, x2, y2 = (round(v) for v in person["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _CENTRE, scale)
        cv2.putText(
            canvas,
            f"{person['score']:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * scale,
            _CENTRE,
            scale,
        )
        points = {k["name"]: k for k in person["keypoints"] if k["score"] >= min_score}
        for a, b in SKELETON:
            if a in points and b in points:
                colour = (
                    _LEFT if a.startswith("left") else _RIGHT if a.startswith("right") else _CENTRE
                )
                cv2.line(canvas, _xy(points[a]), _xy(points[b]), colour, 2 * scale, cv2.LINE_AA)
        for point in points.values():
            cv2.circle(canvas, _xy(point), 2 * scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def _xy(point: dict[str, Any]) -> tuple[int, int]:
    return round(point["x"]), round(point["y"])
