"""Dead letters against a real Redis: listing and paging, replay (replay.lua) with real worker
loops finishing the replayed jobs, the refusals, and purge."""

from __future__ import annotations

import json

import pytest

from services.core import keys
from services.core.dag import Created, DagSteps
from services.core.deadletters import BadCursor, DeadLetters, UnknownStage
from services.core.jobs import job_view
from services.core.pipeline import load_pipelines
from tests.deadletters import exhaust_attempts
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES, make_worker

CONFIG = load_pipelines(TEST_PIPELINES)
REPLAY = {"ttl_s": 600, "deadline_s": 60}


@pytest.fixture
def letters(redis_client) -> DeadLetters:
    return DeadLetters(redis_client, CONFIG.stages)


def submit(client, job_id: str, image: bytes = b"picture", pipeline: str = "single") -> None:
    reply = DagSteps(client).create(
        job_id, CONFIG.pipelines[pipeline], image, {"tenant": "t"}, ttl_s=600, deadline_s=60
    )
    assert isinstance(reply, Created)


def run_once(client, stage: str) -> None:
    worker = make_worker(client, stage)
    worker.process(worker.collect())


def test_a_replayed_job_runs_again_and_the_replay_is_on_its_record(redis_client, letters, running):
    submit(redis_client, "j1", b"twelve bytes")
    exhaust_attempts(redis_client, "measure")
    assert job_view(redis_client.hgetall(keys.job("j1")))["status"] == "failed"
    (letter,), next_cursor = letters.page()
    assert next_cursor is None
    assert (letter.stage, letter.job, letter.node, letter.reason) == (
        "measure",
        "j1",
        "m",
        "max_attempts_exceeded",
    )
    assert letter.error["code"] == "max_attempts_exceeded"
    assert letters.get("measure", letter.id) == letter
    assert letters.counts() == {"measure": 1, "scale": 0, "slow-measure": 0, "total": 0}

    (result,) = letters.replay([letter], "ops", **REPLAY)
    assert (result.outcome, result.job) == ("replayed", "j1")
    assert redis_client.xlen(keys.dead("measure")) == 0
    view = job_view(redis_client.hgetall(keys.job("j1")))
    assert view["status"] == "running" and "error" not in view
    assert view["nodes"]["m"]["attempts"] == 0 and view["nodes"]["m"]["status"] == "queued"
    (replay,) = view["replays"]
    assert replay["by"] == "ops" and replay["dead_letter"] == letter.id
    assert (replay["stage"], replay["node"]) == ("measure", "m")
    assert replay["at"].endswith("Z") or replay["at"].endswith("+00:00")

    running(make_worker(redis_client, "measure"))
    done = wait_terminal(redis_client, "j1", 10)
    assert done["status"] == "succeeded", done
    assert done["result"]["size"] == len(b"twelve bytes")  # the request image was kept for it
    assert done["nodes"]["m"]["attempts"] == 1
    assert len(done["replays"]) == 1


def test_replaying_a_fan_out_reruns_the_sibling_its_failure_dropped(redis_client, letters, running):
    # diamond: m -> (double, triple) -> sum. Both scale tasks exhaust their attempts: the first
    # fails the job, the second is dead-lettered too but the job had already failed.
    submit(redis_client, "d1", b"12345", pipeline="diamond")
    run_once(redis_client, "measure")
    assert exhaust_attempts(redis_client, "scale") == 2
    first, second = letters.page("scale")[0]
    job_error = json.loads(redis_client.hget(keys.job("d1"), "error"))
    assert job_error == first.error and job_error["node"] == first.node

    (result,) = letters.replay([first], "ops", **REPLAY)
    assert (result.outcome, result.detail) == ("replayed", "2")  # both scale nodes re-enqueued
    (refused,) = letters.replay([second], "ops", **REPLAY)
    assert (refused.outcome, refused.detail) == ("not_failed_here", "running")

    for stage in ("scale", "total"):
        running(make_worker(redis_client, stage))
    done = wait_terminal(redis_client, "d1", 10)
    assert done["status"] == "succeeded", done
    assert done["result"] == {"total": 25, "parts": 2, "size": 5, "items": []}
    assert letters.counts()["scale"] == 1  # the refused letter stays for the operator


def test_a_task_still_in_its_stream_is_not_enqueued_twice(redis_client, letters):
    # A fan-out sibling that no worker took yet runs from its own entry after the replay.
    submit(redis_client, "d1", b"12345", pipeline="diamond")
    run_once(redis_client, "measure")
    steps = DagSteps(redis_client)
    stream, group = keys.stream("scale"), keys.group("scale")
    redis_client.xgroup_create(stream, group, id="0")
    ((entry, fields),) = redis_client.xreadgroup(group, "c", {stream: ">"}, count=1)[0][1]
    node = fields[b"node"].decode()
    error = {"code": "max_attempts_exceeded", "node": node, "message": "gave up"}
    steps.fail("d1", node, "scale", entry.decode(), error, "max_attempts_exceeded")
    (letter,), _ = letters.page("scale")
    assert letters.replay([letter], "ops", **REPLAY)[0].detail == "1"
    assert redis_client.xlen(stream) == 2  # the failed node again, and its untouched sibling


def test_refusals_change_nothing_and_expired_letters_can_be_purged(redis_client, letters):
    for job_id in ("gone", "done", "bare"):
        submit(redis_client, job_id)
    exhaust_attempts(redis_client, "measure")
    gone, done, bare = letters.page()[0]
    redis_client.delete(keys.job("gone"))  # its TTL ran out
    redis_client.hset(keys.job("done"), "status", "canceled")
    redis_client.delete(keys.blob("bare"))  # its image's retention ran out
    outcomes = letters.replay([gone, done, bare], "ops", **REPLAY)
    assert [(r.outcome, r.detail) for r in outcomes] == [
        ("job_expired", ""),
        ("not_failed_here", "canceled"),
        ("inputs_gone", "$request.image"),
    ]
    assert redis_client.xlen(keys.dead("measure")) == 3
    assert job_view(redis_client.hgetall(keys.job("bare")))["status"] == "failed"
    assert letters.job_status(gone) is None and letters.job_status(done) == "canceled"

    purged = letters.purge([gone, done, bare], only_expired=True)
    assert [(r.id, r.outcome) for r in purged] == [
        (done.id, "kept"),
        (bare.id, "kept"),
        (gone.id, "purged"),
    ]
    assert [r.outcome for r in letters.purge([gone, done])] == ["not_found", "purged"]
    assert letters.replay([done], "ops", **REPLAY)[0].outcome == "not_found"
    assert [x.id for x in letters.page()[0]] == [bare.id]


def test_a_dead_lettered_job_keeps_its_image_only_for_the_retention(redis_client):
    steps = DagSteps(redis_client)
    error = {"code": "max_attempts_exceeded", "message": "gave up"}
    for job_id, keep in (("kept", 30), ("dropped", 0), ("plain", 30)):
        submit(redis_client, job_id)
        reason = "" if job_id == "plain" else "max_attempts_exceeded"
        steps.fail(job_id, "m", "measure", "0-1", error, reason, keep_input_s=keep)
    assert 0 < redis_client.ttl(keys.blob("kept")) <= 30  # shortened from the job's 600 s
    assert not redis_client.exists(keys.blob("dropped"))
    assert not redis_client.exists(keys.blob("plain"))  # other failures never keep it


def test_pages_walk_every_stage_in_order_with_a_cursor(redis_client, letters):
    steps = DagSteps(redis_client)
    error = {"code": "max_attempts_exceeded", "message": "gave up"}
    for i in range(5):
        for stage in ("total", "measure"):
            steps.fail(f"j{i}", "n", stage, "0-1", error, "max_attempts_exceeded")
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = letters.page(after=cursor, limit=3)
        seen += [(x.stage, x.job) for x in page]
        pages += 1
        if cursor is None:
            break
    assert seen == [("measure", f"j{i}") for i in range(5)] + [("total", f"j{i}") for i in range(5)]
    assert pages == 4
    assert [x.job for x in letters.page("total", limit=10)[0]] == [f"j{i}" for i in range(5)]
    with pytest.raises(BadCursor):
        letters.page(after="measure")
    with pytest.raises(UnknownStage):
        letters.page("nope")
    assert letters.get("measure", "not-an-id") is None
