"""Fault injection with real worker processes: SIGKILL mid-batch, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core import keys
from services.core.dag import DagSteps
from services.core.jobs import job_view
from services.core.pipeline import load_pipelines
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES, make_worker, worker_threads

ROOT = Path(__file__).resolve().parents[2]
CHAIN = load_pipelines(TEST_PIPELINES).pipelines["slow-chain"]


@pytest.fixture
def spawn(redis_url) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(stage: str, visibility_timeout_s: float = 30) -> subprocess.Popen:
        env = {
            **os.environ,
            "POSEFLEET_REDIS_URL": redis_url,
            "POSEFLEET_PIPELINES_FILE": str(TEST_PIPELINES),
            "POSEFLEET_BLOCK_MS": "100",
            "POSEFLEET_METRICS_PORT": "0",
            "POSEFLEET_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", stage],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def submit_chain(redis_client, count: int) -> list[str]:
    steps = DagSteps(redis_client)
    ids = [f"job-{i}" for i in range(count)]
    for i, job_id in enumerate(ids):
        steps.create(job_id, CHAIN, b"x" * (i + 1), {"tenant": "t"}, ttl_s=600, deadline_s=120)
    return ids


def wait_all_running(redis_client, ids: list[str], timeout_s: float = 20) -> set[str]:
    """Poll until a worker has begun every job's root node; returns the workers holding them."""
    deadline = time.monotonic() + timeout_s
    while True:
        views = [job_view(redis_client.hgetall(keys.job(j))) for j in ids]
        if all(v["nodes"]["m"]["status"] == "running" for v in views):
            return {v["nodes"]["m"]["worker"] for v in views}
        assert time.monotonic() < deadline, "worker never picked the batch up"
        time.sleep(0.02)  # poll interval


def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(redis_client, spawn):
    ids = submit_chain(redis_client, 4)  # queued before the worker starts: one batch of 4
    victim = spawn("slow-measure", visibility_timeout_s=1.0)
    holders = wait_all_running(redis_client, ids)
    assert len(holders) == 1  # one worker holds all four in flight
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    spawn("slow-measure", visibility_timeout_s=1.0)  # the survivor reclaims after 1 s idle
    with worker_threads() as start:
        start(make_worker(redis_client, "scale"))
        views = [wait_terminal(redis_client, j, 30) for j in ids]
    for i, view in enumerate(views):
        assert view["status"] == "succeeded", view
        assert view["result"] == {"value": 2 * (i + 1)}
        assert view["nodes"]["m"]["attempts"] == 2  # the lost attempt, then the reclaim
        assert view["nodes"]["m"]["worker"] not in holders
        assert view["nodes"]["double"]["attempts"] == 1  # successor released exactly once
    assert redis_client.xlen(keys.stream("slow-measure")) == 0
    assert redis_client.xlen(keys.dead("slow-measure")) == 0


def test_sigterm_finishes_and_acks_the_batch_then_exits_zero(redis_client, spawn):
    ids = submit_chain(redis_client, 3)
    worker = spawn("slow-measure")
    wait_all_running(redis_client, ids)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    for job_id in ids:
        view = job_view(redis_client.hgetall(keys.job(job_id)))
        assert view["nodes"]["m"]["status"] == "succeeded"
        assert view["nodes"]["m"]["attempts"] == 1
    pending = redis_client.xpending(keys.stream("slow-measure"), keys.group("slow-measure"))
    assert pending["pending"] == 0
    assert redis_client.xlen(keys.stream("scale")) == 3  # successors were released
    output = worker.stdout.read().decode()
    assert '"worker stopped"' in output or "worker stopped" in output
