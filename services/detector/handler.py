"""The detector stage: a batch of images → person boxes per image, one ``session.run``.

The stage serves whichever detector its model is (pipelines.yaml ``model:`` or the model
setting); model.yaml's ``preprocessing.family`` picks the matching input preparation and decoder,
and its ``default_min_score`` the threshold unless the stage's options or a node's params set one.
The catalog's own detectors have fixed code; the generic families (``yolo``, ``ssd``) are
configured by the model.yaml that ``posefleet models import`` writes (docs/model-families.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task
from services.core.imaging import whole_image_batch
from services.core.runtime.loading import load_model
from services.detector import centernet, nanodet, ssd, yolo


@dataclass(frozen=True, slots=True)
class Family:
    prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]]
    decode: Callable[[Mapping[str, np.ndarray], Any, float], list[dict[str, Any]]]


FAMILIES = {
    "centernet": Family(centernet.prepare, centernet.decode),
    "nanodet": Family(nanodet.prepare, nanodet.decode),
}
CONFIGURED = {"yolo": yolo.YoloDecoder, "ssd": ssd.BoxesDecoder}


class DetectorHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.model, self.entry = load_model(ctx, "centernet")
        preprocessing = self.entry.spec.get("preprocessing", {})
        name = preprocessing.get("family")
        if name in CONFIGURED:
            configured = CONFIGURED[name](self.entry.spec)
            self.family = Family(configured.prepare, configured.decode)
        elif name in FAMILIES:
            self.family = FAMILIES[name]
        else:
            raise ValueError(
                f"model '{self.entry.name}' (preprocessing.family {name!r} in its model.yaml) "
                "is not a person detector (nor an object detector) this stage can serve; "
                "families: "
                f"{sorted([*FAMILIES, *CONFIGURED])}"
            )
        self.input_name = self.entry.spec["inputs"][0]["name"]
        self.min_score = float(
            ctx.options.get("min_score", preprocessing.get("default_min_score", 0.25))
        )

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[Any]]:
        return whole_image_batch(tasks, self.family.prepare)

    def inference(self, batch: tuple[np.ndarray, list[Any]]) -> Any:
        images, frames = batch
        return self.model.run({self.input_name: images}), frames

    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]:
        batched, frames = outputs
        return [
            {
                "boxes": self.family.decode(
                    {name: out[i] for name, out in batched.items()},
                    frame,
                    float(task.params.get("min_score", self.min_score)),
                )
            }
            for i, (frame, task) in enumerate(zip(frames, tasks, strict=True))
        ]
