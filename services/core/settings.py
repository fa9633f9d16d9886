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

    # onnxruntime, per node pool: provider, threads (0 lets onnxruntime choose), graph
    # optimisation, TensorRT options; a missing provider fails start-up unless allow_fallback.
    provider: Literal["cpu", "cuda", "tensorrt"] = "cpu"
    device_id: int = Field(0, ge=0)
    intra_op_threads: int = Field(0, ge=0)
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
    api_keys: dict[str, str] = Field(default_factory=dict, description="API key -> tenant")
    # Callers whose key maps to one of these tenants are operators: they see the whole fleet
    # (stats, dead letters) and may act on it. With no API keys configured every caller is one.
    operator_tenants: list[str] = Field(default_factory=lambda: ["operator"])

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
