"""The ensemble's fan-in: fuse N probability vectors into one label and top-k.

Methods: ``mean`` (default), ``weighted`` (``weights`` in params), ``max`` (element-wise maximum,
renormalised) and ``vote`` (majority of the members' top-1, ties broken by mean probability).
Each member's own top-1 is echoed so clients can see when the models disagree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task, TaskError
from services.core.runtime.repository import ModelRepository

METHODS = ("mean", "weighted", "max", "vote")


def fuse(probs: np.ndarray, method: str, weights: list[float] | None = None) -> np.ndarray:
    """``probs``: (members, classes) → (classes,) scores summing to 1 (vote: mean of ties)."""
    if method == "mean":
        return probs.mean(axis=0)
    if method == "weighted":
        if weights is None or len(weights) != len(probs) or min(weights) < 0 or sum(weights) == 0:
            raise TaskError(f"'weighted' needs {len(probs)} non-negative weights, got {weights}")
        w = np.asarray(weights, np.float64)
        return (probs * (w / w.sum())[:, None]).sum(axis=0)
    if method == "max":
        top = probs.max(axis=0)
        return top / top.sum()
    if method == "vote":
        votes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
        mean = probs.mean(axis=0)
        winners = votes == votes.max()
        # Rank by votes first, then by mean probability, and keep a distribution as the result.
        scored = np.where(winners, mean + 1.0, mean)
        return scored / scored.sum()
    raise TaskError(f"unknown combine method '{method}' (known: {', '.join(METHODS)})")


class CombineHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        labels_model = ctx.options.get("labels_model")
        if not labels_model:
            raise ValueError(f"stage '{ctx.stage}' needs options.labels_model for class names")
        entry = ModelRepository(ctx.settings.model_root).get(labels_model)
        self.labels: list[str] = entry.spec["labels"]

    def preprocess(self, tasks: list[Task]) -> list[np.ndarray]:
        stacked = []
        for task in tasks:
            probs = np.asarray(task.inputs["probs"], np.float64)
            if probs.ndim != 2 or probs.shape[1] != len(self.labels):
                raise TaskError(
                    f"expected member vectors of {len(self.labels)} classes, "
                    f"got shape {probs.shape}"
                )
            stacked.append(probs)
        return stacked

    def inference(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return batch  # fusion depends on each task's params: done per task in postprocess

    def postprocess(self, outputs: list[np.ndarray], tasks: list[Task]) -> list[dict[str, Any]]:
        results = []
        for probs, task in zip(outputs, tasks, strict=True):
            method = task.params.get("method", "mean")
            fused = fuse(probs, method, task.params.get("weights"))
            k = int(task.params.get("top_k", 5))
            order = np.argsort(-fused)[:k]
            # vote ranks by votes; report the labels' mean probability, not the rank score
            shown = probs.mean(axis=0) if method == "vote" else fused
            results.append(
                {
                    "label": self.labels[order[0]],
                    "score": round(float(shown[order[0]]), 4),
                    "top_k": [
                        {"label": self.labels[i], "score": round(float(shown[i]), 4)} for i in order
                    ],
                    "members": task.inputs["members"],
                }
            )
        return results
