"""The Redis key layout, in one place (documented in docs/architecture.md).

The Lua DAG steps build stream names themselves (``STREAM_PREFIX`` is passed to them), because a
successor's stage is only known inside the script.
"""

from __future__ import annotations

PREFIX = "pf:"
STREAM_PREFIX = PREFIX + "stage:"
EVENTS_CHANNEL = PREFIX + "events"
# Time-bucketed job aggregates, written by the DAG step that ends a job (lua/stats.lua) and read
# by GET /v1/stats: ``{STATS_PREFIX}{bucket s}:{start s}``, + ``:t:{tenant}`` per tenant.
STATS_PREFIX = PREFIX + "stats:"
WORKERS = PREFIX + "workers"  # consumer -> {stage, pool, started_ms, seen_ms}, for replica time
WORKERS_SEEN = PREFIX + "workers:seen"  # consumer -> seen_ms (sorted set): finds stale records
# Jobs that ended with a callback URL, appended by the ending DAG step; the control worker's
# relay turns each entry into one RQ delivery job (consumer group CALLBACKS_GROUP).
CALLBACKS_STREAM = PREFIX + "callbacks"
CALLBACKS_GROUP = PREFIX + "callbacks"


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_events(job_id: str) -> str:
    """The job's progress channel: begin.lua and complete.lua publish the node name on it
    (built there as KEYS[1] .. ':events') when a node starts or ends. Terminal states go to
    ``EVENTS_CHANNEL``. Only a gateway with an open event stream subscribes to it."""
    return job(job_id) + ":events"


def blob(job_id: str, name: str = "image") -> str:
    return f"{PREFIX}blob:{job_id}:{name}"


def stream(stage: str) -> str:
    return STREAM_PREFIX + stage


def group(stage: str) -> str:
    return f"{PREFIX}{stage}"


def dead(stage: str) -> str:
    return f"{PREFIX}dead:{stage}"


def stats_bucket(size_s: int, start_s: int, tenant: str | None = None) -> str:
    """One bucket of the stats aggregates: the fleet's, or one tenant's."""
    fleet = f"{STATS_PREFIX}{size_s}:{start_s}"
    return fleet if tenant is None else f"{fleet}:t:{tenant}"


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


def batch_events(batch_id: str) -> str:
    """The batch's progress channel: the control worker publishes its progress counters on it
    whenever they change (a frame finished, all frames submitted)."""
    return f"{PREFIX}batch:{batch_id}:events"
