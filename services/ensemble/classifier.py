"""An image classifier stage (the ensemble's ``classifier-a`` / ``classifier-b`` roles).

Preprocessing is read from the model's own model.yaml (shorter-side resize, centre crop,
mean/std, colour order, layout, dtype), so swapping the model behind a role is a settings change,
and an imported classifier (``image-classification`` family, docs/model-families.md) needs no
code: its ``decoder`` names the output and whether it gives logits (softmax) or probabilities.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from services.core.families import activate
from services.core.handler import Handler, HandlerContext, Task
from services.core.imaging import task_pixels
from services.core.model_input import PixelFormat
from services.core.runtime.loading import load_model

# How much longer than its shorter side an image is resized along its longer side. Only the
# centre reaches the crop, so a more elongated image is first cut to this band: resizing a
# whole 1x65500 image to 224 across would allocate 224x14.7M pixels (~10 GiB) for a 224x224
# crop. Photos up to 4:1 (every camera and phone format) are resized whole, as before.
RESIZE_SPAN = 4


def centre_crop(rgb: np.ndarray, shorter: int, crop: int) -> np.ndarray:
    """Resize the shorter side to ``shorter``, cut the centre ``crop`` square; what is resized
    is at most ``RESIZE_SPAN`` x ``shorter`` along the longer side, whatever the image."""
    height, width = rgb.shape[:2]
    span = RESIZE_SPAN * min(height, width)
    y0, x0 = max(0, (height - span) // 2), max(0, (width - span) // 2)
    rgb = rgb[y0 : y0 + span, x0 : x0 + span]
    height, width = rgb.shape[:2]
    scale = shorter / min(height, width)
    size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
    resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    y0, x0 = (resized.shape[0] - crop) // 2, (resized.shape[1] - crop) // 2
    return resized[y0 : y0 + crop, x0 : x0 + crop]


class ClassifierHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        if not ctx.model:
            raise ValueError(f"stage '{ctx.stage}' must name its classifier model")
        self.model, self.entry = load_model(ctx, ctx.model)
        prep = self.entry.spec["preprocessing"]
        self.shorter, self.crop = int(prep["resize_shorter"]), int(prep["crop"])
        self.pixels = PixelFormat.of(self.entry.spec)
        self.labels = self.entry.spec["labels"]
        self.input_name = self.entry.spec["inputs"][0]["name"]
        decoder = self.entry.spec.get("decoder", {})  # catalog models: one output of logits
        self.output = decoder.get("output", self.entry.spec["outputs"][0]["name"])
        self.activation = decoder.get("score_activation", "softmax")

    def preprocess(self, tasks: list[Task]) -> np.ndarray:
        return np.stack(
            [
                self.pixels.tensor(
                    centre_crop(task_pixels(task.inputs["image"]), self.shorter, self.crop)
                )
                for task in tasks
            ]
        )

    def inference(self, batch: np.ndarray) -> np.ndarray:
        scores = self.model.run({self.input_name: batch})[self.output]
        return activate(scores.astype(np.float32, copy=False), self.activation)

    def postprocess(self, outputs: np.ndarray, tasks: list[Task]) -> list[dict[str, Any]]:
        results = []
        for probs in outputs:
            best = int(probs.argmax())
            results.append(
                {
                    "probs": np.round(probs, 6).tolist(),
                    "top1": {
                        "model": self.entry.name,
                        "label": self.labels[best],
                        "score": round(float(probs[best]), 4),
                    },
                }
            )
        return results
