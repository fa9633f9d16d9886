"""The worker's parts, each alone against a real Redis: collection (batching.py), settlement
(settlement.py) and liveness (liveness.py) — no Worker, no handler."""

import json
import threading
import time

from services.core import keys
from services.core.batching import BatchCollector
from services.core.dag import DagSteps
from services.core.liveness import Heartbeat, KeepAlive, Registration
from services.core.pipeline import load_pipelines
from services.core.settings import Settings
from services.core.settlement import Settlement
from services.core.streams import StageStream
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES

CONFIG = load_pipelines(TEST_PIPELINES)
MEASURE = CONFIG.stages["measure"]


def submit(client, job_id: str, image: bytes = b"img") -> None:
    DagSteps(client).create(
        job_id, CONFIG.pipelines["single"], image, {"tenant": "t"}, ttl_s=600, deadline_s=60
    )


def joined(client, consumer: str = "c1") -> StageStream:
    stream = StageStream(client, "measure", consumer)
    stream.ensure_group()
    return stream


def test_collector_reclaims_a_dead_consumers_tasks_before_reading_new_ones(redis_client):
    submit(redis_client, "old")
    dead = joined(redis_client, "dead")
    assert [d.job_id for d in dead.read(10, None)] == ["old"]  # taken, never acked
    submit(redis_client, "new")
    collector = BatchCollector(
        joined(redis_client), max_batch=1, max_delay_ms=0, block_ms=50, visibility_timeout_s=0.2
    )
    time.sleep(0.25)  # the dead consumer's entry must be idle past the visibility timeout
    assert [d.job_id for d in collector.collect()] == ["old"]
    assert [d.job_id for d in collector.collect()] == ["new"]
    assert collector.collect() == []  # nothing left: an empty batch after block_ms


def test_settlement_runs_what_may_run_and_settles_the_rest(redis_client):
    stream = joined(redis_client)
    for job_id, image in [("good", b"fine"), ("bad", b"poison"), ("gone", b"x")]:
        submit(redis_client, job_id, image)
    redis_client.delete(keys.job("gone"))  # expired before a worker got to it
    settlement = Settlement(redis_client, stream, MEASURE, "cpu", max_attempts=3)
    ran: list[list[str]] = []

    def execute(tasks):
        ran.append([t.job_id for t in tasks])
        return [{"size": 1, "digest": "d", "items": []}, ValueError("no good")]

    settlement.settle(stream.read(10, None), execute)
    assert ran == [["good", "bad"]]  # the gone job's task never reached the handler
    assert wait_terminal(redis_client, "good", 5)["status"] == "succeeded"
    bad = wait_terminal(redis_client, "bad", 5)
    assert bad["error"]["code"] == "stage_error" and bad["error"]["message"] == "no good"
    assert redis_client.xlen(keys.stream("measure")) == 0  # every delivery acked


def test_keepalive_touches_entries_only_while_holding_them(redis_client):
    submit(redis_client, "j1")
    stream = joined(redis_client)
    (delivery,) = stream.read(1, None)
    stopping = threading.Event()
    keepalive = KeepAlive(stream, visibility_timeout_s=0.3, batch_timeout_s=60, stopping=stopping)
    keepalive.start()

    def idle_ms() -> int:
        (entry,) = redis_client.xpending_range(
            keys.stream("measure"), keys.group("measure"), "-", "+", 1
        )
        return entry["time_since_delivered"]

    try:
        with keepalive.holding([delivery.entry_id]):
            time.sleep(0.5)
            assert idle_ms() < 300  # touched every 0.1 s
        time.sleep(0.5)
        assert idle_ms() >= 400  # released: nobody touches it any more
    finally:
        stopping.set()
        keepalive.join(timeout_s=2)


def test_registration_writes_the_record_once_per_interval(redis_client):
    registration = Registration(redis_client, "w1", "measure", "gpu", Settings())
    registration.refresh()
    first = json.loads(redis_client.hget(keys.WORKERS, "w1"))
    assert first["stage"] == "measure" and first["pool"] == "gpu"
    assert first["started_ms"] == first["seen_ms"]
    registration.refresh()  # not due yet: nothing written
    assert json.loads(redis_client.hget(keys.WORKERS, "w1")) == first


def test_heartbeat_goes_stale_without_beats():
    heartbeat = Heartbeat(max_age_s=0.05)
    assert heartbeat.check()[0]
    time.sleep(0.06)
    assert not heartbeat.check()[0]
    heartbeat.beat()
    assert heartbeat.check()[0]
