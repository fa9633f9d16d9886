"""What users would otherwise write: one FastAPI app that runs both models in-process per
request. Honest and reasonable: models loaded once per process, inference off the event loop,
one uvicorn process per core (``uvicorn ... --workers N``).

    uvicorn loadtest.baselines.naive_server:app --workers 2 --port 8090
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from services.core.handler import HandlerContext, Task
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings
from services.detector.handler import DetectorHandler
from services.pose.handler import PoseHandler

app = FastAPI(title="naive pose server (baseline)")
_settings = get_settings()
_detector_options = load_pipelines(_settings.pipelines_file).stages["detector"].options
detector, pose = DetectorHandler(), PoseHandler()
detector.initialize(
    HandlerContext("detector", _settings, model="centernet", options=_detector_options)
)
pose.initialize(HandlerContext("pose", _settings, model="movenet-lightning"))


def _run(handler: Any, task: Task) -> dict[str, Any]:
    (out,) = handler.postprocess(handler.inference(handler.preprocess([task])), [task])
    return out


def estimate(image: bytes) -> dict[str, Any]:
    boxes = _run(detector, Task("naive", "detect", {"image": image}))["boxes"]
    return _run(pose, Task("naive", "keypoints", {"image": image, "boxes": boxes}))


@app.post("/pose")
async def pose_endpoint(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(estimate, await request.body())
