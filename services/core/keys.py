"""The Redis key layout, in one place (documented in docs/architecture.md).

The Lua DAG steps build stream names themselves (``STREAM_PREFIX`` is passed to them), because a
successor's stage is only known inside the script.
"""

from __future__ import annotations

PREFIX = "pf:"
STREAM_PREFIX = PREFIX + "stage:"
EVENTS_CHANNEL = PREFIX + "events"
STATS_STREAM = PREFIX + "stats:jobs"  # one summary per ended job, read by GET /v1/stats
WORKERS = PREFIX + "workers"  # consumer -> {stage, pool, started_ms, seen_ms}, for replica time
TERMINAL = ("succeeded", "failed", "canceled", "expired")
# Jobs that ended with a callback URL, appended by the ending DAG step; the control worker's
# relay turns each entry into one RQ delivery job (consumer group CALLBACKS_GROUP).
CALLBACKS_STREAM = PREFIX + "callbacks"
CALLBACKS_GROUP = PREFIX + "callbacks"


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def blob(job_id: str, name: str = "image") -> str:
    return f"{PREFIX}blob:{job_id}:{name}"


def stream(stage: str) -> str:
    return STREAM_PREFIX + stage


def group(stage: str) -> str:
    return f"{PREFIX}{stage}"


def dead(stage: str) -> str:
    return f"{PREFIX}dead:{stage}"


def idempotency(tenant: str, key: str) -> str:
    return f"{PREFIX}idem:{tenant}:{key}"


CONTROL_QUEUE = "posefleet-control"
WEBHOOK_QUEUE = "posefleet-webhooks"


def upload(batch_id: str) -> str:
    return f"{PREFIX}upload:{batch_id}"


def batch(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}"


def batch_results(batch_id: str) -> str:
    return f"{PREFIX}batch:{batch_id}:results"
