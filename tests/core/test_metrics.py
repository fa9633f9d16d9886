"""Metrics scraped over real HTTP after real jobs: counters move by exactly what happened."""

import httpx
import pytest

from services.core.dag import DagSteps
from services.core.liveness import Heartbeat
from services.core.pipeline import load_pipelines
from services.core.probes import ProbeServer
from services.core.settings import Settings
from tests.jobwait import wait_terminal
from tests.scrape import delta, scrape
from tests.workers import TEST_PIPELINES, make_worker, worker_threads

CONFIG = load_pipelines(TEST_PIPELINES)


@pytest.fixture
def probe():
    heartbeat = Heartbeat(max_age_s=60)
    server = ProbeServer(0, heartbeat.check, host="127.0.0.1").start()
    yield f"http://127.0.0.1:{server.port}", heartbeat
    server.stop()


def test_worker_metrics_after_real_jobs(redis_client, probe):
    url, _ = probe
    before = scrape(url)
    steps = DagSteps(redis_client)
    with worker_threads() as start:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        for i in range(3):
            steps.create(
                f"d{i}",
                CONFIG.pipelines["diamond"],
                b"abc",
                {"tenant": "t"},
                ttl_s=60,
                deadline_s=60,
            )
        steps.create(
            "bad", CONFIG.pipelines["single"], b"poison", {"tenant": "t"}, ttl_s=60, deadline_s=60
        )
        for job in ("d0", "d1", "d2", "bad"):
            wait_terminal(redis_client, job, 10)
    after = scrape(url)
    tasks = "posefleet_stage_tasks_total"
    assert delta(before, after, tasks, stage="measure", pool="cpu", outcome="succeeded") == 3
    assert delta(before, after, tasks, stage="measure", pool="cpu", outcome="failed") == 1
    assert delta(before, after, tasks, stage="scale", pool="cpu", outcome="succeeded") == 6
    assert delta(before, after, tasks, stage="total", pool="cpu", outcome="succeeded") == 3
    durations = "posefleet_job_duration_seconds_count"
    assert delta(before, after, durations, pipeline="diamond", status="succeeded") == 3
    assert delta(before, after, durations, pipeline="single", status="failed") == 1
    assert delta(before, after, "posefleet_stage_queue_wait_seconds_count", stage="scale") == 6
    batches = delta(before, after, "posefleet_stage_batch_size_count", stage="scale")
    assert 1 <= batches <= 6
    assert delta(before, after, "posefleet_stage_batch_size_sum", stage="scale") == 6
    inference = "posefleet_stage_inference_seconds_count"
    assert delta(before, after, inference, stage="scale", pool="cpu", backend="none") >= batches
    assert (
        delta(before, after, "posefleet_worker_busy_seconds_total", stage="scale", pool="cpu") > 0
    )
    compute = "posefleet_pipeline_compute_seconds_total"  # per-pipeline cost attribution
    assert delta(before, after, compute, pipeline="diamond", pool="cpu") > 0
    assert (
        after[("posefleet_node_pool_hourly_cost_dollars", frozenset({("pool", "cpu")}))]
        == (Settings().pool_hourly_cost["cpu"])
    )


def test_backlog_and_dead_letters_are_read_at_scrape_time(redis_client, probe):
    url, _ = probe
    worker = make_worker(redis_client, "measure")
    steps = DagSteps(redis_client)
    for i in range(3):
        steps.create(
            f"j{i}", CONFIG.pipelines["single"], b"x", {"tenant": "t"}, ttl_s=60, deadline_s=60
        )
    redis_client.xadd("pf:dead:measure", {"job": "old"})
    worker.refresh_backlog()
    metrics = scrape(url)
    assert metrics[("posefleet_stage_backlog", frozenset({("stage", "measure")}))] == 3
    assert metrics[("posefleet_dead_letters", frozenset({("stage", "measure")}))] == 1


def test_healthz_reports_a_stuck_loop(probe):
    url, heartbeat = probe
    assert httpx.get(url + "/healthz").json()["status"] == "ok"
    heartbeat.max_age_s = 0.0
    heartbeat.last -= 1
    response = httpx.get(url + "/healthz")
    assert response.status_code == 503 and response.json()["status"] == "stuck"
    assert httpx.get(url + "/nope").status_code == 404
