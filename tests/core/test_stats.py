"""Cost and latency statistics: the arithmetic on fixed inputs, then the real path end to end."""

import json

import httpx
import pytest

from services.gateway.stats import parse_window, replica_seconds, summarise
from tests.gateway.conftest import png
from tests.workers import make_worker, worker_threads


def entry(pipeline: str, status: str, ms: float, nodes: dict) -> tuple[bytes, dict]:
    return b"0-0", {
        b"pipeline": pipeline.encode(),
        b"status": status.encode(),
        b"ms": str(ms).encode(),
        b"nodes": json.dumps(nodes).encode(),
    }


def node(stage: str, pool: str, compute_ms: float, queue_ms: float = 1.0) -> dict:
    return {
        "stage": stage,
        "pool": pool,
        "compute_ms": compute_ms,
        "queue_ms": queue_ms,
        "status": "succeeded",
    }


def worker(pool: str, started_ms: int, seen_ms: int) -> bytes:
    return json.dumps(
        {"stage": "s", "pool": pool, "started_ms": started_ms, "seen_ms": seen_ms}
    ).encode()


def test_cost_per_1000_images_from_replica_time_and_prices():
    # Window 3600 s ending at t = 3600 s: one cpu replica all hour, one gpu replica half of it.
    end = 3_600_000
    workers = {b"a": worker("cpu", 0, end), b"b": worker("gpu", 1_800_000, end)}
    entries = [
        entry(
            "pose",
            "succeeded",
            100,
            {"d": node("detector", "gpu", 30), "k": node("pose", "cpu", 10)},
        )
    ] * 900
    entries += [entry("classify", "succeeded", 50, {"a": node("classifier-a", "cpu", 30)})] * 100
    entries += [entry("pose", "failed", 5, {"d": node("detector", "gpu", 30)})] * 10
    stats = summarise(entries, workers, {"cpu": 0.1, "gpu": 1.0}, 3600, end, stale_ms=0)
    assert stats["pools"]["cpu"]["replica_hours"] == 1.0
    assert stats["pools"]["gpu"]["replicas"] == 0.5
    # $0.10 (cpu) + $0.50 (gpu) for 1000 succeeded images
    assert stats["cost_per_1000_images"] == pytest.approx(0.6)
    pose = stats["pipelines"]["pose"]
    assert (pose["jobs"], pose["succeeded"], pose["failed"]) == (910, 900, 10)
    assert pose["throughput_per_s"] == 0.25
    # pose used all of the gpu time and 9000 of the cpu's 12000 compute-ms
    assert pose["cost_per_1000_images_by_pool"]["gpu"] == pytest.approx(0.5 / 900 * 1000, abs=1e-6)
    assert pose["cost_per_1000_images_by_pool"]["cpu"] == pytest.approx(
        0.075 / 900 * 1000, abs=1e-6
    )
    assert pose["latency_ms"] == {"p50": 100.0, "p95": 100.0, "p99": 100.0}
    assert pose["nodes"]["k"]["compute_ms"]["p50"] == 10.0
    assert stats["stages"]["detector"]["tasks"] == 910


def test_replicas_outside_the_window_cost_nothing():
    assert replica_seconds({b"x": worker("cpu", 0, 1000)}, 5000, 9000, stale_ms=0) == {}


def test_window_parsing():
    assert parse_window("90s") == 90 and parse_window("5m") == 300 and parse_window("2h") == 7200
    for bad in ("soon", "0s", "48h"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_stats_endpoint_after_real_jobs(redis_client, start_gateway):
    url = start_gateway()
    with worker_threads() as start, httpx.Client(base_url=url, timeout=30) as api:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        for _ in range(3):
            job = api.post(
                "/v1/pipelines/diamond/jobs", content=png(), headers={"prefer": "wait=10"}
            ).json()
            assert job["status"] == "succeeded"
        stats = api.get("/v1/stats", params={"window": "1m"}).json()
        assert api.get("/v1/stats", params={"window": "forever"}).json()["code"] == "bad_window"
    diamond = stats["pipelines"]["diamond"]
    assert diamond["succeeded"] == 3 and diamond["latency_ms"]["p50"] >= 0
    assert set(diamond["nodes"]) == {"m", "double", "triple", "sum"}
    assert stats["stages"]["scale"]["tasks"] == 6
    assert stats["pools"]["cpu"]["replica_hours"] > 0  # three registered worker replicas
    assert stats["cost_per_1000_images"] > 0
