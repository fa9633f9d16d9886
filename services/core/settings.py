"""Process-wide settings, read once from the environment (prefix ``POSEFLEET_``).

Every service reads the same class so one env file configures a whole deployment; the Helm chart
and ``posefleet up`` only ever set environment variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CACHE = Path.home() / ".cache" / "posefleet"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSEFLEET_", env_file=None, extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="the job store and queues; `posefleet up` starts its own Redis unless set",
    )
    pipelines_file: Path = Field(
        Path(__file__).resolve().parents[2] / "pipelines.yaml",
        description="stages and pipelines (docs/pipelines.md)",
    )

    cache_dir: Path = Field(
        DEFAULT_CACHE, description="builder venv, fetched packages, `posefleet up`'s Redis data"
    )
    model_root: Path = Field(DEFAULT_CACHE / "models", description="the model repository")

    # Worker runtime. Batching (max_batch, max_delay_ms) is set per stage in pipelines.yaml.
    visibility_timeout_s: float = Field(
        30.0, gt=0, description="idle time after which another worker reclaims a task"
    )
    max_attempts: int = Field(
        3, ge=1, description="deliveries before a task is dead-lettered and its job failed"
    )
    # A batch still running after this is considered hung: its tasks are no longer kept from
    # other workers and /healthz reports the worker stuck. Pod grace periods must exceed it.
    batch_timeout_s: float = Field(300.0, gt=0)
    block_ms: int = Field(
        500, ge=10, description="longest wait for work before re-checking shutdown"
    )
    pool: str = Field("cpu", description="the node pool a worker reports (metrics, cost)")
    # Instance groups (Triton's idea): model copies per worker process, each with its own
    # session and its own batch loop in a thread, so one pod can use every NeuronCore or split
    # its CPU cores between copies (see intra_op_threads).
    instances: int = Field(1, ge=1)
    # Per-stage model override, "name" or "name:version": switching the pose stage to
    # MediaPipe is an env change (POSEFLEET_STAGE_MODELS='{"pose": "mediapipe-pose-full"}').
    stage_models: dict[str, str] = Field(default_factory=dict)
    # Workers serve /metrics and /healthz here (0 = no server, e.g. several workers per host
    # without distinct ports).
    metrics_port: int = Field(9100, ge=0, le=65535)
    # Hourly price of one node per pool, for cost per 1000 images. Defaults: AWS on-demand
    # us-east-1 list prices (2025) of c6i.large (2 vCPU), g4dn.xlarge (T4) and inf2.xlarge.
    pool_hourly_cost: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 0.085, "gpu": 0.526, "inferentia": 0.7582}
    )

    # Which runtime executes the models: onnxruntime (CPU/CUDA/TensorRT providers) or AWS
    # Neuron (Inferentia, a compiled artefact from `posefleet models compile --target neuron`).
    backend: Literal["onnxruntime", "neuron"] = "onnxruntime"
    # Neuron: inf2 (Inf2/Trn1, torch-neuronx) or inf1 (legacy, tensorflow-neuron); copy i of an
    # instance group takes NeuronCores [first_core + i * cores_per_instance, ...).
    neuron_target: Literal["inf2", "inf1"] = "inf2"
    neuron_cores_per_instance: int = Field(1, ge=1, description="NeuronCores per model copy")
    neuron_first_core: int = Field(0, ge=0, description="the first NeuronCore of copy 0")

    # onnxruntime, per node pool: provider, threads, graph optimisation, TensorRT options; a
    # missing provider fails start-up unless allow_fallback. intra_op_threads 0: the CPUs this
    # process may use (affinity, cgroup quota: a pod's CPU limit) shared by its instances;
    # -1: onnxruntime's own default, one thread per physical core of the MACHINE, each pinned to
    # its core in every process alike (why not the default: docs/performance.md).
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    device_id: int = Field(0, ge=0)
    intra_op_threads: int = Field(0, ge=-1)
    inter_op_threads: int = Field(0, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    trt_fp16: bool = False
    trt_engine_cache: Path | None = None
    allow_fallback: bool = False

    # Gateway
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="an image upload (413)")
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="an image's pixels, read from its header (422)"
    )
    max_wait_s: float = Field(60.0, gt=0, description="the cap on `Prefer: wait=N`")
    result_ttl_s: int = Field(
        24 * 3600, ge=60, description="how long job records, results and images are kept"
    )
    job_deadline_s: float = Field(
        600.0, gt=0, description="a job whose node cannot start by then expires"
    )
    max_backlog: int = Field(10_000, ge=1, description="queued tasks per stage before 429")
    # Bulk/video batches (control plane, RQ)
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1, description="a batch upload (413)")
    max_batch_frames: int = Field(10_000, ge=1, description="frames one batch may create")
    batch_window: int = Field(16, ge=1, description="frame jobs in flight per batch")
    # Bounded decoding and bounded batches (issue 10; docs/limits.md). Checked from an image's
    # header before any decode, by the gateway, every stage worker and every batch frame, next
    # to max_image_bytes and max_image_pixels above.
    # Longest side in pixels: no per-row buffer or resize along one side can run away. 16384 is
    # WebP's own maximum and leaves room for 100-Mpx camera photos (11648x8736) and panoramas.
    max_image_side: int = Field(16_384, ge=1)
    # Longer side / shorter side. Stages that scale the shorter side to a fixed size (the
    # classifiers: 224/260 px) grow a thin image by its aspect ratio; 20:1 admits panoramas.
    max_image_aspect: float = Field(20.0, ge=1.0)
    # Bytes a zip batch may inflate to, all entries together (from the sizes its directory
    # declares; no entry is inflated past its declared size). Photos are already
    # compressed, so a real archive inflates by little: 512 MiB is 2.5x the upload limit and
    # refuses a zip bomb (1 MB inflating to 1 GiB) before one byte is inflated.
    max_zip_inflated_bytes: int = Field(512 * 1024 * 1024, ge=1)
    # Entries a zip batch may list (images or not): reading the directory costs ~0.6 KiB of
    # memory per entry, so a 200 MiB upload of empty entries would cost ~1.5 GiB unchecked.
    # Twice max_batch_frames, for archives that carry a metadata file per image (__MACOSX/).
    max_zip_entries: int = Field(20_000, ge=1)
    api_keys: dict[str, str] = Field(default_factory=dict, description="API key -> tenant")
    # Callers whose key maps to one of these tenants are operators: they see the whole fleet
    # (stats, dead letters) and may act on it. With no API keys configured every caller is one.
    operator_tenants: list[str] = Field(default_factory=lambda: ["operator"])

    # Stats and public endpoints (docs/stats-and-auth.md). They matter only once API keys are
    # configured (an open gateway has nothing to protect). public_docs: /docs, /redoc and
    # /openapi.json answer without a key; false asks for any tenant's key. public_metrics:
    # /metrics answers without a key; false asks for an operator's key, since the backlog and
    # dead-letter gauges are fleet facts (Prometheus then sends one: chart value
    # monitoring.gatewayAuth). Both default to true, the behaviour before the switches existed:
    # the API description is no secret and Prometheus scrapes without credentials.
    public_docs: bool = True
    public_metrics: bool = True

    # Users' own models (`models import`, `models pull`; docs/own-models.md).
    # Objects `posefleet models pull` downloads at once (boto3's transfer threads): 4 overlaps
    # the round trips of a repository's many small files without opening dozens of connections
    # to a small MinIO or Ceph gateway from every starting pod.
    model_pull_concurrency: int = Field(4, ge=1, le=64)
    # Holding at the edge: Redis failures, the gateway's connections and HTTP limits, and the
    # registries that must stay bounded (docs/operations.md).
    # Longest pause between a worker's retries after any Redis error (full, read-only, loading,
    # unreachable...); retries start at 0.1 s and double. 5 s: back within seconds of recovery
    # without hammering a Redis that is struggling.
    redis_backoff_max_s: float = Field(5.0, gt=0)
    # Longest a worker waits for one Redis reply (on top of its block_ms): a stalled server or
    # a half-open connection becomes a retry instead of a hang. Well above any DAG step's time.
    redis_timeout_s: float = Field(10.0, gt=0)
    # Redis connections per gateway process (one is held by the job-event subscription).
    # Requests wait for a free one rather than fail; 64 serves hundreds of concurrent requests
    # because each holds a connection only for one command.
    redis_max_connections: int = Field(64, ge=2)
    # How long a gateway request waits for a free connection before 503 store_busy.
    redis_pool_timeout_s: float = Field(5.0, gt=0)
    # Request line + headers, in bytes, and the number of header fields: over either is 431.
    # 32 KiB and 100 fields: twice Node's 16 KiB, Apache's field count; an API call with a key
    # and a few headers uses well under 2 KiB.
    http_max_header_bytes: int = Field(32 * 1024, ge=1024)
    http_max_headers: int = Field(100, ge=8)
    # A request's line and headers must arrive within this once the connection is ready for
    # one (408, then closed): slowloris clients cannot hold connections open.
    http_header_timeout_s: float = Field(10.0, gt=0)
    # A request's whole body must arrive within this after its headers, or the connection is
    # closed (408 if no answer has started). 120 s lets a max_upload_bytes (200 MiB) batch
    # upload arrive at 1.7 MB/s; raise it for slower links.
    http_body_timeout_s: float = Field(120.0, gt=0)
    # An idle keep-alive connection is closed after this (uvicorn's default).
    http_keep_alive_s: int = Field(5, ge=1)
    # A consumer with no pending task, idle this long, whose process has not registered for
    # this long is removed from its stage's group by the live workers: dead pods' consumers do
    # not accumulate, and one holding tasks is never removed. At least three registration
    # intervals (5 s), so a live process always counts as live; 60 s by default.
    dead_consumer_grace_s: float = Field(60.0, ge=15)
    # Worker registry entries (pf:workers, the replica time behind /v1/stats' cost) not
    # refreshed for this long are deleted. 24 h: the longest /v1/stats window, so a replica
    # that died within any window still counts. At least three registration intervals (5 s).
    worker_registry_retention_s: float = Field(24 * 3600.0, ge=15)
    # Edge operations: the local supervisor (`posefleet up`) and dead-letter replay.
    # A crashed child of `up` is restarted after up_restart_initial_s, the delay doubling with
    # each crash in a row up to up_restart_max_s; a child that ran up_restart_stable_s before
    # it exited starts over at the initial delay. (The kubelet's CrashLoopBackOff is 10 s
    # doubling to 5 min, reset after 10 min: too slow to see a fix work on one machine.)
    up_restart_initial_s: float = Field(1.0, gt=0)
    up_restart_max_s: float = Field(30.0, gt=0)
    up_restart_stable_s: float = Field(60.0, gt=0)
    # How long a child of `up` may drain after SIGTERM (a worker finishes its batch, the
    # gateway its requests) before it is SIGKILLed: on Ctrl-C, and after `up` itself was killed
    # (each child then enforces it on itself). Above the gateway's 10 s graceful shutdown.
    up_stop_grace_s: float = Field(20.0, gt=0)
    # A job failed by a dead letter keeps its request image this long (never past the job's own
    # TTL) so a replay can re-run a node that reads it; 0 drops it at once, as other failures
    # do. Bounds the memory dead letters hold: at most the images of this window's dead jobs.
    dead_letter_keep_input_s: int = Field(6 * 3600, ge=0)
    # Most dead letters one list, replay or purge call handles: bounds the response size and
    # how long one call keeps Redis busy; the CLI pages through more.
    dead_letter_page_max: int = Field(1000, ge=1)
    # Webhooks: a job's or batch's callback_url, delivered by the control worker
    # (services/control/webhooks.py; docs/webhooks.md).
    # HMAC-SHA256 signing secret, with per-tenant overrides. No secret for a tenant = webhooks
    # off for it: its callback_url is refused (422) rather than delivered unsigned.
    webhook_secret: SecretStr = SecretStr("")
    webhook_tenant_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Schemes a public host may be called with: https only, so results never travel in clear.
    webhook_schemes: list[Literal["http", "https"]] = Field(default_factory=lambda: ["https"])
    # When set, callback hosts must be one of these ("hooks.example.com", or "*.example.com"
    # for its subdomains); empty allows any host that resolves to public addresses only.
    webhook_hosts: list[str] = Field(default_factory=list)
    # Hosts exempt from the address checks (may resolve to loopback/private addresses and use
    # http): receivers inside your own network. Empty: nothing internal is reachable.
    webhook_trusted_hosts: list[str] = Field(default_factory=list)
    # Networks never called, beyond the always-refused loopback, private, link-local (the
    # metadata service), multicast, unspecified and non-global ranges: the cluster's pod and
    # service CIDRs when they are publicly routable. Empty: default CIDRs are private already.
    webhook_denied_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    # Attempts per delivery (the first included) and RQ's back-off between them, in seconds
    # (the last interval repeats): 6 attempts over ~2.6 h rides out a receiver's deploy or outage.
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_retry_intervals_s: list[int] = Field(
        default_factory=lambda: [10, 60, 300, 1800, 7200], min_length=1
    )
    # One attempt's limit (connect + send + response): a slow receiver holds a delivery
    # thread this long at most.
    webhook_timeout_s: float = Field(10.0, gt=0)
    # Response bytes read (raw, never decompressed) before the connection is closed: only the
    # status code matters, so a receiver cannot make the worker buffer an unbounded body.
    webhook_max_response_bytes: int = Field(64 * 1024, ge=0)
    webhook_max_url_length: int = Field(2048, ge=16)
    # Extra CA certificates (PEM) trusted for https receivers, e.g. an internal CA; the
    # public roots (certifi) stay trusted.
    webhook_ca_bundle: Path | None = None
    # Delivery threads in each control worker: deliveries in parallel, so one slow receiver
    # does not hold up the others, and none waits behind a long batch expansion.
    webhook_workers: int = Field(4, ge=1)
    # Live events (GET /v1/jobs/{id}/events, GET /v1/batches/{id}/events: server-sent events).
    # Open streams per gateway process; past it a new stream gets 503 + Retry-After, because
    # each one holds a connection and a task, and a slow client must not exhaust the process.
    events_max_streams: int = Field(1000, ge=1)
    # A stream closes after this long even if its job is still running; the client reconnects
    # with Last-Event-ID and resumes. Bounds connection lifetime for proxies and rollouts.
    events_max_stream_s: float = Field(900.0, gt=0)
    # Keep-alive comment interval: below the 60 s idle timeout of common proxies/load balancers.
    events_keepalive_s: float = Field(15.0, gt=0)
    # The reconnect delay the stream advises clients (SSE `retry:` field), in milliseconds.
    events_retry_ms: int = Field(2000, ge=0)
    # An open batch stream re-reads the batch this often when no notification came: RQ's own
    # transitions (finished, failed, retry scheduled) publish nothing, so this bounds how late
    # the stream reports them. Frame results are pushed by the control worker immediately.
    events_batch_poll_s: float = Field(1.0, gt=0)
    # Open Inference Protocol (KServe V2): REST on the gateway's port, gRPC on the GRPC_PORT
    # env var (like PORT; default 8081, 0 = off); services/gateway/v2, docs/oip.md. A V2
    # inference waits for its jobs at most max_wait_s, like Prefer: wait.

    # Images in one V2 inference (the `image` tensor's length): each becomes a job, so this
    # bounds the jobs one request creates; 64 covers any client-side batching we have seen
    # (perf_analyzer, Triton ensembles) while keeping one request from flooding a stage.
    oip_max_batch: int = Field(64, ge=1)
    # Largest V2 request: a REST body or a gRPC message (gRPC's own default is 4 MiB, below
    # one max_image_bytes image). 64 MiB holds a few full-size images plus base64's 4/3 overhead;
    # every image is still held to max_image_bytes.
    oip_max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    # Performance (issue 16; docs/performance.md).
    # onnxruntime's pool threads busy-wait for the next operator instead of sleeping: "always"
    # (onnxruntime's own default, which keeps spinning after session.run returns), "run" (only
    # while a run is in progress) or "off". Off by default: a pool spinning after its run
    # steals the cores the next stage's worker is computing on (the same handler measured
    # 1.8x slower beside a spinning neighbour), and spinning under other load on the machine
    # (a shared node, CFS quotas) turns into waste; "run" is a little faster on an idle,
    # dedicated machine. Threads per session: intra_op_threads above.
    intra_op_spinning: Literal["always", "run", "off"] = "off"
    # uvicorn processes of one gateway, sharing its socket, each with its own event loop and
    # pub/sub subscription. 1: a pod is one process and replicas scale the gateway.
    gateway_processes: int = Field(1, ge=1, le=64)
    # A JSON log line per HTTP request (uvicorn's access log). Off: it cost 8% of a gateway's
    # request time, and what it says is already in /metrics and the ingress' own access log.
    gateway_access_log: bool = False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
