"""The plug-in's own tests: the handler's contract, without a worker (Posefleet's suite runs it
end to end through a real worker, tests/core/test_plugins.py)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from person_count.handler import PersonCountHandler

from services.core.handler import HandlerContext, Task, TaskError
from services.core.settings import Settings


def person(visible: int) -> dict:
    scores = [0.9] * visible + [0.1] * (17 - visible)
    return {
        "box": [0, 0, 10, 10],
        "score": 0.8,
        "keypoints": [
            {"name": f"k{i}", "x": 1.0, "y": 2.0, "score": s} for i, s in enumerate(scores)
        ],
    }


@pytest.fixture
def handler() -> PersonCountHandler:
    handler = PersonCountHandler()
    handler.initialize(HandlerContext("person-count", Settings(), options={"min_keypoints": 5}))
    return handler


def run(handler: PersonCountHandler, tasks: list[Task]) -> list[dict]:
    return handler.postprocess(handler.inference(handler.preprocess(tasks)), tasks)


def test_counts_people_with_enough_confident_keypoints_per_task_of_a_batch(handler):
    tasks = [
        Task("a", "count", {"people": [person(17), person(3), person(5)]}),
        Task("b", "count", {"people": []}),
        Task("c", "count", {"people": [person(4)]}, params={"min_keypoints": 4}),
    ]
    assert run(handler, tasks) == [
        {"count": 2, "detected": 3, "visible_keypoints": [17, 3, 5]},
        {"count": 0, "detected": 0, "visible_keypoints": []},
        {"count": 1, "detected": 1, "visible_keypoints": [4]},
    ]


def test_unusable_input_is_the_tasks_own_error(handler):
    with pytest.raises(TaskError, match="17 keypoints"):
        handler.preprocess([Task("a", "count", {"people": [{"keypoints": []}]})])
    with pytest.raises(TaskError, match="must be a list"):
        handler.preprocess([Task("a", "count", {"people": "nobody"})])


def test_registered_under_the_posefleet_handlers_group():
    (point,) = entry_points(group="posefleet.handlers", name="person-count")
    assert point.load() is PersonCountHandler
