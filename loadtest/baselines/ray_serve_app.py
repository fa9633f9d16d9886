"""The idiomatic Ray Serve composition of the pose pipeline, running OUR handlers: a detector and
a pose deployment, each batching with ``@serve.batch``, composed by an ingress deployment over
deployment handles (Ray Serve's model-composition pattern). It is what a team would write with
Ray Serve instead of Posefleet, so ``make bench`` compares like with like.

It runs in its own virtualenv (``loadtest/baselines/ray_venv.py``: the ``rayserve`` extra's pins,
under the cache directory), so Ray never enters Posefleet's install:

    python -m loadtest.baselines.ray_serve_app --port 8091   # inside that venv

and answers ``POST /pose`` (body: the image) with the people, like the naive baseline.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request

from services.core.handler import Handler, HandlerContext, Task
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings


def _load(handler: Handler, stage: str) -> Handler:
    settings = get_settings()
    spec = load_pipelines(settings.pipelines_file).stages[stage]
    handler.initialize(HandlerContext(stage, settings, model=spec.model, options=spec.options))
    return handler


def _run(handler: Handler, tasks: list[Task]) -> list[dict[str, Any]]:
    return handler.postprocess(handler.inference(handler.preprocess(tasks)), tasks)


# A core per model deployment; the ingress only awaits handles, so it takes none (with the
# default of one it could not be placed beside the two models on a 2-CPU machine). Batch sizes
# as in pipelines.yaml; no waiting for company (our max_delay_ms: 0).
@serve.deployment(ray_actor_options={"num_cpus": 1})
class Detector:
    def __init__(self) -> None:
        from services.detector.handler import DetectorHandler

        self.handler = _load(DetectorHandler(), "detector")

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.0)
    async def __call__(self, images: list[bytes]) -> list[list[dict[str, Any]]]:
        tasks = [Task("ray", "detect", {"image": image}) for image in images]
        return [out["boxes"] for out in _run(self.handler, tasks)]


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Pose:
    def __init__(self) -> None:
        from services.pose.handler import PoseHandler

        self.handler = _load(PoseHandler(), "pose")

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def __call__(self, requests: list[tuple[bytes, list[dict[str, Any]]]]) -> list[Any]:
        tasks = [Task("ray", "pose", {"image": i, "boxes": b}) for i, b in requests]
        return [out["people"] for out in _run(self.handler, tasks)]


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Ingress:
    def __init__(self, detector: DeploymentHandle, pose: DeploymentHandle) -> None:
        self.detector = detector
        self.pose = pose

    async def __call__(self, request: Request) -> dict[str, Any]:
        image = await request.body()
        boxes = await self.detector.remote(image)
        return {"people": await self.pose.remote((image, boxes))}


app = Ingress.bind(Detector.bind(), Pose.bind())
READY = "ray serve is up"  # printed once serve.run returned: every deployment is running


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(app, route_prefix="/pose")
    print(READY, flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
