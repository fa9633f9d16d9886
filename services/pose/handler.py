"""The pose stage: every person crop of every image in the batch through ONE model run.

Which model serves it is a settings change (pipelines.yaml ``model:``, or POSEFLEET_STAGE_MODELS):
the crop size and the decoder come from the model's model.yaml (``preprocessing.size`` and
``preprocessing.family``), and every family answers in the same COCO-17 shape. The generic
families (``simcc``, ``heatmap``: imported models, docs/model-families.md) also take their pixel
format and a non-square input (e.g. 192x256) from model.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from services.core.coco import Rect
from services.core.handler import Handler, HandlerContext, Task
from services.core.imaging import task_pixels
from services.core.model_input import PixelFormat, input_size
from services.core.runtime.loading import load_model
from services.pose import crops, heatmap, mediapipe, movenet, simcc

CONFIGURED = {"simcc": simcc.SimccDecoder, "heatmap": heatmap.HeatmapDecoder}


class PoseHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "movenet-lightning")
        prep = self.entry.spec["preprocessing"]
        family = prep.get("family", "movenet")
        self.width, self.height = input_size(self.entry.spec)
        spec = self.entry.spec["inputs"][0]
        self.input_name, self.dtype = spec["name"], np.dtype(spec["dtype"])
        self.prepare: Callable[[np.ndarray], np.ndarray]
        self.decode: crops.Decode
        if family in CONFIGURED:
            self.prepare = PixelFormat.of(self.entry.spec).tensor
            self.decode = CONFIGURED[family](self.entry.spec)
        elif family == "movenet":
            self.prepare, self.decode = movenet.prepare, movenet.decode
        elif family == "mediapipe-pose":
            self.prepare = mediapipe.prepare
            self.decode = mediapipe.decoder(self.width, prep["coco17_from"])
        else:
            raise ValueError(
                f"model {self.entry.name} (family {family!r}) is not a crop-based pose model; "
                "the pose stage serves the movenet, mediapipe-pose, simcc and heatmap families"
            )

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[list[Rect]]]:
        patches, squares = [], []
        for task in tasks:
            boxes = task.inputs["boxes"]
            if not boxes:  # no one to pose: skip decoding the image at all
                squares.append([])
                continue
            pixels = task_pixels(task.inputs["image"])
            mine = []
            for person in boxes:
                patch, square = crops.crop(pixels, person["box"], self.width, self.height)
                patches.append(self.prepare(patch))
                mine.append(square)
            squares.append(mine)
        if not patches:
            return np.zeros((0, self.height, self.width, 3), self.dtype), squares
        return np.stack(patches), squares

    def inference(self, batch: tuple[np.ndarray, list[list[Rect]]]) -> Any:
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
