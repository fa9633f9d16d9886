"""What a key sees: /v1/stats per tenant (an operator sees the fleet), and the switches that put
/metrics and the API docs behind a key. Real gateway, real workers, real Redis."""

import json

import httpx
import pytest

from loadtest.statsreplay import redis_now_ms
from services.core import keys
from tests.gateway.conftest import png
from tests.gateway.test_api import assert_problem
from tests.workers import make_worker, worker_threads

KEYS = {"key-a": "team-a", "key-b": "team-b", "key-op": "operator"}
TEAM_A = {"authorization": "Bearer key-a"}
TEAM_B = {"x-api-key": "key-b"}
OPERATOR = {"authorization": "Bearer key-op"}


def stats(api: httpx.Client, headers: dict[str, str]) -> dict:
    response = api.get("/v1/stats", params={"window": "10m"}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_tenant_sees_only_its_own_volumes_and_share_of_cost(redis_client, start_gateway):
    # $1 a replica-second, so the costs below are whole dollars.
    url = start_gateway(api_keys=KEYS, pool_hourly_cost={"cpu": 3600.0})
    with worker_threads() as start, httpx.Client(base_url=url, timeout=30) as api:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        for headers, pipeline, count in ((TEAM_A, "diamond", 3), (TEAM_B, "single", 2)):
            for _ in range(count):
                job = api.post(
                    f"/v1/pipelines/{pipeline}/jobs",
                    content=png(),
                    headers={**headers, "prefer": "wait=10"},
                ).json()
                assert job["status"] == "succeeded"
    # The replicas' lifetimes, fixed so every call prices the same 70 replica-seconds.
    now_ms = redis_now_ms(redis_client)
    redis_client.delete(keys.WORKERS)
    record = {"stage": "measure", "pool": "cpu", "started_ms": now_ms - 120_000}
    redis_client.hset(keys.WORKERS, "w", json.dumps({**record, "seen_ms": now_ms - 60_000}))
    with httpx.Client(base_url=url, timeout=30) as api:
        fleet, team_a, team_b = (stats(api, h) for h in (OPERATOR, TEAM_A, TEAM_B))
        assert_problem(api.get("/v1/stats"), 401, "unauthenticated")

    assert fleet["scope"] == "fleet" and "tenant" not in fleet
    assert {p: v["jobs"] for p, v in fleet["pipelines"].items()} == {"diamond": 3, "single": 2}
    assert fleet["stages"]["measure"]["tasks"] == 5

    assert (team_b["scope"], team_b["tenant"]) == ("tenant", "team-b")
    assert {p: v["jobs"] for p, v in team_b["pipelines"].items()} == {"single": 2}
    assert set(team_b["stages"]) == {"measure"} and team_b["stages"]["measure"]["tasks"] == 2
    assert {p: v["jobs"] for p, v in team_a["pipelines"].items()} == {"diamond": 3}
    assert team_a["stages"]["scale"]["tasks"] == 6

    # Each tenant pays for the share of the cpu pool its compute used; the shares add up to
    # the fleet's bill, and each share's replica time is the same fraction of the fleet's.
    fleet_cpu = fleet["pools"]["cpu"]["cost_dollars"]
    assert fleet_cpu == pytest.approx(70.0)
    a_cpu, b_cpu = (t["pools"]["cpu"]["cost_dollars"] for t in (team_a, team_b))
    assert 0 < b_cpu < fleet_cpu and 0 < a_cpu < fleet_cpu
    assert a_cpu + b_cpu == pytest.approx(fleet_cpu)
    assert team_b["pools"]["cpu"]["replica_hours"] == pytest.approx(b_cpu / 3600, abs=1e-5)
    assert team_b["cost_per_1000_images"] == pytest.approx(b_cpu / 2 * 1000)
    assert team_a["pipelines"]["diamond"]["cost_per_1000_images"] == pytest.approx(a_cpu / 3 * 1000)


def test_an_open_gateway_shows_the_fleet(start_gateway):
    with httpx.Client(base_url=start_gateway(), timeout=30) as api:
        assert stats(api, {})["scope"] == "fleet"


def test_docs_and_metrics_are_public_by_default_even_with_keys(start_gateway):
    with httpx.Client(base_url=start_gateway(api_keys=KEYS), timeout=30) as api:
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            assert api.get(path).status_code == 200, path


def test_switches_put_docs_behind_any_key_and_metrics_behind_an_operator(start_gateway):
    url = start_gateway(api_keys=KEYS, public_docs=False, public_metrics=False)
    with httpx.Client(base_url=url, timeout=30) as api:
        for path in ("/openapi.json", "/docs", "/redoc", "/metrics"):
            assert_problem(api.get(path), 401, "unauthenticated")
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert api.get(path, headers=TEAM_B).status_code == 200, path
        assert "/v1/stats" in api.get("/openapi.json", headers=TEAM_A).json()["paths"]
        assert "swagger-ui" in api.get("/docs", headers=TEAM_A).text
        assert_problem(api.get("/metrics", headers=TEAM_A), 403, "operator_only")
        metrics = api.get("/metrics", headers=OPERATOR)
        assert metrics.status_code == 200 and "posefleet_stage_backlog" in metrics.text
        assert api.get("/healthz").status_code == 200  # probes never need a key
