"""``person-count``: the pose stage's ``people`` in, how many of them are really visible out.

A detector box alone is weak evidence of a person; a skeleton with several confident keypoints
is strong. A person counts when at least ``min_keypoints`` of their 17 keypoints score
``min_score`` or more (stage ``options``, overridable per node with ``params``).

The four phases of services.core.handler.Handler, as every stage has them: the worker runtime
batches tasks of many jobs into one call, so ``preprocess`` turns the batch into one array and
``inference`` works on it whole; ``postprocess`` returns one output mapping per task, in order.
Input a task cannot use raises ``TaskError``: that job fails with ``invalid_input``; any other
exception fails the job with ``stage_error`` (the other tasks of the batch are re-run alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.core.handler import Handler, HandlerContext, Task, TaskError

KEYPOINTS = 17


class PersonCountHandler(Handler):
    def initialize(self, ctx: HandlerContext) -> None:
        self.min_keypoints = int(ctx.options.get("min_keypoints", 5))
        self.min_score = float(ctx.options.get("min_score", 0.3))

    def preprocess(self, tasks: list[Task]) -> tuple[np.ndarray, list[int]]:
        """Every person's keypoint scores of the whole batch as one (people, 17) array, and
        how many people each task brought."""
        rows, sizes = [], []
        for task in tasks:
            people = task.inputs["people"]
            if not isinstance(people, list):
                raise TaskError(f"'people' must be a list, got {type(people).__name__}")
            for person in people:
                points = person.get("keypoints") if isinstance(person, dict) else None
                if not isinstance(points, list) or len(points) != KEYPOINTS:
                    raise TaskError(f"each person needs {KEYPOINTS} keypoints")
                rows.append([float(p["score"]) for p in points])
            sizes.append(len(people))
        return np.asarray(rows, np.float64).reshape(-1, KEYPOINTS), sizes

    def inference(self, batch: tuple[np.ndarray, list[int]]) -> tuple[np.ndarray, list[int]]:
        scores, sizes = batch
        return scores, sizes  # thresholds may differ per task (params): applied in postprocess

    def postprocess(
        self, outputs: tuple[np.ndarray, list[int]], tasks: list[Task]
    ) -> list[dict[str, Any]]:
        scores, sizes = outputs
        results, start = [], 0
        for task, size in zip(tasks, sizes, strict=True):
            mine = scores[start : start + size]
            start += size
            min_score = float(task.params.get("min_score", self.min_score))
            min_keypoints = int(task.params.get("min_keypoints", self.min_keypoints))
            visible = (mine >= min_score).sum(axis=1)
            results.append(
                {
                    "count": int((visible >= min_keypoints).sum()),
                    "detected": size,
                    "visible_keypoints": visible.astype(int).tolist(),
                }
            )
        return results
