"""The harness holds the chart to what it says: a pod spec that would not run in a cluster does
not run here either. Each test breaks one thing — through values where the chart offers one,
else by editing the rendered manifest as a careless template change would — and the harness (or
the system on it) must fail, saying why."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import GATEWAY
from tests.deploy.test_system import VIDEO
from tools.containers.chart import render
from tools.containers.kubelet import Fleet, PodFailed

pytestmark = pytest.mark.deploy

REDIS = "posefleet-redis"
CONTROL = "posefleet-control"
DETECTOR = "posefleet-detector-cpu"


def container(docs: list[dict[str, Any]], owner: str) -> dict[str, Any]:
    workload = next(d for d in docs if d["metadata"]["name"] == owner and "template" in d["spec"])
    return workload["spec"]["template"]["spec"]["containers"][0]


def test_a_model_missing_from_the_image_fails_the_pod(fleet_of):
    """worker.stageModels may only name models the stage's image carries."""
    fleet = fleet_of({"worker": {"stageModels": {"detector": "efficientnet-lite0"}}},
                     owners={REDIS, DETECTOR})  # fmt: skip
    with pytest.raises(PodFailed, match=r"(?s)exited with 1.*ModelNotFound.*efficientnet-lite0"):
        fleet.up(timeout_s=180)


def test_a_probe_on_the_wrong_port_fails_the_pod(fleet_of):
    def edit(docs):
        container(docs, GATEWAY)["readinessProbe"]["httpGet"]["port"] = 8081

    fleet = fleet_of(edit=edit, owners={REDIS, GATEWAY})
    with pytest.raises(PodFailed, match=r"unready: readiness probe http-get :8081/readyz"):
        fleet.up(timeout_s=180)


def test_a_wrong_env_name_fails_the_pod(fleet_of):
    """The gateway reads POSEFLEET_REDIS_URL; under another name it looks for Redis on its own
    loopback, and its readiness probe says so."""

    def edit(docs):
        env = container(docs, GATEWAY)["env"]
        next(e for e in env if e["name"] == "POSEFLEET_REDIS_URL")["name"] = "POSEFLEET_REDIS_URI"

    fleet = fleet_of(edit=edit, owners={REDIS, GATEWAY})
    with pytest.raises(PodFailed, match=r"unready: readiness probe http-get :8080/readyz"):
        fleet.up(timeout_s=180)


def test_a_read_only_path_a_process_writes_to_fails_the_work(fleet_of):
    """The control worker spools uploads under /tmp, the pod's only writable path: without its
    emptyDir the root filesystem is read-only, and a video batch's expansion fails there (RQ
    then retries it, and the batch never succeeds)."""

    def edit(docs):
        control = container(docs, CONTROL)
        control["volumeMounts"] = [m for m in control["volumeMounts"] if m["mountPath"] != "/tmp"]

    fleet = fleet_of(edit=edit, owners={REDIS, GATEWAY, CONTROL})
    fleet.publish = {GATEWAY: [8080]}
    fleet.up(timeout_s=180)
    with httpx.Client(base_url=fleet.url(GATEWAY, 8080), timeout=60) as api:
        accepted = api.post(
            "/v1/pipelines/pose/batches", params={"max_frames": 1}, content=VIDEO.read_bytes()
        ).json()
        deadline = time.monotonic() + 90
        while "No usable temporary directory" not in fleet.logs(fleet.pod_of(CONTROL)):
            assert time.monotonic() < deadline, fleet.logs(fleet.pod_of(CONTROL))
            time.sleep(0.5)  # until the expansion has tried /tmp
        assert api.get(f"/v1/batches/{accepted['id']}").json()["status"] != "succeeded"


def test_an_image_that_was_not_built_is_refused(images):
    fleet = Fleet(render({"image": {"tag": "0.0.0-never-built"}}), name="pf-test-image",
                  select=lambda pod: pod.owner == GATEWAY)  # fmt: skip
    try:
        with pytest.raises(PodFailed, match="is not in the engine"):
            fleet.up(timeout_s=30)
    finally:
        fleet.down()
