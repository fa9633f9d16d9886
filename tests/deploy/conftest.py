"""The deploy tier: images built with no registry, the chart's pods run as containers, the system
tested there. Needs the private engine (`make container-test` starts it and points DOCKER_HOST
at it); without one every test here is skipped with the command that provides it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tools.containers.chart import NAMESPACE, render
from tools.containers.engine import answers
from tools.containers.images import all_tags, build_images, worker_services
from tools.containers.kubelet import Fleet

GATEWAY = "posefleet-gateway"
TERMINAL = {"succeeded", "failed", "canceled", "expired"}


@pytest.fixture(scope="session")
def engine() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if not host or not answers(host):
        pytest.skip("no container engine on DOCKER_HOST: run `make container-test`")
    return host


@pytest.fixture(scope="session")
def images(engine) -> list[str]:
    """Every image `make images` builds (layer-cached after the first build: seconds)."""
    build_images(["gateway", *worker_services(), "redis"], None, {})
    return all_tags()


@pytest.fixture
def fleet_of(images) -> Iterator[Callable[..., Fleet]]:
    """Start some of the chart's pods (rendered with extra values or edited manifests) on a
    private network; everything is removed afterwards."""
    fleets: list[Fleet] = []

    def start(
        *values: dict[str, Any],
        owners: set[str] | None = None,
        edit: Callable[[list[dict]], None] = lambda docs: None,
    ) -> Fleet:
        docs = render(*values)
        edit(docs)
        fleet = Fleet(
            docs,
            name=f"pf-test-{len(fleets)}",
            namespace=NAMESPACE,
            select=lambda pod: owners is None or pod.owner in owners,
        )
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.down()


def wait_job(api: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """A job's final view, asking the gateway to hold each request until it ends."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = api.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=10"}).json()
        if view["status"] in TERMINAL:
            return view
    raise AssertionError(f"job {job_id} not finished after {timeout_s} s: {view}")


def wait_batch(api: httpx.Client, batch_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (state := api.get(f"/v1/batches/{batch_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)  # a client polling, as the CLI does
    return state
