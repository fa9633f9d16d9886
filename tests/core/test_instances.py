"""Instance groups: N model copies in one worker process, each running its own batches."""

import json

from services.core import keys
from services.core.settings import Settings
from services.core.worker import health_of, stage_model
from tests.core.test_worker import CONFIG, submit
from tests.jobwait import wait_terminal
from tests.workers import TEST_PIPELINES, make_workers


def group_settings(**extra: object) -> Settings:
    return Settings(block_ms=50, pipelines_file=TEST_PIPELINES, instances=2, **extra)


def test_each_instance_has_its_own_model_copy_and_consumer(redis_client):
    workers = make_workers(redis_client, "measure", group_settings())
    assert len(workers) == 2
    assert workers[0].handler is not workers[1].handler
    assert workers[0].consumer != workers[1].consumer


def test_instances_run_batches_concurrently(redis_client, running):
    # Two 1.5 s tasks queued before the workers start; one task per batch so each copy takes one.
    submit(redis_client, "a", pipeline="slow")
    submit(redis_client, "b", pipeline="slow")
    for worker in make_workers(redis_client, "slow-measure", group_settings(), max_batch=1):
        running(worker)
    a, b = (wait_terminal(redis_client, j, 15)["nodes"]["m"] for j in ("a", "b"))
    assert a["worker"] != b["worker"]
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_a_group_registers_as_one_replica_for_cost(redis_client, running):
    workers = make_workers(redis_client, "measure", group_settings())
    for worker in workers:
        running(worker)
    submit(redis_client, "j1")
    assert wait_terminal(redis_client, "j1", 10)["status"] == "succeeded"
    records = [json.loads(v) for v in redis_client.hgetall(keys.WORKERS).values()]
    assert [r["stage"] for r in records] == ["measure"]


def test_group_health_fails_when_any_instance_is_stuck(redis_client):
    workers = make_workers(redis_client, "measure", group_settings())
    check = health_of(workers)
    assert check()[0] is True and check()[1]["instances"] == 2
    workers[1].heartbeat.last -= workers[1].heartbeat.max_age_s + 1
    assert check()[0] is False


def test_stage_model_comes_from_settings_when_overridden():
    spec = CONFIG.stages["measure"]
    assert stage_model(spec, Settings()) == (spec.model, spec.model_version)
    pinned = Settings(stage_models={"measure": "mediapipe-pose-full:2"})
    assert stage_model(spec, pinned) == ("mediapipe-pose-full", "2")
    assert stage_model(spec, Settings(stage_models={"measure": "nanodet"})) == ("nanodet", None)
    assert stage_model(spec, Settings(stage_models={"pose": "x"})) == (
        spec.model,
        spec.model_version,
    )
