"""The detector stage: a batch of images → person boxes per image, one ``session.run``."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task, TaskError
from services.core.imaging import UndecodableImage, decode_image
from services.core.runtime.loading import load_model
from services.detector import centernet


class DetectorHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "centernet")
        self.min_score = float(ctx.options.get("min_score", 0.25))

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[centernet.Frame]]:
        images, frames = [], []
        for task in tasks:
            try:
                pixels = decode_image(task.inputs["image"])
            except UndecodableImage as exc:
                raise TaskError(str(exc)) from None
            tensor, frame = centernet.prepare(pixels)
            images.append(tensor)
            frames.append(frame)
        return np.stack(images), frames

    def inference(self, batch: tuple[np.ndarray, list[centernet.Frame]]) -> Any:
        images, frames = batch
        return self.model.run({"images": images})["detections"], frames

    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]:
        detections, frames = outputs
        return [
            {
                "boxes": centernet.decode(
                    det, frame, float(task.params.get("min_score", self.min_score))
                )
            }
            for det, frame, task in zip(detections, frames, tasks, strict=True)
        ]
