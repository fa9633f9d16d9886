"""compose.yaml: generated from the chart (so the two cannot drift), and run for real with the
Compose on this machine (Debian's docker-compose, or a `docker compose` plugin where present)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from services.cli.redis_server import free_port
from tools.containers.compose import COMPOSE, compose
from tools.kubetools import ROOT

PROJECT = "pf-compose-test"


def test_compose_file_is_the_chart_rendered():
    assert COMPOSE.read_text() == compose(), "stale: run python -m tools.containers.compose"


def compose_command() -> list[str]:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("no Compose: make engine installs Debian's docker-compose")


@pytest.fixture
def project(images) -> Iterator[tuple[list[str], dict[str, str]]]:
    command = [*compose_command(), "--project-name", PROJECT, "--file", str(COMPOSE)]
    env = {**os.environ, "REDIS_PASSWORD": "compose-test-password"}
    env["POSEFLEET_PORT"] = str(free_port())  # the API on a free loopback port
    yield command, env
    subprocess.run([*command, "down", "--volumes", "--timeout", "30"], env=env, check=False,
                   capture_output=True, cwd=ROOT)  # fmt: skip


@pytest.mark.deploy
def test_compose_runs_the_fleet(project, photos):
    command, env = project
    unset = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    refused = subprocess.run([*command, "config"], env=unset, capture_output=True, text=True)
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr
    subprocess.run([*command, "up", "--detach"], env=env, check=True, capture_output=True)
    gateway = f"http://127.0.0.1:{env['POSEFLEET_PORT']}"
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=gateway, timeout=60) as api:
        while True:
            try:
                if api.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway never got ready"
            time.sleep(1)  # until Compose has started it
        job = api.post("/v1/pipelines/pose/jobs", content=photos["astronaut"],
                       headers={"Prefer": "wait=60"}).json()  # fmt: skip
    assert job["status"] == "succeeded" and len(job["result"]["people"]) == 1, job
