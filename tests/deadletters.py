"""Dead letters made the way production makes them: workers that crash on a task until it has
exhausted its attempts, then a live worker that reclaims it and gives it up."""

from __future__ import annotations

import contextlib
import time

import redis

from services.core import keys
from services.core.dag import DagSteps
from services.core.settings import Settings
from tests.workers import TEST_PIPELINES, make_worker


def exhaust_attempts(client: redis.Redis, stage: str, max_attempts: int = 2) -> int:
    """Every task waiting in ``stage`` is taken by a consumer that begins it ``max_attempts``
    times and never finishes (crashes); a worker then reclaims each past its 50 ms visibility
    timeout and moves it to the stage's dead letters. Returns how many were dead-lettered."""
    stream, group = keys.stream(stage), keys.group(stage)
    with contextlib.suppress(redis.ResponseError):  # the group exists already
        client.xgroup_create(stream, group, id="0", mkstream=True)
    taken = client.xreadgroup(group, "crashed", {stream: ">"})
    assert taken, f"nothing waiting in {stage}"
    steps = DagSteps(client)
    for _, fields in taken[0][1]:
        for _ in range(max_attempts):
            steps.begin(fields[b"job"].decode(), fields[b"node"].decode(), "crashed", "cpu", 9)
    settings = Settings(
        block_ms=50,
        visibility_timeout_s=0.05,
        max_attempts=max_attempts,
        pipelines_file=TEST_PIPELINES,
    )
    worker = make_worker(client, stage, settings)
    before, wanted = client.xlen(keys.dead(stage)), len(taken[0][1])
    deadline = time.monotonic() + 10
    while client.xlen(keys.dead(stage)) < before + wanted:
        assert time.monotonic() < deadline, "the tasks were not dead-lettered"
        worker.process(worker.collect())
    return wanted
