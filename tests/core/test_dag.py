"""The Lua DAG steps against a real Redis: fan-out, fan-in, idempotency, terminal states."""

import contextlib
import json
from pathlib import Path

import pytest

from services.core import keys
from services.core.dag import (
    Busy,
    Canceled,
    Created,
    DagSteps,
    Exhausted,
    Exists,
    Run,
    Settled,
    Skip,
    SkipReason,
)
from services.core.jobs import JobState, job_view
from services.core.pipeline import load_pipelines

CONFIG = load_pipelines(Path(__file__).resolve().parents[1] / "data" / "pipelines-test.yaml")
DIAMOND = CONFIG.pipelines["diamond"]


@pytest.fixture
def steps(redis_client):
    return DagSteps(redis_client)


def create(steps, job_id="j1", spec=DIAMOND, image=b"abc", **kw):
    kw.setdefault("ttl_s", 600)
    kw.setdefault("deadline_s", 60)
    return steps.create(job_id, spec, image, {"tenant": "t"}, **kw)


def take(redis_client, stage):
    """Read one entry of a stage the way a worker does (through its consumer group)."""
    stream, group = keys.stream(stage), keys.group(stage)
    with contextlib.suppress(Exception):
        redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    reply = redis_client.xreadgroup(group, "c1", {stream: ">"}, count=10)
    return (
        [(eid.decode(), f[b"job"].decode(), f[b"node"].decode()) for eid, f in reply[0][1]]
        if reply
        else []
    )


def run(steps, redis_client, stage, outputs_for):
    """Begin and complete every queued task of a stage; returns the complete() replies."""
    replies = []
    for entry, job_id, node in take(redis_client, stage):
        begun = steps.begin(job_id, node, "w1", "cpu", 3)
        assert isinstance(begun, Run), begun
        replies.append(steps.complete(job_id, node, stage, entry, outputs_for(node, begun), 1.5))
    return replies


def test_create_enqueues_roots_only(steps, redis_client):
    assert isinstance(create(steps), Created)
    assert redis_client.xlen(keys.stream("measure")) == 1
    assert redis_client.xlen(keys.stream("scale")) == 0
    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "queued"
    assert view["nodes"]["m"]["status"] == "queued"
    assert view["nodes"]["sum"]["status"] == "pending"
    assert redis_client.ttl(keys.job("j1")) > 0 and redis_client.ttl(keys.blob("j1")) > 0


def test_begin_resolves_inputs_and_marks_running(steps, redis_client):
    create(steps, image=b"\x00binary\xff")
    ((_entry, job_id, node),) = take(redis_client, "measure")
    reply = steps.begin(job_id, node, "w1", "cpu", 3)
    assert isinstance(reply, Run) and reply.attempts == 1
    assert reply.queue_ms >= 0 and reply.age_ms >= reply.queue_ms  # queue time, job age
    assert reply.values == [b"\x00binary\xff"]
    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "running"
    assert view["nodes"]["m"]["worker"] == "w1" and view["nodes"]["m"]["queue_ms"] >= 0


def test_fan_out_fan_in_and_final_result(steps, redis_client):
    create(steps)
    assert run(
        steps, redis_client, "measure", lambda n, b: {"size": 3, "digest": "d", "items": []}
    ) == [Settled.OK]
    assert redis_client.xlen(keys.stream("scale")) == 2  # fan-out: both branches released

    def scaled(node, begun):
        return {"value": json.loads(begun.values[0]) * (2 if node == "double" else 3)}

    # First branch done: the fan-in node still waits for the second.
    (entry, job_id, node), second = take(redis_client, "scale")
    begun = steps.begin(job_id, node, "w1", "cpu", 3)
    assert steps.complete(job_id, node, "scale", entry, scaled(node, begun), 1.0) == Settled.OK
    assert redis_client.xlen(keys.stream("total")) == 0
    begun = steps.begin(second[1], second[2], "w1", "cpu", 3)
    assert (
        steps.complete(second[1], second[2], "scale", second[0], scaled(second[2], begun), 1.0)
        == Settled.OK
    )
    assert redis_client.xlen(keys.stream("total")) == 1

    ((entry, job_id, node),) = take(redis_client, "total")
    begun = steps.begin(job_id, node, "w1", "cpu", 3)
    values = [json.loads(v) for v in begun.values]
    assert sorted(values) == [6, 9]
    assert (
        steps.complete(job_id, node, "total", entry, {"total": 15, "parts": 2}, 1.0)
        == Settled.FINISHED
    )

    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "succeeded"
    # [] must survive as a list: the result is concatenated, never re-encoded by cjson.
    assert view["result"] == {"total": 15, "parts": 2, "size": 3, "items": []}
    assert all(n["status"] == "succeeded" for n in view["nodes"].values())
    assert not redis_client.exists(keys.blob("j1"))  # the image is freed with the job
    for stage in ("measure", "scale", "total"):  # acked entries are deleted: length == backlog
        assert redis_client.xlen(keys.stream(stage)) == 0


def test_redelivered_completion_changes_nothing(steps, redis_client):
    create(steps)
    ((entry, job_id, node),) = take(redis_client, "measure")
    steps.begin(job_id, node, "w1", "cpu", 3)
    out = {"size": 3, "digest": "d", "items": []}
    assert steps.complete(job_id, node, "measure", entry, out, 1.0) == Settled.OK
    assert steps.begin(job_id, node, "w2", "cpu", 3) == Skip(SkipReason.DUPLICATE)
    again = steps.complete(job_id, node, "measure", entry, {**out, "size": 99}, 1.0)
    assert again == Settled.DUPLICATE
    assert redis_client.xlen(keys.stream("scale")) == 2  # successors released exactly once
    assert json.loads(redis_client.hget(keys.job("j1"), "o:m.size")) == 3


def test_failure_is_terminal_first_wins_and_dead_letters(steps, redis_client):
    create(steps)
    ((entry, job_id, node),) = take(redis_client, "measure")
    steps.begin(job_id, node, "w1", "cpu", 3)
    error = {"code": "invalid_input", "node": "m", "message": "bad"}
    assert (
        steps.fail(job_id, node, "measure", entry, error, dead_letter_reason="poison")
        == Settled.FAILED
    )
    assert (
        steps.fail(job_id, node, "measure", entry, {"code": "other", "message": "x"})
        == Settled.TERMINAL
    )
    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "failed" and view["error"]["code"] == "invalid_input"
    assert view["nodes"]["m"]["status"] == "failed"
    dead = redis_client.xrange(keys.dead("measure"))
    assert len(dead) == 1 and dead[0][1][b"reason"] == b"poison"
    assert redis_client.xpending(keys.stream("measure"), keys.group("measure"))["pending"] == 0


def test_exhausted_attempts(steps, redis_client):
    create(steps)
    ((_entry, job_id, node),) = take(redis_client, "measure")
    for attempt in (1, 2):
        assert steps.begin(job_id, node, "w1", "cpu", 2).attempts == attempt
    assert steps.begin(job_id, node, "w1", "cpu", 2) == Exhausted(2)


def test_cancel_then_tasks_are_dropped(steps, redis_client):
    create(steps)
    assert steps.cancel("j1").done
    assert steps.cancel("j1") == Canceled(already=JobState.CANCELED)
    ((_entry, job_id, node),) = take(redis_client, "measure")
    assert steps.begin(job_id, node, "w1", "cpu", 3) == Skip(SkipReason.TERMINAL)
    assert steps.cancel("nope") == Canceled(gone=True)


def test_deadline_expires_job(steps, redis_client):
    create(steps, deadline_s=0)
    redis_client.hincrby(keys.job("j1"), "deadline", -1)  # already past, without waiting
    ((_entry, job_id, node),) = take(redis_client, "measure")
    assert steps.begin(job_id, node, "w1", "cpu", 3) == Skip(SkipReason.EXPIRED)
    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "expired" and view["error"]["code"] == "deadline_exceeded"


def test_idempotency_key_returns_first_job(steps, redis_client):
    idem = (keys.idempotency("t", "k"), "j1 fp")
    assert isinstance(create(steps, "j1", idempotency=idem), Created)
    assert create(steps, "j2", idempotency=(idem[0], "j2 fp")) == Exists("j1", "fp")
    assert not redis_client.exists(keys.job("j2"))


def test_gone_job_tasks_are_acked(steps, redis_client):
    create(steps)
    ((entry, job_id, node),) = take(redis_client, "measure")
    redis_client.delete(keys.job("j1"))  # expired by TTL
    assert steps.begin(job_id, node, "w1", "cpu", 3) == Skip(SkipReason.GONE)
    assert steps.complete(job_id, node, "measure", entry, {"size": 1}, 1.0) == Settled.GONE
    assert redis_client.xlen(keys.stream("measure")) == 0


def test_admission_control_is_part_of_the_atomic_create(steps, redis_client):
    assert isinstance(create(steps, "j1", max_backlog=1), Created)
    assert create(steps, "j2", max_backlog=1) == Busy("measure", 1)
    assert not redis_client.exists(keys.job("j2"))
    assert redis_client.xlen(keys.stream("measure")) == 1
