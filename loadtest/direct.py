"""The pose pipeline run directly in this process, the references every served path is held to:
the two models alone (``session.run`` on prepared inputs, no decode, no pre/post) and the
detector and pose handlers called back to back (what a worker runs, without the transport).

The models are timed twice, with onnxruntime's own defaults and with Posefleet's settings
(threads and spinning, docs/performance.md), so a target stated against "the models' own time"
is held to the faster of the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task
from services.core.pipeline import load_pipelines
from services.core.runtime.onnx import OnnxModel, OnnxOptions
from services.core.settings import get_settings
from services.detector.handler import DetectorHandler
from services.pose.handler import PoseHandler


def run_handler(handler: Handler, task: Task) -> dict[str, Any]:
    (out,) = handler.postprocess(handler.inference(handler.preprocess([task])), [task])
    return out


@dataclass(frozen=True)
class Feeds:
    """One image's prepared model inputs."""

    detector: dict[str, np.ndarray]
    pose: dict[str, np.ndarray]


class DirectPose:
    def __init__(self, ort_default: bool = True) -> None:
        settings = get_settings()
        stages = load_pipelines(settings.pipelines_file).stages

        def loaded(handler: Handler, stage: str) -> Any:
            spec = stages[stage]
            context = HandlerContext(stage, settings, model=spec.model, options=spec.options)
            handler.initialize(context)
            return handler

        self.detector: DetectorHandler = loaded(DetectorHandler(), "detector")
        self.pose: PoseHandler = loaded(PoseHandler(), "pose")
        # OnnxOptions() is onnxruntime's own choice: threads per physical core, spinning
        self.ort_default = (
            (
                OnnxModel(self.detector.entry.path, OnnxOptions()),
                OnnxModel(self.pose.entry.path, OnnxOptions()),
            )
            if ort_default
            else None
        )

    def feeds(self, image: bytes) -> Feeds:
        task = Task("direct", "detect", {"image": image})
        tensor, _ = self.detector.preprocess([task])
        boxes = run_handler(self.detector, task)["boxes"]
        pose_task = Task("direct", "pose", {"image": image, "boxes": boxes})
        patches, _ = self.pose.preprocess([pose_task])
        return Feeds({self.detector.input_name: tensor}, {self.pose.input_name: patches})

    def models_ms(self, feeds: Feeds, ort_default: bool) -> float:
        """Both models on prepared inputs; ``ort_default`` uses sessions with onnxruntime's own
        settings instead of the handlers' (Posefleet's)."""
        if ort_default:
            assert self.ort_default is not None, "loaded without onnxruntime-default sessions"
            detector, pose = self.ort_default
        else:
            detector, pose = self.detector.model, self.pose.model
        started = time.perf_counter()
        detector.run(feeds.detector)
        if len(feeds.pose[self.pose.input_name]):
            pose.run(feeds.pose)
        return (time.perf_counter() - started) * 1000

    def handlers_ms(self, image: bytes) -> float:
        """Decode, prepare, run and decode, detector then pose."""
        started = time.perf_counter()
        boxes = run_handler(self.detector, Task("direct", "detect", {"image": image}))["boxes"]
        run_handler(self.pose, Task("direct", "pose", {"image": image, "boxes": boxes}))
        return (time.perf_counter() - started) * 1000
