"""Clients we did not write — tritonclient (HTTP, gRPC) and KServe's InferenceRESTClient and
InferenceGRPCClient — against the in-process gateway (REST + gRPC) and real model workers:
readiness, metadata, and inference on the bundled photos with binary data on and off, whose
tensors and results must equal the job API's for the same photo. Each client runs in its own
process (see tests/gateway/oip_clients.py for why)."""

import json

import httpx
import numpy as np
import pytest
import redis

from services.cli.redis_server import free_port
from services.core.settings import Settings
from tests.clirun import ROOT
from tests.gateway import oip_clients
from tests.workers import gateway_server, make_worker, worker_threads

SERVED = ROOT / "pipelines.yaml"
PHOTOS = ("astronaut", "basketball1", "coffee")  # one person, two, none


@pytest.fixture(scope="module")
def served(redis_server, model_root):
    """Gateway with gRPC + one worker per stage of `pose` and `classify`, real models."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    settings = Settings(redis_url=redis_server.url, pipelines_file=SERVED, block_ms=50)
    target = f"127.0.0.1:{free_port()}"
    with worker_threads() as start:
        for stage in ("detector", "pose", "classifier-a", "classifier-b", "combine"):
            start(make_worker(client, stage, settings))
        with gateway_server(settings, target) as url:
            yield url, target
    client.close()


@pytest.fixture(scope="module")
def job_api_results(served, photos):
    """The job API's result for every photo and pipeline: what the V2 tensors must equal."""
    url, _ = served
    with httpx.Client(base_url=url, timeout=120) as api:
        return {
            (pipeline, name): api.post(
                f"/v1/pipelines/{pipeline}/jobs",
                content=photos[name],
                headers={"prefer": "wait=100"},
            ).json()["result"]
            for pipeline in ("pose", "classify")
            for name in PHOTOS
        }


def drive(client: str, served, model: str, files) -> dict:
    url, target = served
    return oip_clients.drive(client, url, target, model, files)


@pytest.fixture(scope="module")
def photo_files(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (folder / name).write_bytes(photos[name])
    return [folder / name for name in PHOTOS]


def assert_pose_tensors(outputs: dict, expected: dict) -> None:
    """boxes/scores/keypoints are the job API's people, in the submitted image's pixels."""
    people = expected["people"]
    assert json.loads(outputs["result"][0]) == expected
    assert np.array(outputs["boxes"]).reshape(-1, 4).shape == (len(people), 4)
    if people:
        np.testing.assert_allclose(outputs["boxes"], [p["box"] for p in people], rtol=1e-5)
        np.testing.assert_allclose(outputs["scores"], [p["score"] for p in people], rtol=1e-5)
        np.testing.assert_allclose(
            outputs["keypoints"],
            [[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in people],
            rtol=1e-5,
        )
    assert outputs["batch_index"] == [0] * len(people)


@pytest.mark.parametrize(
    "client", ["tritonclient-http", "tritonclient-grpc", "kserve-rest", "kserve-grpc"]
)
def test_pose_through_a_v2_client_equals_the_job_api(client, served, photo_files, job_api_results):
    report = drive(client, served, "pose", photo_files)
    assert report["live"] and report["ready"] and report["model_ready"]
    assert sum(len(job_api_results["pose", n]["people"]) for n in PHOTOS) == 3
    for mode in ("binary", "json"):
        assert len(report[mode]) == len(PHOTOS)
        for index, (name, run) in enumerate(zip(PHOTOS, report[mode], strict=True)):
            assert run["id"] == f"r{index}"
            assert_pose_tensors(run["outputs"], job_api_results["pose", name])
    if client.startswith("tritonclient"):
        assert report["unknown_version_ready"] is False
        assert report["server"]["name"] == "posefleet"
        meta = report["metadata"]
        assert meta["platform"] == "posefleet_pipeline" and meta["versions"] == ["1"]
        shapes = {o["name"]: [int(d) for d in o["shape"]] for o in meta["outputs"]}
        assert shapes["keypoints"] == [-1, 17, 3] and shapes["result"] == [-1]


def test_classify_labels_through_tritonclient(served, photo_files, job_api_results):
    report = drive("tritonclient-http", served, "classify", photo_files)
    for name, run in zip(PHOTOS, report["binary"], strict=True):
        expected = job_api_results["classify", name]
        assert run["outputs"]["label"] == [expected["label"]]
        np.testing.assert_allclose(run["outputs"]["score"], [expected["score"]], rtol=1e-5)
        assert json.loads(run["outputs"]["result"][0]) == expected  # top_k, members included
