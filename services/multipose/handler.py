"""The multipose stage: a batch of images → people with COCO-17 skeletons, one ``session.run``.

Its output is the pose stage's ``people`` exactly, so a client, the drawing code and the schema
in pipelines.yaml do not care which of the two produced it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task
from services.core.imaging import Letterbox, whole_image_batch
from services.core.runtime.loading import load_model
from services.multipose import movenet

FAMILY = "movenet-multipose"


class MultiPoseHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "movenet-multipose")
        preprocessing = self.entry.spec.get("preprocessing", {})
        if preprocessing.get("family") != FAMILY:
            raise ValueError(
                f"model '{self.entry.name}' (preprocessing.family "
                f"{preprocessing.get('family')!r} in its model.yaml) is not a {FAMILY} model"
            )
        self.input_name = self.entry.spec["inputs"][0]["name"]
        self.min_score = float(ctx.options.get("min_score", preprocessing["default_min_score"]))

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[Letterbox]]:
        return whole_image_batch(tasks, movenet.prepare)

    def inference(self, batch: tuple[np.ndarray, list[Letterbox]]) -> Any:
        images, frames = batch
        return self.model.run({self.input_name: images})["people"], frames

    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]:
        people, frames = outputs
        return [
            {
                "people": movenet.decode(
                    rows, frame, float(task.params.get("min_score", self.min_score))
                )
            }
            for rows, frame, task in zip(people, frames, tasks, strict=True)
        ]
