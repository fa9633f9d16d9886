"""docs/own-models.md as a user runs it: ONNX files imported with the CLI into a repository of
their own (plus symlinks to the catalog models it reuses), a pipelines file of their own, the
whole system through `posefleet up`, and answers over HTTP (curl, as the page shows) — with the
example plug-in stage counting people behind an imported detector and the catalog's pose."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from loadtest.stacks import local_stack
from services.cli.redis_server import free_port
from services.core.handler import HandlerContext
from services.core.settings import Settings, get_settings
from services.detector.handler import DetectorHandler
from services.pose.handler import PoseHandler
from tests.clirun import posefleet
from tests.conftest import encode
from tests.factory.onnx_models import colour_classifier, constant_outputs
from tests.inprocess import assert_same_people, pipeline

PIPELINES = """
stages:
  colours:
    handler: services.ensemble.classifier:ClassifierHandler
    model: colours
    inputs: [image]
    outputs: [probs, top1]
  my-detector:
    handler: services.detector.handler:DetectorHandler
    model: my-detector
    inputs: [image]
    outputs: [boxes]
  pose:
    handler: services.pose.handler:PoseHandler
    model: movenet-lightning
    inputs: [image, boxes]
    outputs: [people]
  person-count:
    handler: person-count
    inputs: [people]
    outputs: [count, detected, visible_keypoints]
pipelines:
  colours:
    nodes: {c: {stage: colours, inputs: {image: $request.image}}}
    outputs: {top1: c.top1}
  people:
    nodes:
      detect: {stage: my-detector, inputs: {image: $request.image}}
      keypoints: {stage: pose, inputs: {image: $request.image, boxes: detect.boxes}}
      count: {stage: person-count, inputs: {people: keypoints.people}}
    outputs: {people: keypoints.people, count: count.count}
"""
# The astronaut photo is 512x512: a 320 letterbox scales it by 0.625 with no padding. Eight
# candidates (cx, cy, w, h in input pixels, person score): one around the astronaut, one too
# weak to count, empty anchors (a real head has thousands, which is how the import tells its
# anchor axis from its channel axis).
DETECTIONS = np.zeros((8, 5), np.float32)
DETECTIONS[:2] = [
    [181.25, 162.5, 212.5, 312.5, 0.9],
    [50, 50, 10, 10, 0.1],
]  # → [120, 10, 460, 510]


@pytest.fixture(scope="module")
def own_stack(model_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("own-models")
    repository = work / "models"
    repository.mkdir()
    (repository / "movenet-lightning").symlink_to(model_root / "movenet-lightning")
    env = {"POSEFLEET_MODEL_ROOT": str(repository)}
    (work / "labels.txt").write_text("red\ngreen\nblue\n")
    imports = [
        (colour_classifier(work / "colours.onnx"), "colours", "image-classification"),
        (
            constant_outputs(work / "det.onnx", ["batch", 3, 320, 320], {"dets": DETECTIONS}),
            "my-detector",
            "person-detection",
        ),
    ]
    for path, name, task in imports:
        args = ["models", "import", str(path), "--name", name, "--task", task]
        if name == "colours":
            args += ["--labels", str(work / "labels.txt")]
        result = posefleet(*args, env=env)
        assert result.returncode == 0, result.stderr
    pipelines = work / "pipelines.yaml"
    pipelines.write_text(PIPELINES)
    port = free_port()
    with tempfile.TemporaryDirectory() as cache:
        stack_env = {
            "POSEFLEET_CACHE_DIR": cache,
            "POSEFLEET_MODEL_ROOT": str(repository),
            "POSEFLEET_PIPELINES_FILE": str(pipelines),
            "POSEFLEET_REDIS_URL": "",
        }
        log = Path(cache) / "up.log"
        with local_stack(port, log, "--no-build", env=stack_env):
            yield f"http://127.0.0.1:{port}", repository


def curl(url: str, body: Path) -> dict:
    """The page's curl line, verbatim apart from the URL and the photo."""
    command = ["curl", "-s", "-H", "Prefer: wait=30", "--data-binary", f"@{body}", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def test_an_imported_classifier_answers_a_curl(own_stack, tmp_path):
    assert shutil.which("curl"), "the page's answer comes from curl"
    url, _ = own_stack
    photo = tmp_path / "red.png"
    photo.write_bytes(encode(np.full((40, 60, 3), (230, 20, 30), np.uint8)))
    job = curl(f"{url}/v1/pipelines/colours/jobs", photo)
    assert job["status"] == "succeeded", job
    assert job["result"]["top1"]["label"] == "red"
    assert job["result"]["top1"]["model"] == "colours"


def test_imported_detector_catalog_pose_and_plugin_in_one_dag(own_stack, photos):
    url, repository = own_stack
    response = httpx.post(
        f"{url}/v1/pipelines/people/jobs",
        content=photos["astronaut"],
        headers={"prefer": "wait=30"},
        timeout=60,
    )
    job = response.json()
    assert response.status_code == 200 and job["status"] == "succeeded", job
    settings = Settings(model_root=repository, cache_dir=get_settings().cache_dir)
    detector, pose = DetectorHandler(), PoseHandler()
    detector.initialize(HandlerContext("d", settings, model="my-detector"))
    pose.initialize(HandlerContext("p", settings, model="movenet-lightning"))
    (reference,) = pipeline(detector, pose, [photos["astronaut"]])
    assert_same_people(job["result"]["people"], reference, atol=0.01)
    assert [p["box"] for p in reference] == [[120.0, 10.0, 460.0, 510.0]]
    assert job["result"]["count"] == 1  # the plug-in saw the astronaut's skeleton
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'posefleet_jobs_submitted_total{pipeline="people"}' in metrics
    assert os.path.islink(repository / "movenet-lightning")
