"""How a batch job fails: at once when retrying cannot help, and cleanly in every case.

RQ retries a failed job while its ``retries_left`` is above zero, deciding after the job's
failure callback has run; this callback is where a ``BatchRefused`` (not a video, a bad zip,
no frames, an archive over a limit, an expired upload) sets it to zero, so the batch fails at
once instead of after RQ's back-off intervals (156 s), while a Redis outage or a crash is
still retried. On the final failure it stores a message written for users in the job's meta
(the exception, with its library internals, goes to the log) and deletes the upload, which
nothing will read again.
"""

from __future__ import annotations

import logging
from types import TracebackType

import redis
from rq.job import Job

from services.control.frames import BatchRefused
from services.core import keys

log = logging.getLogger("posefleet.control")

UNEXPECTED = {
    "code": "batch_failed",
    "message": "the batch could not be expanded after several attempts; retry it later",
}


def on_batch_failure(
    job: Job,
    connection: redis.Redis,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> None:
    refused = isinstance(exc_value, BatchRefused)
    if refused:
        job.retries_left = 0
    context = {"batch": job.id, "retries_left": job.retries_left}
    if job.retries_left:
        log.warning("batch attempt failed; RQ retries it", extra=context, exc_info=exc_value)
        return
    error = exc_value.error if isinstance(exc_value, BatchRefused) else UNEXPECTED
    detail = {"code": error["code"], "reason": error["message"]}
    log.warning(
        "batch failed", extra={**context, **detail}, exc_info=None if refused else exc_value
    )
    job.meta["error"] = error
    job.save_meta()
    connection.delete(keys.upload(job.id))


def failure_error(job: Job) -> dict[str, str]:
    """The error a failed batch shows: the one recorded at its failure, or a generic one (a
    batch stopped or failed outside the job, e.g. its worker was killed)."""
    return job.meta.get("error") or UNEXPECTED
