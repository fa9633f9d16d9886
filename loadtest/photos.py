"""The benchmarks' workload: single-person photos (the one the ≥ 20 img/s target is stated for),
made from scikit-image's bundled astronaut so every machine measures the same bytes."""

from __future__ import annotations

import cv2
from skimage import data


def photos() -> list[bytes]:
    """Three JPEGs: the 512x512 astronaut, its mirror image, and a 384x384 copy."""
    astronaut = data.astronaut()
    variants = [astronaut, cv2.flip(astronaut, 1), cv2.resize(astronaut, (384, 384))]
    return [cv2.imencode(".jpg", cv2.cvtColor(v, cv2.COLOR_RGB2BGR))[1].tobytes() for v in variants]
