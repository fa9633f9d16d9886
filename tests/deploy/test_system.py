"""The system in containers: the fleet the chart describes (every Deployment and the Redis
StatefulSet, run by the harness as a kubelet would), real photos through every pipeline, a video
batch, and the faults a cluster sees — a worker SIGKILLed under load, a worker deleted (SIGTERM)
during a batch, Redis rescheduled onto its volume or killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import OPENCV_DATA
from tests.deploy.conftest import GATEWAY, wait_batch, wait_job
from tools.containers.chart import NAMESPACE, render
from tools.containers.kubelet import Fleet

pytestmark = pytest.mark.deploy

VIDEO = OPENCV_DATA / "vtest.avi"
# A redelivery after a crash waits for the visibility timeout; 5 s keeps the test short.
SYSTEM_VALUES = {"worker": {"env": {"POSEFLEET_VISIBILITY_TIMEOUT_S": "5"}}}


@pytest.fixture(scope="module")
def fleet(images) -> Iterator[Fleet]:
    docs = render(SYSTEM_VALUES)
    with Fleet(docs, name="pf-system", namespace=NAMESPACE, publish={GATEWAY: [8080]}) as fleet:
        fleet.up(timeout_s=300)
        yield fleet


@pytest.fixture(scope="module")
def api(fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.url(GATEWAY, 8080), timeout=150) as client:
        yield client


def submit(api: httpx.Client, pipeline: str, photo: bytes, wait: int = 60) -> dict:
    response = api.post(
        f"/v1/pipelines/{pipeline}/jobs", content=photo, headers={"Prefer": f"wait={wait}"}
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


def test_helm_test_pod_passes(fleet):
    results = fleet.run_tests()
    assert [(name, code) for name, code, _ in results] == [("posefleet-test-submit", 0)], results
    assert "ok: one person" in results[0][2]


def test_real_photos_through_every_pipeline(api, photos):
    pose = submit(api, "pose", photos["astronaut"])
    assert pose["status"] == "succeeded", pose
    assert [len(p["keypoints"]) for p in pose["result"]["people"]] == [17]
    multi = submit(api, "pose-multi", photos["basketball1"])
    assert multi["status"] == "succeeded" and len(multi["result"]["people"]) >= 2, multi
    classify = submit(api, "classify", photos["coffee"])
    assert classify["status"] == "succeeded" and classify["result"]["label"] == "espresso"
    scene = submit(api, "scene", photos["astronaut"])
    assert scene["status"] == "succeeded", scene
    assert len(scene["result"]["people"]) == 1 and scene["result"]["top_k"]


def test_video_batch(api):
    accepted = api.post(
        "/v1/pipelines/pose/batches",
        params={"frame_stride": 50, "max_frames": 4},
        content=VIDEO.read_bytes(),
    )
    assert accepted.status_code == 202, accepted.text
    state = wait_batch(api, accepted.json()["id"])
    assert (state["status"], state["done"], state["failed"]) == ("succeeded", 4, 0), state
    lines = api.get(f"/v1/batches/{state['id']}/results").text.splitlines()
    assert len(lines) == 4


def test_a_worker_killed_under_load_loses_no_job(fleet, api, photos):
    """SIGKILL the detector while jobs keep coming: the harness restarts it (restartPolicy),
    the tasks it held are redelivered after the visibility timeout, every accepted job (those
    accepted while it was down too) succeeds."""
    pod = fleet.pod_of("posefleet-detector-cpu")
    restarts = fleet.states[pod].restarts
    ids: list[str] = []

    def load() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=60) as client:
            for _ in range(30):
                ids.append(submit(client, "pose", photos["astronaut"], wait=0)["id"])

    loader = threading.Thread(target=load)
    loader.start()
    deadline = time.monotonic() + 60
    while len(ids) < 10:
        assert time.monotonic() < deadline and loader.is_alive(), "the load did not start"
        time.sleep(0.05)  # until the detector is into the load
    unfinished = [i for i in ids if api.get(f"/v1/jobs/{i}").json()["status"] != "succeeded"]
    fleet.kill(pod)
    loader.join()
    assert unfinished, "the load was over before the kill"
    views = [wait_job(api, job_id) for job_id in ids]
    assert [v["status"] for v in views] == ["succeeded"] * len(ids)
    fleet.wait_ready([pod], 120, allow_restarts=True)
    assert fleet.states[pod].restarts == restarts + 1


def test_a_deleted_worker_drains_its_batch_and_exits_0(fleet, api):
    """`docker stop` (SIGTERM, then the pod's grace period) the pose worker during a video
    batch: it finishes the batch in hand and exits 0 well inside the grace period; once a pod
    is back, the batch completes with every frame."""
    accepted = api.post(
        "/v1/pipelines/pose/batches",
        params={"frame_stride": 10, "max_frames": 30},
        content=VIDEO.read_bytes(),
    ).json()
    deadline = time.monotonic() + 120
    while api.get(f"/v1/batches/{accepted['id']}").json()["done"] < 1:
        assert time.monotonic() < deadline, "no frame finished"
        time.sleep(0.1)  # until the batch is under way
    pod = fleet.pod_of("posefleet-pose-cpu")
    code, seconds = fleet.stop(pod)
    assert code == 0, fleet.logs(pod)
    assert seconds < fleet.states[pod].pod.grace
    assert api.get(f"/v1/batches/{accepted['id']}").json()["status"] == "running"
    fleet.start(pod)
    fleet.wait_ready([pod], 120)
    state = wait_batch(api, accepted["id"])
    assert (state["status"], state["done"], state["failed"]) == ("succeeded", 30, 0), state


def test_redis_rescheduled_onto_its_volume_loses_nothing(fleet, api, photos):
    """Finished jobs, and jobs waiting at a stage whose workers are down, survive Redis being
    deleted and created again on the same volume (AOF); the clients reconnect."""
    finished = [submit(api, "pose", photos["astronaut"]) for _ in range(3)]
    assert {job["status"] for job in finished} == {"succeeded"}
    pose = fleet.pod_of("posefleet-pose-cpu")
    fleet.stop(pose)
    waiting = [submit(api, "pose", photos["astronaut"], wait=0)["id"] for _ in range(3)]
    deadline = time.monotonic() + 60
    while any(api.get(f"/v1/jobs/{i}").json()["nodes"]["detect"]["status"] != "succeeded"
              for i in waiting):  # fmt: skip
        assert time.monotonic() < deadline, "the detector did not take the jobs"
        time.sleep(0.1)  # until they wait for the pose stage
    redis = fleet.pod_of("posefleet-redis")
    fleet.recreate(redis)
    fleet.start(pose)
    fleet.wait_ready([p.name for p in fleet.pods], 180, allow_restarts=True)
    for job in finished:
        assert served(api, f"/v1/jobs/{job['id']}")["result"] == job["result"]
    assert [wait_job(api, job_id)["status"] for job_id in waiting] == ["succeeded"] * 3


def test_redis_killed_restarts_in_place_from_its_aof(fleet, api, photos):
    """SIGKILL Redis (a crash): restarted in place by its restartPolicy, it replays the AOF;
    jobs that finished more than the fsync second (appendfsync everysec) before are intact."""
    finished = [submit(api, "pose", photos["astronaut"]) for _ in range(3)]
    time.sleep(2)  # past appendfsync everysec: what a crash may lose is younger than 1 s
    redis = fleet.pod_of("posefleet-redis")
    restarts = fleet.states[redis].restarts
    fleet.kill(redis)
    deadline = time.monotonic() + 60
    while fleet.states[redis].restarts == restarts:
        assert time.monotonic() < deadline, "Redis was not restarted"
        time.sleep(0.1)  # until the harness restarts it
    fleet.wait_ready([p.name for p in fleet.pods], 180, allow_restarts=True)
    for job in finished:
        assert served(api, f"/v1/jobs/{job['id']}")["result"] == job["result"]
    assert submit(api, "pose", photos["astronaut"])["status"] == "succeeded"


def served(api: httpx.Client, path: str, timeout_s: float = 30.0) -> dict:
    """GET as a client does after an outage: a 503 (the gateway's pooled connection to the
    Redis that went away) is retried; anything else is the answer."""
    deadline = time.monotonic() + timeout_s
    while (response := api.get(path)).status_code == 503:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)  # a client's retry interval
    assert response.status_code == 200, response.text
    return response.json()
