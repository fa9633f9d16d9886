"""Process-wide settings, read once from the environment (prefix ``POSEFLEET_``).

Every service reads the same class so one env file configures a whole deployment; the Helm chart
and ``posefleet up`` only ever set environment variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CACHE = Path.home() / ".cache" / "posefleet"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSEFLEET_", env_file=None, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    pipelines_file: Path = Path(__file__).resolve().parents[2] / "pipelines.yaml"

    cache_dir: Path = DEFAULT_CACHE
    model_root: Path = DEFAULT_CACHE / "models"

    # Worker runtime. Batching (max_batch, max_delay_ms) is set per stage in pipelines.yaml.
    visibility_timeout_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    # A batch still running after this is considered hung: its tasks are no longer kept from
    # other workers and /healthz reports the worker stuck. Pod grace periods must exceed it.
    batch_timeout_s: float = Field(300.0, gt=0)
    block_ms: int = Field(
        500, ge=10, description="longest wait for work before re-checking shutdown"
    )
    pool: str = "cpu"
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
    neuron_cores_per_instance: int = Field(1, ge=1)
    neuron_first_core: int = Field(0, ge=0)

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
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(50_000_000, ge=1)
    max_wait_s: float = Field(60.0, gt=0)
    result_ttl_s: int = Field(24 * 3600, ge=60)
    job_deadline_s: float = Field(600.0, gt=0)
    max_backlog: int = Field(10_000, ge=1, description="queued tasks per stage before 429")
    # Bulk/video batches (control plane, RQ)
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    max_batch_frames: int = Field(10_000, ge=1)
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
