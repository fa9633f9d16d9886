"""The pose stage: every person crop of every image in the batch through ONE ``session.run``."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task, TaskError
from services.core.imaging import UndecodableImage, decode_image
from services.core.runtime.loading import load_model
from services.pose import movenet


class PoseHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "movenet-lightning")

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[list[movenet.Square]]]:
        crops, squares = [], []
        for task in tasks:
            boxes = task.inputs["boxes"]
            if not boxes:  # no one to pose: skip decoding the image at all
                squares.append([])
                continue
            try:
                pixels = decode_image(task.inputs["image"])
            except UndecodableImage as exc:
                raise TaskError(str(exc)) from None
            mine = []
            for person in boxes:
                patch, square = movenet.crop(pixels, person["box"])
                crops.append(patch)
                mine.append(square)
            squares.append(mine)
        empty = np.zeros((0, movenet.INPUT_SIZE, movenet.INPUT_SIZE, 3), np.int32)
        return (np.stack(crops) if crops else empty), squares

    def inference(self, batch: tuple[np.ndarray, list[list[movenet.Square]]]) -> Any:
        crops, squares = batch
        keypoints = self.model.run({"input": crops})["keypoints"] if len(crops) else crops
        return keypoints, squares

    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]:
        keypoints, squares = outputs
        results, i = [], 0
        for task, mine in zip(tasks, squares, strict=True):
            people = []
            for person, square in zip(task.inputs["boxes"], mine, strict=True):
                people.append(
                    {
                        "box": person["box"],
                        "score": person["score"],
                        "keypoints": movenet.decode(keypoints[i], square),
                    }
                )
                i += 1
            results.append({"people": people})
        return results
