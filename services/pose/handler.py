"""The pose stage: every person crop of every image in the batch through ONE model run.

Which model serves it is a settings change (pipelines.yaml ``model:``, or POSEFLEET_STAGE_MODELS):
the crop size and the decoder come from the model's model.yaml (``preprocessing.size`` and
``preprocessing.family``), and every family answers in the same COCO-17 shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from services.core.coco import Square
from services.core.handler import Handler, HandlerContext, Task
from services.core.imaging import task_pixels
from services.core.runtime.loading import load_model
from services.pose import crops, mediapipe, movenet


class PoseHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "movenet-lightning")
        prep = self.entry.spec["preprocessing"]
        family = prep.get("family", "movenet")
        self.size = int(prep["size"])
        spec = self.entry.spec["inputs"][0]
        self.input_name, self.dtype = spec["name"], np.dtype(spec["dtype"])
        self.prepare: Callable[[np.ndarray], np.ndarray]
        self.decode: crops.Decode
        if family == "movenet":
            self.prepare, self.decode = movenet.prepare, movenet.decode
        elif family == "mediapipe-pose":
            self.prepare = mediapipe.prepare
            self.decode = mediapipe.decoder(self.size, prep["coco17_from"])
        else:
            raise ValueError(
                f"model {self.entry.name} (family {family!r}) is not a crop-based pose model; "
                "the pose stage serves the movenet and mediapipe-pose families"
            )

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[list[Square]]]:
        patches, squares = [], []
        for task in tasks:
            boxes = task.inputs["boxes"]
            if not boxes:  # no one to pose: skip decoding the image at all
                squares.append([])
                continue
            pixels = task_pixels(task.inputs["image"])
            mine = []
            for person in boxes:
                patch, square = crops.crop(pixels, person["box"], self.size)
                patches.append(self.prepare(patch))
                mine.append(square)
            squares.append(mine)
        if not patches:
            return np.zeros((0, self.size, self.size, 3), self.dtype), squares
        return np.stack(patches), squares

    def inference(self, batch: tuple[np.ndarray, list[list[Square]]]) -> Any:
        patches, squares = batch
        outputs = self.model.run({self.input_name: patches}) if len(patches) else {}
        return outputs, squares

    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]:
        raw, squares = outputs
        results, i = [], 0
        for task, mine in zip(tasks, squares, strict=True):
            people = []
            for person, square in zip(task.inputs["boxes"], mine, strict=True):
                people.append(
                    {
                        "box": person["box"],
                        "score": person["score"],
                        "keypoints": self.decode(raw, i, square),
                    }
                )
                i += 1
            results.append({"people": people})
        return results
