"""How a model wants its pixels, read from its model.yaml: the declared input contract of the
generic model families (docs/model-families.md), shared by every stage that serves them.

Two separate steps, because stages differ only in the first: **geometry** (the whole image
letterboxed or stretched into the input — detectors; a person crop — pose; a centre crop —
classifiers) and **pixel format** (colour order, ``(pixel - mean) / std``, NCHW or NHWC, dtype),
which is the same for all. Keeping both declarative is what lets a user's own ONNX file be served
with no code: ``posefleet models import`` writes these keys, the stages read them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

Layout = Literal["NCHW", "NHWC"]
Resize = Literal["letterbox", "stretch"]


def input_size(spec: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the model's image input: ``preprocessing.size`` ([w, h] or one side
    of a square), else the input tensor's static spatial dims."""
    size = spec.get("preprocessing", {}).get("size")
    if isinstance(size, int):
        return size, size
    if size:
        return int(size[0]), int(size[1])
    shape = spec["inputs"][0]["shape"]
    layout = spec.get("preprocessing", {}).get("layout", "NCHW")
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    return int(width), int(height)


@dataclass(frozen=True, slots=True)
class PixelFormat:
    """RGB uint8 HxWx3 pixels → the model's input tensor for one image."""

    layout: Layout
    bgr: bool
    mean: np.ndarray
    std: np.ndarray
    dtype: np.dtype

    @classmethod
    def of(cls, spec: dict[str, Any]) -> PixelFormat:
        prep = spec.get("preprocessing", {})
        return cls(
            layout=prep.get("layout", "NCHW"),
            bgr=prep.get("color", "RGB") == "BGR",
            mean=np.asarray(prep.get("mean", [0.0] * 3), np.float32),
            std=np.asarray(prep.get("std", [1.0] * 3), np.float32),
            dtype=np.dtype(spec["inputs"][0]["dtype"]),
        )

    def tensor(self, rgb: np.ndarray) -> np.ndarray:
        pixels = rgb[..., ::-1] if self.bgr else rgb
        if np.issubdtype(self.dtype, np.integer):  # integer inputs take raw 0-255 pixels
            scaled = pixels.astype(self.dtype)
        else:
            scaled = ((pixels.astype(np.float32) - self.mean) / self.std).astype(self.dtype)
        return np.ascontiguousarray(scaled.transpose(2, 0, 1) if self.layout == "NCHW" else scaled)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the image sits in the model input: model px = image px * scale + offset."""

    width: int  # the original image's size
    height: int
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        """(n, 4) x1, y1, x2, y2 in model-input pixels → the original image's pixels."""
        scale = np.array([self.scale_x, self.scale_y] * 2)
        offset = np.array([self.offset_x, self.offset_y] * 2)
        return (np.asarray(xyxy, np.float64) - offset) / scale


def place(
    rgb: np.ndarray,
    width: int,
    height: int,
    resize: Resize = "letterbox",
    align: Literal["center", "top-left"] = "center",
    pad: int = 114,
) -> tuple[np.ndarray, Placement]:
    """The whole image in a ``width`` x ``height`` input. ``letterbox`` keeps the aspect and
    pads (centred with grey 114 is what Ultralytics' YOLO exports were trained on);
    ``stretch`` resizes each axis on its own."""
    h, w = rgb.shape[:2]
    if resize == "stretch":
        canvas = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        return canvas, Placement(w, h, width / w, height / h)
    scale = min(width / w, height / h)
    scaled_w, scaled_h = max(1, round(w * scale)), max(1, round(h * scale))
    ox, oy = ((width - scaled_w) // 2, (height - scaled_h) // 2) if align == "center" else (0, 0)
    canvas = np.full((height, width, 3), pad, np.uint8)
    canvas[oy : oy + scaled_h, ox : ox + scaled_w] = cv2.resize(
        rgb, (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR
    )
    return canvas, Placement(w, h, scaled_w / w, scaled_h / h, ox, oy)


class WholeImageInput:
    """``prepare`` for whole-image models (the detector families): geometry + pixel format."""

    def __init__(self, spec: dict[str, Any]) -> None:
        prep = spec.get("preprocessing", {})
        self.width, self.height = input_size(spec)
        self.resize: Resize = prep.get("resize", "letterbox")
        self.align = prep.get("letterbox_align", "center")
        self.pad = int(prep.get("pad_value", 114))
        self.pixels = PixelFormat.of(spec)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, Placement]:
        canvas, placement = place(rgb, self.width, self.height, self.resize, self.align, self.pad)
        return self.pixels.tensor(canvas), placement
