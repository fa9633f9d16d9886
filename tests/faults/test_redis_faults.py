"""Redis failing under the fleet: full (maxmemory, noeviction), a failover to a read-only
replica, a restart that lost its data, a pool with no free connection — with real worker
processes, a real gateway and a private Redis per test (CONFIG SET must not leak)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
import redis

from services.cli.redis_server import LocalRedis, free_port, start_redis
from services.core import keys
from services.core.dag import DagSteps
from services.core.jobs import is_terminal
from services.core.pipeline import load_pipelines
from services.core.settings import Settings
from services.core.worker import consumer_prefix
from tests.faults.fleet import Fleet, Process, fill_to_maxmemory, fleet, free_filler
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES, gateway_server, make_worker

pytestmark = [pytest.mark.faults, pytest.mark.integration]  # private Redis servers

CONFIG = load_pipelines(TEST_PIPELINES)
PROBLEM = "application/problem+json"
# Longer than two registration intervals (5 s): every idle worker writes to the full Redis.
FULL_FOR_S = 12.0


@pytest.fixture
def private_redis() -> Iterator[LocalRedis]:
    with start_redis(order=("path", "embedded")) as server:
        yield server


def png(seed: int) -> bytes:
    pixels = np.full((8 + seed, 8, 3), seed % 256, np.uint8)
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes()


def submit_http(http: httpx.Client, pipeline: str, seed: int) -> str:
    response = http.post(f"/v1/pipelines/{pipeline}/jobs", content=png(seed))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def submit_chain(client: redis.Redis, count: int) -> list[str]:
    """``count`` jobs of the slow-chain pipeline, queued before any worker takes them."""
    steps = DagSteps(client)
    ids = [f"chain-{i}" for i in range(count)]
    for i, job_id in enumerate(ids):
        spec = CONFIG.pipelines["slow-chain"]
        steps.create(job_id, spec, b"x" * (i + 1), {"tenant": "t"}, ttl_s=600, deadline_s=300)
    return ids


def status(client: redis.Redis, job_id: str) -> str:
    return client.hget(keys.job(job_id), "status").decode()


def wait_until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # poll interval


def wait_in_log(process: Process, text: str, timeout_s: float = 20) -> None:
    wait_until(lambda: text in process.output(), timeout_s, f"'{text}' in {process.name}'s log")


def dead(f: Fleet) -> list[str]:
    return [f"{p.name} (exit {p.proc.returncode})" for p in f.workers() if not p.alive]


def test_full_redis_kills_no_worker_and_queued_jobs_finish_once_memory_is_freed(
    private_redis, tmp_path
):
    client = redis.Redis.from_url(private_redis.url)
    with fleet(private_redis.url, tmp_path, visibility_timeout_s="3") as f:
        url = f.gateway()
        for stage in ("measure", "scale", "scale", "total", "slow-measure"):
            f.worker(stage)
        with httpx.Client(base_url=url, timeout=30) as http:
            # Twelve 1.5 s tasks in batches of four: most are still queued when Redis fills.
            ids = [submit_http(http, "slow", i) for i in range(12)]
            ids += [submit_http(http, "diamond", i) for i in range(4)]
            written = fill_to_maxmemory(client)
            f.worker("scale", wait_ready=False)  # starts on a full Redis: cannot even join yet

            answers = []
            until = time.monotonic() + FULL_FOR_S
            while time.monotonic() < until:
                answers.append(http.post("/v1/pipelines/single/jobs", content=png(99)))
                time.sleep(0.5)  # pace of the probe submissions while Redis is full
            read_while_full = http.get(f"/v1/jobs/{ids[-1]}")
            unfinished = [j for j in ids if not is_terminal(status(client, j))]

            assert dead(f) == [], "\n".join(p.output()[-3000:] for p in f.workers())
            assert unfinished, "the fault never held a job back; the test proves nothing"
            assert {a.status_code for a in answers} == {503}, [a.text for a in answers]
            for answer in answers:
                assert answer.headers["content-type"] == PROBLEM
                assert answer.json()["code"] == "store_full"
                assert int(answer.headers["retry-after"]) > 0
            assert read_while_full.status_code in (200, 202)  # reads are still served

            free_filler(client, written)  # nothing is restarted: the fleet resumes by itself
            views = [wait_terminal(client, j, 60) for j in ids]
            assert [v["status"] for v in views] == ["succeeded"] * len(ids)
            after = submit_http(http, "diamond", 7)
            assert wait_terminal(client, after, 30)["status"] == "succeeded"
            assert dead(f) == []
            for worker in f.workers():  # each says what failed and keeps retrying
                assert '"error_class": "OutOfMemoryError"' in worker.output(), worker.output()


def test_failover_to_a_read_only_replica_mid_batch_loses_no_task(private_redis, tmp_path):
    """The batch in hand cannot be finished (READONLY): its tasks stay pending, are reclaimed
    once Redis is writable again, and each job succeeds with its successor released once."""
    client = redis.Redis.from_url(private_redis.url)
    with fleet(private_redis.url, tmp_path, visibility_timeout_s="2") as f:
        slow = f.worker("slow-measure")
        scale = f.worker("scale")
        ids = submit_chain(client, 4)
        wait_until(
            lambda: all(client.hget(keys.job(j), "n:m:status") == b"running" for j in ids),
            20,
            "the batch to start",
        )
        client.replicaof("127.0.0.1", free_port())  # a failover made this server a replica
        # The batch's finishing step is refused, and so is the idle worker's next read (or
        # its blocked read is cut: UNBLOCKED).
        wait_in_log(slow, '"redis error, retrying", "error_class": "ReadOnlyError"')
        wait_in_log(scale, '"redis error, retrying"')
        assert [status(client, j) for j in ids] == ["running"] * 4
        assert dead(f) == []

        client.replicaof("NO", "ONE")  # promoted back: writable again
        views = [wait_terminal(client, j, 30) for j in ids]
        for i, view in enumerate(views):
            assert view["status"] == "succeeded", view
            assert view["result"] == {"value": 2 * (i + 1)}
            assert view["nodes"]["m"]["attempts"] == 2  # the refused finish, then the reclaim
            assert view["nodes"]["double"]["attempts"] == 1  # successor released exactly once
        assert client.xlen(keys.stream("slow-measure")) == 0
        assert client.xlen(keys.dead("slow-measure")) == 0
        assert dead(f) == []


def test_a_restart_that_lost_the_groups_is_rejoined(tmp_path):
    """SHUTDOWN NOSAVE and a fresh server on the same port: streams and consumer groups are
    gone (NOGROUP); the workers recreate them and serve new jobs without a restart."""
    port = free_port()
    server = start_redis(port=port, order=("path", "embedded"))
    url = server.url
    try:
        client = redis.Redis.from_url(url)
        with fleet(url, tmp_path) as f:
            workers = [f.worker("slow-measure"), f.worker("scale")]
            first = submit_chain(client, 1)[0]
            assert wait_terminal(client, first, 30)["status"] == "succeeded"
            client.shutdown(nosave=True)
            server.stop()
            for worker in workers:
                wait_in_log(worker, "ConnectionError")
            server = start_redis(port=port, order=("path", "embedded"))
            # The data really is gone (the workers may already have made their groups again:
            # that is the recovery under test, so the first job's record is what proves it).
            assert not client.exists(keys.job(first))
            again = submit_chain(client, 2)
            views = [wait_terminal(client, j, 30) for j in again]
            assert [v["status"] for v in views] == ["succeeded"] * 2
            assert dead(f) == []
    finally:
        server.stop()


def test_gateway_answers_each_redis_failure_with_its_503_problem(private_redis):
    client = redis.Redis.from_url(private_redis.url)
    settings = Settings(
        redis_url=private_redis.url,
        pipelines_file=TEST_PIPELINES,
        redis_max_connections=2,  # one for the event subscription, one for requests
        redis_pool_timeout_s=0.5,
    )
    with gateway_server(settings) as url, httpx.Client(base_url=url, timeout=30) as http:

        def problem(response: httpx.Response, code: str) -> None:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["code"] == code
            assert int(response.headers["retry-after"]) > 0

        client.replicaof("127.0.0.1", free_port())
        problem(http.post("/v1/pipelines/single/jobs", content=png(1)), "store_unavailable")
        client.replicaof("NO", "ONE")

        written = fill_to_maxmemory(client)
        problem(http.post("/v1/pipelines/single/jobs", content=png(1)), "store_full")
        free_filler(client, written)

        # Every command waits 3 s: the first of five reads holds the only free connection
        # until then, and the other four give up after the 0.5 s pool timeout: busy, not
        # unreachable.
        client.client_pause(3000, all=True)
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(http.get, [f"/v1/jobs/none-{i}" for i in range(5)]))
        assert sorted(a.status_code for a in answers) == [404, 503, 503, 503, 503]
        for answer in answers:
            if answer.status_code == 503:
                problem(answer, "store_busy")

        private_redis.stop()
        problem(http.post("/v1/pipelines/single/jobs", content=png(1)), "store_unavailable")


def test_registries_hold_only_live_workers_after_five_restarts(private_redis, tmp_path):
    client = redis.Redis.from_url(private_redis.url)
    timings = {
        "visibility_timeout_s": "2",
        "dead_consumer_grace_s": "15",
        "worker_registry_retention_s": "15",
    }
    with fleet(private_redis.url, tmp_path, **timings) as f:
        live = {stage: [f.worker(stage), f.worker(stage)] for stage in ("measure", "scale")}
        # Five restarts, as a rollout or crashes make them: killed outright or stopped cleanly,
        # each replaced at once.
        for i, sig in enumerate([signal.SIGKILL, signal.SIGTERM] * 2 + [signal.SIGKILL]):
            stage = ("measure", "scale")[i % 2]
            old = live[stage].pop(0)
            old.proc.send_signal(sig)
            old.proc.wait(timeout=15)
            live[stage].append(f.worker(stage))

        def pids(names) -> list[int]:  # type: ignore[no-untyped-def]
            return sorted(int(n.decode().rsplit("-", 2)[1]) for n in names)

        def consumers(stage: str) -> list[int]:
            found = client.xinfo_consumers(keys.stream(stage), keys.group(stage))
            return pids(c["name"] for c in found)

        every_live = sorted(p.proc.pid for ps in live.values() for p in ps)

        def held() -> dict[str, list[int]]:
            return {"registry": pids(client.hkeys(keys.WORKERS))} | {
                stage: consumers(stage) for stage in live
            }

        expected = {"registry": every_live} | {
            stage: sorted(p.proc.pid for p in ps) for stage, ps in live.items()
        }
        before = held()
        # 15 s grace and retention + one 5 s registration interval, with room for a loaded
        # machine
        deadline = time.monotonic() + 45
        while held() != expected:
            assert time.monotonic() < deadline, f"{held()} != {expected} (started at {before})"
            time.sleep(0.2)  # poll interval
        assert client.hlen(keys.WORKERS) == 4
        assert all(p.alive for ps in live.values() for p in ps)


def test_a_dead_consumer_keeps_its_tasks_until_they_are_reclaimed(private_redis, tmp_path):
    """Pruning never drops a pending task: with the visibility timeout (25 s) longer than the
    grace (15 s), the killed holder counts as dead long before its batch is reclaimed, yet its
    consumer stays in the group until the survivor has reclaimed the batch, and only then goes."""
    client = redis.Redis.from_url(private_redis.url)
    timings = {"visibility_timeout_s": "25", "dead_consumer_grace_s": "15"}
    with fleet(private_redis.url, tmp_path, **timings) as f:
        holder = f.worker("slow-measure")
        ids = submit_chain(client, 4)
        wait_until(
            lambda: all(client.hget(keys.job(j), "n:m:status") == b"running" for j in ids),
            20,
            "the batch to start",
        )
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(timeout=10)
        killed = time.monotonic()
        f.worker("slow-measure")
        f.worker("scale")
        prefix = consumer_prefix(holder.proc.pid)

        def holder_pending() -> int | None:
            """The dead holder's pending count, None once its consumer is gone."""
            group = client.xinfo_consumers(keys.stream("slow-measure"), keys.group("slow-measure"))
            mine = [c["pending"] for c in group if c["name"].decode().startswith(prefix)]
            return mine[0] if mine else None

        held_past_grace = False  # seen holding its tasks after it was already known dead
        deadline = time.monotonic() + 60
        while (pending := holder_pending()) is not None:
            held_past_grace |= pending == 4 and time.monotonic() - killed > 15 + 5
            assert time.monotonic() < deadline, "the dead holder's consumer was never removed"
            time.sleep(0.2)  # poll interval
        assert held_past_grace, "the grace never passed while the tasks were pending"
        views = [wait_terminal(client, j, 30) for j in ids]
        for view in views:
            assert view["status"] == "succeeded", view
            assert view["nodes"]["m"]["attempts"] == 2  # the killed attempt, then the reclaim


def test_a_begin_refused_for_one_task_runs_the_others_and_keeps_it_pending(redis_client):
    """A Redis error on one task's begin step (here WRONGTYPE; a full or read-only Redis
    refuses some begins the same way) leaves that task pending for a later reclaim, while the
    tasks that did begin still run: their counted attempt is not wasted."""
    steps = DagSteps(redis_client)
    for job_id in ("a", "b", "c"):
        spec = CONFIG.pipelines["single"]
        steps.create(job_id, spec, job_id.encode(), {"tenant": "t"}, ttl_s=600, deadline_s=60)
    redis_client.delete(keys.job("b"))
    redis_client.set(keys.job("b"), "not a job record")
    worker = make_worker(redis_client, "measure")
    batch = worker.collect()
    assert [d.job_id for d in batch] == ["a", "b", "c"]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        worker.process(batch)
    assert [status(redis_client, j) for j in ("a", "c")] == ["succeeded"] * 2
    pending = redis_client.xpending_range(
        keys.stream("measure"), keys.group("measure"), min="-", max="+", count=10
    )
    assert [p["message_id"].decode() for p in pending] == [batch[1].entry_id]
