"""Per-image latency at concurrency 1: a pipeline through a running Posefleet (gateway + Redis +
workers, `Prefer: wait`) against the same models called back to back in this process.

    make up                       # in another terminal
    .venv/bin/python loadtest/latency.py --pipeline pose --requests 30
    .venv/bin/python loadtest/latency.py --pipeline classify --requests 30

For ``classify`` the direct path runs EfficientNet-Lite0, then -Lite2, then the fusion, serially;
the served path runs the two classifiers in parallel on their own workers.

Both columns are measured in one run on one machine, interleaved photo by photo, so the
overhead column is a like-for-like difference. (The full benchmark harness with saturation,
naive-server and cost columns is its own issue.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import httpx
from rich.console import Console
from rich.progress import track
from rich.table import Table
from skimage import data

from services.core.handler import HandlerContext, Task
from services.core.pipeline import load_pipelines
from services.core.settings import get_settings
from services.detector.handler import DetectorHandler
from services.ensemble.classifier import ClassifierHandler
from services.ensemble.combine import CombineHandler
from services.pose.handler import PoseHandler

OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data/"


def photos() -> dict[str, bytes]:
    def jpeg(rgb):  # type: ignore[no-untyped-def]
        return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()

    out = {"astronaut (1 person)": jpeg(data.astronaut())}
    with open(OPENCV_DATA + "basketball1.png", "rb") as f:
        out["basketball1 (2 people)"] = f.read()
    out["coffee (0 people)"] = jpeg(data.coffee())
    return out


def run(handler, task: Task) -> dict:  # type: ignore[no-untyped-def]
    (out,) = handler.postprocess(handler.inference(handler.preprocess([task])), [task])
    return out


def direct_pipeline(name: str):  # type: ignore[no-untyped-def]
    """The pipeline's handlers loaded in this process, and a function running them serially."""
    settings = get_settings()
    stages = load_pipelines(settings.pipelines_file).stages

    def loaded(handler, stage: str):  # type: ignore[no-untyped-def]
        spec = stages[stage]
        handler.initialize(HandlerContext(stage, settings, model=spec.model, options=spec.options))
        return handler

    if name == "pose":
        detector, pose = loaded(DetectorHandler(), "detector"), loaded(PoseHandler(), "pose")

        def pose_direct(image: bytes) -> None:
            boxes = run(detector, Task("b", "detect", {"image": image}))["boxes"]
            run(pose, Task("b", "keypoints", {"image": image, "boxes": boxes}))

        return pose_direct
    a = loaded(ClassifierHandler(), "classifier-a")
    b = loaded(ClassifierHandler(), "classifier-b")
    combine = loaded(CombineHandler(), "combine")

    def classify_direct(image: bytes) -> None:
        outs = [run(m, Task("b", "a", {"image": image})) for m in (a, b)]
        run(
            combine,
            Task(
                "b",
                "vote",
                {"probs": [o["probs"] for o in outs], "members": [o["top1"] for o in outs]},
                params={"method": "mean", "top_k": 5},
            ),
        )

    return classify_direct


def ms(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000 if len(samples) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pipeline", choices=("pose", "classify"), default="pose")
    parser.add_argument("--requests", type=int, default=30, help="per photo and per path")
    args = parser.parse_args()
    direct = direct_pipeline(args.pipeline)

    table = Table(
        title=f"{args.pipeline} pipeline latency, concurrency 1, {args.requests} requests each"
    )
    for column in (
        "photo",
        "direct p50 ms",
        "posefleet p50 ms",
        "posefleet p95 ms",
        "overhead p50 ms",
    ):
        table.add_column(column, justify="right")
    with httpx.Client(base_url=args.url, timeout=60) as client:
        for name, image in photos().items():
            timings: dict[str, list[float]] = {"direct": [], "system": []}
            for _ in track(range(args.requests), description=name, transient=True):
                started = time.perf_counter()
                direct(image)
                timings["direct"].append(time.perf_counter() - started)
                started = time.perf_counter()
                response = client.post(
                    f"/v1/pipelines/{args.pipeline}/jobs",
                    content=image,
                    headers={"prefer": "wait=30"},
                )
                timings["system"].append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            d50, s50 = ms(timings["direct"], 50), ms(timings["system"], 50)
            table.add_row(
                name,
                f"{d50:.1f}",
                f"{s50:.1f}",
                f"{ms(timings['system'], 95):.1f}",
                f"{s50 - d50:.1f}",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
