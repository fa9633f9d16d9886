"""RQ wiring of the control plane: retries with intervals, status mapping, failure reasons."""

import redis
from rq import SimpleWorker
from rq.job import Job

from services.control.queue import RETRY_INTERVALS, batch_state, control_queue, enqueue_batch
from services.core.settings import Settings


def test_batch_jobs_retry_with_intervals_and_report_why(redis_url, monkeypatch):
    monkeypatch.setenv("POSEFLEET_REDIS_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    batch_id = "6f1c2a4e-0000-4000-8000-000000000001"  # no record, no upload: must fail
    job = enqueue_batch(client, batch_id, Settings(redis_url=redis_url))
    assert job.retries_left == len(RETRY_INTERVALS)
    assert job.retry_intervals == RETRY_INTERVALS
    assert batch_state(client, batch_id)["status"] == "queued"

    from services.core.settings import get_settings

    get_settings.cache_clear()  # the job reads settings from the environment set above
    try:
        SimpleWorker([control_queue(client)], connection=client).work(burst=True)
    finally:
        get_settings.cache_clear()
    job = Job.fetch(batch_id, connection=client)
    assert job.retries_left == len(RETRY_INTERVALS) - 1  # RQ scheduled the next attempt
    assert batch_state(client, batch_id)["status"] == "running"  # waiting to retry
    assert batch_state(client, "no-such-batch") == {"status": "expired"}
