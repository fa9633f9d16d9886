"""The public API's shapes. These models are the OpenAPI docs at /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "expired"]


class Links(BaseModel):
    self: str


class JobAccepted(BaseModel):
    id: str
    status: JobStatus
    pipeline: str
    links: Links


class ImageInfo(BaseModel):
    width: int
    height: int
    content_type: str
    bytes: int


class NodeState(BaseModel):
    stage: str
    status: Literal["pending", "queued", "running", "succeeded", "failed"]
    attempts: int
    queue_ms: int | None = Field(None, description="enqueue to start, Redis clock")
    compute_ms: float | None = Field(None, description="the batch's handler time")
    started_at: str | None = None
    finished_at: str | None = None
    worker: str | None = None
    pool: str | None = None


class JobError(BaseModel):
    code: str
    message: str
    node: str | None = None
    stage: str | None = None


class JobReplay(BaseModel):
    at: str
    by: str = Field(description="the operator's tenant")
    stage: str
    node: str
    dead_letter: str = Field(description="the id of the dead letter that was replayed")


class WebhookAttempt(BaseModel):
    at: str = Field(description="when the attempt started")
    status_code: int | None = Field(None, description="the receiver's answer, if any")
    error: str | None = Field(None, description="why the attempt failed; null when delivered")
    duration_ms: float


class Webhook(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"]
    delivery: str | None = Field(
        None, description="the Posefleet-Delivery id, the same on every attempt"
    )
    attempts: list[WebhookAttempt]


class Job(BaseModel):
    id: str
    pipeline: str
    status: JobStatus
    created_at: str
    updated_at: str
    image: ImageInfo | None = None
    nodes: dict[str, NodeState]
    result: dict[str, Any] | None = Field(
        None, description="the pipeline's outputs, present when status is succeeded"
    )
    error: JobError | None = None
    replays: list[JobReplay] | None = Field(
        None, description="operators' replays of this job's dead letters, oldest first"
    )
    webhook: Webhook | None = Field(None, description="present when submitted with callback_url")


class PipelineNode(BaseModel):
    name: str
    stage: str
    inputs: dict[str, str | list[str]]
    params: dict[str, Any]
    model: str | None = None
    model_version: str | None = None


class Pipeline(BaseModel):
    name: str
    description: str
    inputs: list[str]
    outputs: dict[str, str]
    output_schemas: dict[str, dict[str, Any]] = Field(
        description="JSON schema of each output in a succeeded job's result"
    )
    stages: list[str]
    nodes: list[PipelineNode]
    edges: list[tuple[str, str]]


class PipelineList(BaseModel):
    pipelines: list[Pipeline]


class Problem(BaseModel):
    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None


class BatchLinks(BaseModel):
    self: str
    results: str


class BatchAccepted(BaseModel):
    id: str
    status: Literal["queued"]
    pipeline: str
    kind: Literal["video", "zip"]
    links: BatchLinks


class Batch(BaseModel):
    id: str
    pipeline: str
    kind: Literal["video", "zip"]
    status: Literal["queued", "running", "succeeded", "failed", "canceled", "expired"]
    total: int | None = Field(None, description="frames in the batch, known once all submitted")
    submitted: int
    done: int
    failed: int
    progress: float | None
    results_url: str
    error: JobError | None = None
    webhook: Webhook | None = Field(None, description="present when submitted with callback_url")


class DeadLetter(BaseModel):
    stage: str
    id: str = Field(description="the entry id in the stage's dead-letter stream")
    at: str = Field(description="when the task was given up")
    job: str
    node: str
    entry: str = Field(description="the id the task had in its stage stream")
    reason: str
    error: JobError


class DeadLetterDetail(DeadLetter):
    job_status: JobStatus | None = Field(
        description="the job's status now; null once the job has expired (it cannot be replayed)"
    )


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    counts: dict[str, int] = Field(description="dead letters per stage, now")
    next: str | None = Field(description="cursor of the next page (`after=`); null at the end")


DeadLetterOutcome = Literal[
    "replayed", "not_found", "job_expired", "not_failed_here", "inputs_gone", "purged", "kept"
]


class DeadLetterResult(BaseModel):
    stage: str
    id: str
    job: str | None
    outcome: DeadLetterOutcome
    detail: str | None = None


class DeadLetterSelection(BaseModel):
    refs: list[str] = Field(
        min_length=1, description="dead letters named `stage/id`, instead of a page"
    )


class DeadLetterBulk(BaseModel):
    results: list[DeadLetterResult]
    counts: dict[str, int] = Field(description="results per outcome")
    next: str | None = Field(description="cursor to continue from (`after=`); null at the end")
    webhook: Webhook | None = Field(None, description="present when submitted with callback_url")
