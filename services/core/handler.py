"""The contract a stage implements: MMS/TorchServe's four phases, nothing else.

The worker runtime (``services.core.worker``) owns batching, retries, acking, timing and shutdown;
a handler is only model logic. ``postprocess`` returns one output mapping per task, in task order;
each mapping's keys are the node's output fields and its values must be JSON-serialisable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from services.core.settings import Settings


class TaskError(Exception):
    """A task's own input is unusable (e.g. undecodable image): fail its job, do not retry."""


@dataclass(slots=True)
class Task:
    job_id: str
    node: str
    # Resolved inputs: ``$request.image`` arrives as bytes, ``other_node.field`` as decoded JSON,
    # a list of references as a list of values.
    inputs: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HandlerContext:
    stage: str
    settings: Settings
    model: str | None = None
    model_version: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Which copy of an instance group this handler is (0-based): accelerator backends bind
    # copy i to its own cores.
    instance: int = 0


class Handler(ABC):
    def initialize(self, ctx: HandlerContext) -> None:  # noqa: B027 - optional hook
        """Load the model once per process."""

    @abstractmethod
    def preprocess(self, tasks: list[Task]) -> Any: ...

    @abstractmethod
    def inference(self, batch: Any) -> Any: ...

    @abstractmethod
    def postprocess(self, outputs: Any, tasks: list[Task]) -> list[dict[str, Any]]: ...
