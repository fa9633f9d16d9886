"""The worker runtime in-process against a real Redis, with the model-free test stages."""

import threading
import time

import redis

from services.cli.redis_server import free_port, start_redis
from services.core import keys
from services.core.dag import DagSteps
from services.core.pipeline import load_pipelines
from services.core.plugins import load_handler
from services.core.settings import Settings
from services.core.worker import Worker
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES, make_worker

CONFIG = load_pipelines(TEST_PIPELINES)


def submit(redis_client, job_id, image=b"img", pipeline="single"):
    return DagSteps(redis_client).create(
        job_id, CONFIG.pipelines[pipeline], image, {"tenant": "t"}, ttl_s=600, deadline_s=60
    )


def test_collect_honours_max_batch(redis_client):
    worker = make_worker(redis_client, "measure", max_batch=4, max_delay_ms=0)
    for i in range(10):
        submit(redis_client, f"j{i}")
    sizes = [len(worker.collect()) for _ in range(3)]
    assert sizes == [4, 4, 2]


def test_collect_waits_max_delay_for_a_partial_batch(redis_client):
    worker = make_worker(redis_client, "measure", max_batch=4, max_delay_ms=300)
    submit(redis_client, "j0")
    started = time.monotonic()
    batch = worker.collect()
    assert len(batch) == 1
    assert time.monotonic() - started >= 0.3


def test_collect_tops_up_within_the_delay_and_returns_when_full(redis_client):
    worker = make_worker(redis_client, "measure", max_batch=3, max_delay_ms=20_000)
    submit(redis_client, "j0")
    result: list = []
    thread = threading.Thread(target=lambda: result.append(worker.collect()))
    thread.start()
    submit(redis_client, "j1")
    submit(redis_client, "j2")
    thread.join(timeout=10)  # far below the 20 s delay: a full batch returns at once
    assert not thread.is_alive()
    assert sorted(d.job_id for d in result[0]) == ["j0", "j1", "j2"]


def test_batch_runs_as_one_handler_call(redis_client):
    worker = make_worker(redis_client, "measure", max_batch=8, max_delay_ms=0)
    for i in range(5):
        submit(redis_client, f"j{i}", image=b"x" * (i + 1))
    worker.process(worker.collect())
    assert [len(c) for c in worker.handler.calls] == [5]
    for i in range(5):
        view = wait_terminal(redis_client, f"j{i}", 5)
        assert view["status"] == "succeeded"
        assert view["result"]["size"] == i + 1


def test_bad_task_fails_only_its_own_job(redis_client):
    worker = make_worker(redis_client, "measure", max_batch=8, max_delay_ms=0)
    submit(redis_client, "good1", image=b"fine")
    submit(redis_client, "bad", image=b"poison")
    submit(redis_client, "bug", image=b"crash")
    submit(redis_client, "good2", image=b"also fine")
    worker.process(worker.collect())
    assert wait_terminal(redis_client, "good1", 5)["status"] == "succeeded"
    assert wait_terminal(redis_client, "good2", 5)["status"] == "succeeded"
    bad = wait_terminal(redis_client, "bad", 5)
    assert bad["status"] == "failed"
    assert bad["error"] == {
        "code": "invalid_input",
        "node": "m",
        "stage": "measure",
        "message": "poisoned image",
    }
    bug = wait_terminal(redis_client, "bug", 5)
    assert bug["error"]["code"] == "stage_error"
    assert "simulated handler bug" in bug["error"]["message"]
    assert redis_client.xlen(keys.stream("measure")) == 0  # everything acked


def test_fan_out_fan_in_with_worker_loops(redis_client, running):
    for stage in ("measure", "scale", "total"):
        running(make_worker(redis_client, stage))
    submit(redis_client, "d1", image=b"12345", pipeline="diamond")
    view = wait_terminal(redis_client, "d1", 10)
    assert view["status"] == "succeeded", view
    assert view["result"] == {"total": 25, "parts": 2, "size": 5, "items": []}
    assert set(view["nodes"]) == {"m", "double", "triple", "sum"}
    assert all(n["attempts"] == 1 for n in view["nodes"].values())


def test_stale_task_of_a_dead_consumer_is_reclaimed(redis_client, running):
    settings = Settings(block_ms=50, visibility_timeout_s=0.5, pipelines_file=TEST_PIPELINES)
    submit(redis_client, "j1")
    # A consumer takes the task and dies without acking.
    redis_client.xgroup_create(keys.stream("measure"), keys.group("measure"), id="0")
    assert redis_client.xreadgroup(keys.group("measure"), "dead", {keys.stream("measure"): ">"})
    running(make_worker(redis_client, "measure", settings))
    view = wait_terminal(redis_client, "j1", 10)
    assert view["status"] == "succeeded"


def test_attempts_exhausted_goes_to_dead_letter(redis_client):
    settings = Settings(
        block_ms=50, visibility_timeout_s=0.05, max_attempts=2, pipelines_file=TEST_PIPELINES
    )
    submit(redis_client, "j1")
    steps = DagSteps(redis_client)
    redis_client.xgroup_create(keys.stream("measure"), keys.group("measure"), id="0")
    redis_client.xreadgroup(keys.group("measure"), "dead", {keys.stream("measure"): ">"})
    for _ in range(2):  # two workers began it and crashed
        steps.begin("j1", "m", "dead", "cpu", 2)
    worker = make_worker(redis_client, "measure", settings)
    deadline = time.monotonic() + 5
    while not (batch := worker.collect()):  # reclaimed once idle past the visibility timeout
        assert time.monotonic() < deadline
    worker.process(batch)
    view = wait_terminal(redis_client, "j1", 5)
    assert view["status"] == "failed"
    assert view["error"]["code"] == "max_attempts_exceeded"
    (entry,) = redis_client.xrange(keys.dead("measure"))
    assert entry[1][b"job"] == b"j1" and entry[1][b"reason"] == b"max_attempts_exceeded"


def slow_batch_with_a_second_worker(redis_client, running, settings):
    """A slow batch on a first worker, then a second worker ready to take it over."""
    first = running(make_worker(redis_client, "slow-measure", settings))
    submit(redis_client, "j1", pipeline="slow")
    deadline = time.monotonic() + 5
    while not first.handler.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # poll interval, not a synchronisation
    second = running(make_worker(redis_client, "slow-measure", settings))
    return second, wait_terminal(redis_client, "j1", 10)


def test_keepalive_stops_a_long_batch_being_stolen(redis_client, running):
    # The batch takes 1.5 s, three times the visibility timeout; a second worker must not
    # take it over while the first still works on it.
    settings = Settings(block_ms=50, visibility_timeout_s=0.5, pipelines_file=TEST_PIPELINES)
    second, view = slow_batch_with_a_second_worker(redis_client, running, settings)
    assert view["status"] == "succeeded"
    assert view["nodes"]["m"]["attempts"] == 1
    assert second.handler.calls == []


def test_worker_started_before_redis_joins_once_it_is_up(running):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    worker = Worker(
        client,
        CONFIG.stages["measure"],
        load_handler(CONFIG.stages["measure"]),
        Settings(block_ms=50, pipelines_file=TEST_PIPELINES),
    )
    running(worker)  # retries with backoff while nothing listens on the port
    with start_redis(port=port, order=("path", "embedded")):
        submit(client, "late")
        assert wait_terminal(client, "late", 15)["status"] == "succeeded"
        worker.stop()


def test_a_batch_past_batch_timeout_is_released_to_other_workers(redis_client, running):
    # The slow stage takes 1.5 s; with a 0.5 s batch timeout its first worker stops keeping the
    # task alive, so a second worker reclaims it (a second attempt) while the first still runs.
    settings = Settings(
        block_ms=50, visibility_timeout_s=0.3, batch_timeout_s=0.5, pipelines_file=TEST_PIPELINES
    )
    second, view = slow_batch_with_a_second_worker(redis_client, running, settings)
    assert view["status"] == "succeeded"
    assert second.handler.calls == [["j1"]]
    assert view["nodes"]["m"]["attempts"] == 2
