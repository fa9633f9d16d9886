"""The multipose stage (MoveNet MultiPose, bottom-up) on bundled photos, and the pose-multi
pipeline served by a multipose worker."""

import httpx
import jsonschema
import pytest

from services.core.coco import COCO17
from services.core.handler import HandlerContext, Task, TaskError
from services.core.pipeline import load_pipelines
from services.core.settings import Settings, get_settings
from services.factory.builder_venv import PROJECT_ROOT
from services.multipose.handler import MultiPoseHandler
from tests.inprocess import assert_same_people, keypoints, run
from tests.workers import make_worker, worker_threads


@pytest.fixture(scope="module")
def multipose(model_root) -> MultiPoseHandler:
    handler = MultiPoseHandler()
    handler.initialize(HandlerContext("multipose", get_settings()))
    return handler


def people(handler: MultiPoseHandler, images: list[bytes]) -> list[list[dict]]:
    tasks = [Task(f"j{i}", "pose", {"image": image}) for i, image in enumerate(images)]
    return [out["people"] for out in run(handler, tasks)]


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
    model_root, redis_url, redis_client, start_gateway, photos
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
