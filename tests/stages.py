"""Tiny model-free stages for testing the DAG engine and the worker runtime.

They keep what real handlers have (batches, per-task inputs, failures) and drop the models, so
fan-out, fan-in, batching and fault tests run in milliseconds. ``calls`` records every batch a
handler saw, for batching assertions in-process.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from services.core.handler import Handler, HandlerContext, Task, TaskError


class Measure(Handler):
    """image -> its size and digest; ``poison`` in the bytes is bad input, ``crash`` a bug."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.sleep_s = 0.0

    def initialize(self, ctx: HandlerContext) -> None:
        self.sleep_s = float(ctx.options.get("sleep_ms", 0)) / 1000

    def preprocess(self, tasks: list[Task]) -> list[bytes]:
        self.calls.append([t.job_id for t in tasks])
        for t in tasks:
            if b"poison" in t.inputs["image"]:
                raise TaskError("poisoned image")
        return [t.inputs["image"] for t in tasks]

    def inference(self, batch: list[bytes]) -> list[dict[str, Any]]:
        if any(b"crash" in b for b in batch):
            raise RuntimeError("simulated handler bug")
        time.sleep(self.sleep_s)  # stands in for model compute time
        return [{"size": len(b), "digest": hashlib.sha256(b).hexdigest()[:12]} for b in batch]

    def postprocess(self, outputs: list[dict[str, Any]], tasks: list[Task]) -> list[dict[str, Any]]:
        return [{**o, "items": []} for o in outputs]


class Scale(Handler):
    def preprocess(self, tasks: list[Task]) -> list[tuple[float, float]]:
        return [(t.inputs["value"], t.params.get("factor", 1)) for t in tasks]

    def inference(self, batch: list[tuple[float, float]]) -> list[float]:
        return [v * f for v, f in batch]

    def postprocess(self, outputs: list[float], tasks: list[Task]) -> list[dict[str, Any]]:
        return [{"value": v} for v in outputs]


class Total(Handler):
    def preprocess(self, tasks: list[Task]) -> list[list[float]]:
        return [t.inputs["values"] for t in tasks]

    def inference(self, batch: list[list[float]]) -> list[float]:
        return [sum(v) for v in batch]

    def postprocess(self, outputs: list[float], tasks: list[Task]) -> list[dict[str, Any]]:
        return [
            {"total": v, "parts": len(t.inputs["values"])}
            for v, t in zip(outputs, tasks, strict=True)
        ]


class People(Handler):
    """image -> one made-up person per ``person`` in its bytes (pose-shaped, for the V2 tensor
    mapping) and a label; ``poison`` is bad input."""

    def preprocess(self, tasks: list[Task]) -> list[bytes]:
        for t in tasks:
            if b"poison" in t.inputs["image"]:
                raise TaskError("poisoned image")
        return [t.inputs["image"] for t in tasks]

    def inference(self, batch: list[bytes]) -> list[dict[str, Any]]:
        return [{"count": b.count(b"person"), "size": len(b)} for b in batch]

    def postprocess(self, outputs: list[dict[str, Any]], tasks: list[Task]) -> list[dict[str, Any]]:
        return [
            {"people": [person(i, o["size"]) for i in range(o["count"])], "label": f"n{o['count']}"}
            for o in outputs
        ]


def person(i: int, size: int) -> dict[str, Any]:
    keypoints = [
        {"name": f"k{k}", "x": float(i + k), "y": float(size % 97 + k), "score": 0.5 + k / 100}
        for k in range(17)
    ]
    box = [float(i), 1.0, float(i + 10), 20.5]
    return {"box": box, "score": 0.25 + i / 10, "keypoints": keypoints}
