"""Handler plug-ins: `handler:` names any importable class or an entry point of the group
`posefleet.handlers`; the example plug-in (examples/person-count, installed by `make install`
as a user installs one) runs end to end behind the real detector and pose stages."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.core.dag import DagSteps
from services.core.pipeline import PipelineConfigError, load_pipelines, parse_pipelines
from services.core.plugins import GROUP, HandlerLoadError, handler_class
from services.core.settings import Settings, get_settings
from services.ensemble.classifier import ClassifierHandler
from tests.inprocess import assert_same_people, pipeline
from tests.jobwait import wait_terminal
from tests.workers import make_worker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "person-count"


def test_the_example_plugin_is_installed_as_a_package():
    (point,) = entry_points(group=GROUP, name="person-count")  # `make install` installs it
    assert point.dist is not None and point.dist.name == "posefleet-person-count"
    assert handler_class("person-count").__module__ == "person_count.handler"


def test_module_class_references_still_work():
    assert handler_class("services.ensemble.classifier:ClassifierHandler") is ClassifierHandler


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_package.handler:Thing", "module 'no_such_package.handler' cannot be imported"),
        ("services.ensemble.classifier:Nope", "has no 'Nope'"),
        ("services.core.settings:Settings", "not a subclass of services.core.handler.Handler"),
        ("no-such-plugin", "installed: .*person-count"),
    ],
)
def test_what_cannot_be_a_handler_is_refused_clearly(ref, message):
    with pytest.raises(HandlerLoadError, match=message):
        handler_class(ref)


def test_pipelines_accept_entry_point_names_but_not_garbage():
    stage = (
        "stages:\n  c:\n    handler: {}\n    inputs: [image]\n    outputs: [count]\n"
        "pipelines:\n  p:\n    nodes: {{n: {{stage: c, inputs: {{image: $request.image}}}}}}\n"
        "    outputs: {{count: n.count}}\n"
    )
    assert parse_pipelines(stage.format("person-count")).stages["c"].handler == "person-count"
    with pytest.raises(PipelineConfigError, match="entry point name"):
        parse_pipelines(stage.format("'not a name!'"))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_plugin_runs_behind_detector_and_pose_in_real_workers(
    redis_client, running, model_root, photos, detector, pose
):
    """The example's own pipelines.yaml, as a user would run it: three real workers."""
    settings = Settings(
        block_ms=50,
        model_root=model_root,
        cache_dir=get_settings().cache_dir,
        pipelines_file=EXAMPLE / "pipelines.yaml",
        metrics_port=0,
    )
    config = load_pipelines(settings.pipelines_file)
    for stage in ("detector", "pose", "person-count"):
        running(make_worker(redis_client, stage, settings))
    tasks_before = metric(
        "posefleet_stage_tasks_total", stage="person-count", pool="cpu", outcome="succeeded"
    )
    DagSteps(redis_client).create(
        "count-1",
        config.pipelines["count"],
        photos["basketball1"],
        {"tenant": "t"},
        ttl_s=600,
        deadline_s=60,
    )
    job = wait_terminal(redis_client, "count-1", timeout_s=60)
    assert job["status"] == "succeeded", job
    (reference,) = pipeline(detector, pose, [photos["basketball1"]])
    assert_same_people(job["result"]["people"], reference, atol=0.01)
    assert job["result"]["count"] == 2  # both players show a skeleton
    assert (
        metric("posefleet_stage_tasks_total", stage="person-count", pool="cpu", outcome="succeeded")
        == tasks_before + 1
    )  # the runtime's metrics come for free
