"""RQ wiring of the control plane: retries with intervals for what may pass, none for what
cannot, status mapping, failure reasons written for users."""

import redis
from rq import SimpleWorker
from rq.job import Job

from services.cli.redis_server import free_port
from services.control.queue import RETRY_INTERVALS, batch_state, control_queue, enqueue_batch
from services.core import keys
from services.core.settings import Settings, get_settings


def run_burst(client: redis.Redis, monkeypatch, job_redis_url: str) -> None:
    """One burst of a SimpleWorker; the batch job reads its settings (and its Redis URL) from
    the environment, as the control worker's jobs do."""
    monkeypatch.setenv("POSEFLEET_REDIS_URL", job_redis_url)
    get_settings.cache_clear()
    try:
        SimpleWorker([control_queue(client)], connection=client).work(burst=True)
    finally:
        get_settings.cache_clear()


def test_batch_jobs_retry_with_intervals_what_may_pass(redis_url, monkeypatch):
    client = redis.Redis.from_url(redis_url)
    batch_id = "6f1c2a4e-0000-4000-8000-000000000001"
    client.set(keys.upload(batch_id), b"PK\x03\x04", ex=60)
    job = enqueue_batch(client, batch_id, Settings(redis_url=redis_url))
    assert job.retries_left == len(RETRY_INTERVALS)
    assert job.retry_intervals == RETRY_INTERVALS
    assert batch_state(client, batch_id)["status"] == "queued"

    # the job's own Redis is unreachable: a fault that may pass, so RQ retries it
    run_burst(client, monkeypatch, f"redis://127.0.0.1:{free_port()}/0")
    job = Job.fetch(batch_id, connection=client)
    assert job.retries_left == len(RETRY_INTERVALS) - 1  # RQ scheduled the next attempt
    assert batch_state(client, batch_id)["status"] == "running"  # waiting to retry
    assert client.exists(keys.upload(batch_id))  # kept for the next attempt
    assert batch_state(client, "no-such-batch") == {"status": "expired"}


def test_a_batch_that_cannot_pass_fails_at_once_with_a_message_for_users(redis_url, monkeypatch):
    client = redis.Redis.from_url(redis_url)
    batch_id = "6f1c2a4e-0000-4000-8000-000000000002"  # no record, no upload: nothing to retry
    enqueue_batch(client, batch_id, Settings(redis_url=redis_url))
    run_burst(client, monkeypatch, redis_url)
    state = batch_state(client, batch_id)
    assert state["status"] == "failed"
    assert state["error"] == {
        "code": "batch_expired",
        "message": "the batch's upload has expired; submit it again",
    }


def test_the_last_failed_attempt_fails_the_batch_and_deletes_its_upload(redis_url, monkeypatch):
    client = redis.Redis.from_url(redis_url)
    batch_id = "6f1c2a4e-0000-4000-8000-000000000003"
    client.set(keys.upload(batch_id), b"PK\x03\x04", ex=60)
    job = enqueue_batch(client, batch_id, Settings(redis_url=redis_url))
    job.retries_left = 0  # as after the last retry interval
    job.save()
    run_burst(client, monkeypatch, f"redis://127.0.0.1:{free_port()}/0")
    state = batch_state(client, batch_id)
    assert state["status"] == "failed"
    assert state["error"]["code"] == "batch_failed"
    assert "redis" not in state["error"]["message"].lower()  # internals stay in the log
    assert not client.exists(keys.upload(batch_id))
