"""Prometheus metric definitions, declared once so every service uses the same names.

Histograms resolve 1 ms to 10 s. Job durations are observed by the worker whose DAG step
finishes the job; queue waits come from the Redis clock (enqueue → begin); backlog and dead
letters are read from Redis when scraped, so they are right even when no worker runs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

JOBS_SUBMITTED = Counter(
    "posefleet_jobs_submitted_total", "Jobs accepted by the gateway", ["pipeline"]
)
JOBS_REJECTED = Counter(
    "posefleet_jobs_rejected_total", "Submissions refused by the gateway", ["pipeline", "code"]
)
JOB_DURATION = Histogram(
    "posefleet_job_duration_seconds",
    "Job creation to terminal state",
    ["pipeline", "status"],
    buckets=LATENCY_BUCKETS,
)
# Read from Redis at scrape time: with several gateway processes the latest read is the value.
STAGE_BACKLOG = Gauge(
    "posefleet_stage_backlog",
    "Tasks in a stage's stream: waiting plus in flight",
    ["stage"],
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS = Gauge(
    "posefleet_dead_letters",
    "Entries in a stage's dead-letter stream",
    ["stage"],
    multiprocess_mode="mostrecent",
)
STAGE_QUEUE_WAIT = Histogram(
    "posefleet_stage_queue_wait_seconds",
    "Enqueue to start of a task (Redis clock)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
STAGE_INFERENCE = Histogram(
    "posefleet_stage_inference_seconds",
    "A batch's inference phase",
    ["stage", "pool", "backend"],
    buckets=LATENCY_BUCKETS,
)
STAGE_BATCH_SIZE = Histogram(
    "posefleet_stage_batch_size",
    "Tasks run together in one batch",
    ["stage"],
    buckets=BATCH_BUCKETS,
)
STAGE_TASKS = Counter(
    "posefleet_stage_tasks_total",
    "Tasks settled by a worker: succeeded, failed, skipped (job gone/finished/canceled), "
    "dead_lettered",
    ["stage", "pool", "outcome"],
)
WORKER_BUSY = Counter(
    "posefleet_worker_busy_seconds_total",
    "Time a worker spent processing batches",
    ["stage", "pool"],
)
PIPELINE_COMPUTE = Counter(
    "posefleet_pipeline_compute_seconds_total",
    "Batch compute time attributed to each pipeline's tasks (a batch's time split evenly): "
    "the share of each pool's cost a pipeline is charged",
    ["pipeline", "pool"],
)
NODE_POOL_COST = Gauge(
    "posefleet_node_pool_hourly_cost_dollars", "Hourly price of one node of a pool", ["pool"]
)
GATEWAY_WAITERS = Gauge(
    "posefleet_gateway_waiters",
    "Gateway requests registered for a job's completion notice (Prefer: wait, submissions)",
)
GATEWAY_STORE_ERRORS = Counter(
    "posefleet_gateway_store_errors_total",
    "Requests answered 503 for a job-store (Redis) error: store_full, store_busy, "
    "store_unavailable",
    ["code"],
)
REDIS_MEMORY_USED = Gauge(
    "posefleet_redis_memory_used_bytes", "Redis used_memory, read when the gateway is scraped"
)
REDIS_MEMORY_MAX = Gauge(
    "posefleet_redis_memory_max_bytes",
    "Redis maxmemory (0 = no limit), read when the gateway is scraped",
)
