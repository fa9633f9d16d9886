"""The control-plane queue (RQ): enqueue batch expansions, read their state and view."""

from __future__ import annotations

from typing import Any

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from services.control.batches import expand_batch
from services.control.failures import failure_error, on_batch_failure
from services.core import keys
from services.core.jobs import webhook_view
from services.core.settings import Settings

# Retried by RQ with these back-off intervals (seconds) when a batch job raises (except a
# BatchRefused: see services/control/failures.py) or its worker dies; frame jobs already
# submitted are found again by their idempotency keys.
RETRY_INTERVALS = [5, 30, 120]
BATCH_TIMEOUT_S = 6 * 3600

_STATES = {
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.STARTED: "running",
    JobStatus.SCHEDULED: "running",  # waiting for a retry interval
    JobStatus.FINISHED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "canceled",
}


def control_queue(client: redis.Redis) -> Queue:
    return Queue(keys.CONTROL_QUEUE, connection=client)


def enqueue_batch(client: redis.Redis, batch_id: str, settings: Settings) -> Job:
    return control_queue(client).enqueue_call(
        expand_batch,
        args=(batch_id,),
        job_id=batch_id,
        timeout=BATCH_TIMEOUT_S,
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.result_ttl_s,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        on_failure=Callback(on_batch_failure),
        meta={"total": None, "submitted": 0, "done": 0, "failed": 0},
        description=f"expand batch {batch_id}",
    )


def batch_state(client: redis.Redis, batch_id: str) -> dict[str, Any]:
    """Status and progress from the RQ job; ``gone`` once RQ's result TTL has passed."""
    try:
        job = Job.fetch(batch_id, connection=client)
    except NoSuchJobError:
        return {"status": "expired"}
    state: dict[str, Any] = {"status": _STATES.get(job.get_status(), "running"), **job.meta}
    if state["status"] == "failed":
        state["error"] = failure_error(job)
    return state


def cancel_batch(client: redis.Redis, batch_id: str, ttl_s: int) -> str:
    """Cancel a batch; returns ``canceled``, or the state it had already ended in. A queued
    batch (or one waiting for a retry) is canceled in RQ; a running expansion finds the
    record's ``canceled`` mark at its next step, cancels its frame jobs in flight and stops.
    The upload is deleted now either way: nothing will read it again. Canceling twice is
    canceling once."""
    if client.hexists(keys.batch(batch_id), "canceled"):
        return "canceled"
    state = batch_state(client, batch_id)["status"]
    if state in ("succeeded", "failed", "canceled", "expired"):
        return state
    mark = client.pipeline(transaction=True)  # the record keeps a TTL even if it just expired
    mark.hset(keys.batch(batch_id), "canceled", "1")
    mark.expire(keys.batch(batch_id), ttl_s)
    mark.execute()
    job = Job.fetch(batch_id, connection=client)
    if job.get_status() != JobStatus.STARTED:
        job.cancel()
    client.delete(keys.upload(batch_id))
    return "canceled"


def batch_view(batch_id: str, record: dict[str, str], state: dict[str, Any]) -> dict[str, Any]:
    """A batch as ``GET /v1/batches/{id}`` shows it (and its webhook sends it): the record
    (pipeline, kind, callback) with the RQ job's status and progress."""
    total, done, failed = state.get("total"), state.get("done", 0), state.get("failed", 0)
    finished = done + failed
    canceled = bool(record.get("canceled"))  # DELETE said so, before the expansion stopped
    view = {
        "id": batch_id,
        "pipeline": record["pipeline"],
        "kind": record["kind"],
        "status": "canceled" if canceled else state["status"],
        "total": total,
        "submitted": state.get("submitted", 0),
        "done": done,
        "failed": failed,
        "progress": None if total is None else round(finished / total, 4) if total else 1.0,
        "results_url": f"/v1/batches/{batch_id}/results",
        "error": None if canceled else state.get("error"),
    }
    if "callback" in record:
        view["webhook"] = webhook_view(record)
    return view
