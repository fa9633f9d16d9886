"""Image sniffing and decoding shared by the gateway (validation) and the workers (pixels).

Decoding goes through OpenCV, which applies the EXIF orientation, so every stage and every
coordinate we return lives in the image as a person would view it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from services.core.handler import Task, TaskError

# Magic numbers of the formats we accept; a Content-Type header alone proves nothing.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
)


def sniff_image_type(data: bytes) -> str | None:
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            mime != "image/webp" or data[:4] == b"RIFF"
        ):
            return mime
    return None


class UndecodableImage(ValueError):
    pass


def decode_image(data: bytes) -> np.ndarray:
    """Return an HxWx3 RGB uint8 array, EXIF orientation applied."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None or bgr.size == 0:
        raise UndecodableImage("the image data could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def task_pixels(data: bytes) -> np.ndarray:
    """A worker's decode: undecodable bytes are the task's own bad input, which fails its job
    with ``invalid_input`` instead of being retried."""
    try:
        return decode_image(data)
    except UndecodableImage as exc:
        raise TaskError(str(exc)) from None


def whole_image_batch(
    tasks: list[Task], prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]]
) -> tuple[np.ndarray, list[Any]]:
    """Whole-image stages: each task's image through ``prepare`` (tensor, how to map back),
    stacked into one batch for one model run."""
    tensors, frames = [], []
    for task in tasks:
        tensor, frame = prepare(task_pixels(task.inputs["image"]))
        tensors.append(tensor)
        frames.append(frame)
    return np.stack(tensors), frames


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a letterboxed model input maps back to its image: the original size and the scale
    (model px per image px); the square's side covers the image's longer side."""

    width: int
    height: int
    scale: float

    @property
    def side(self) -> int:
        return max(self.width, self.height)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The image scaled to fit a ``size`` square, top-left, zero padded right and bottom (aspect
    kept: whole-image models such as NanoDet and MultiPose see undistorted people), uint8."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: scaled[1], : scaled[0]] = cv2.resize(rgb, scaled, interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(width, height, scale)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
