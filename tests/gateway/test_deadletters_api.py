"""``/v1/deadletters`` over real HTTP: operators only, and a replay that a tenant sees finish."""

from __future__ import annotations

import httpx
import pytest

from tests.deadletters import exhaust_attempts
from tests.gateway.conftest import png
from tests.gateway.test_api import assert_problem
from tests.workers import make_worker, worker_threads

KEYS = {"key-ops": "operator", "key-a": "team-a"}
OPS = {"authorization": "Bearer key-ops"}
TEAM_A = {"authorization": "Bearer key-a"}


@pytest.fixture
def url(start_gateway) -> str:
    return start_gateway(api_keys=KEYS, dead_letter_page_max=50)


def dead_jobs(url: str, redis_client, count: int) -> list[str]:
    """Jobs team-a submitted over HTTP whose tasks exhausted their attempts."""
    ids = []
    for i in range(count):
        response = httpx.post(
            f"{url}/v1/pipelines/single/jobs",
            content=png(8 + i),
            headers={"content-type": "image/png", **TEAM_A},
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    exhaust_attempts(redis_client, "measure")
    return ids


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/deadletters"),
        ("GET", "/v1/deadletters/measure/1-0"),
        ("POST", "/v1/deadletters/measure/1-0/replay"),
        ("POST", "/v1/deadletters/replay"),
        ("DELETE", "/v1/deadletters/measure/1-0"),
        ("POST", "/v1/deadletters/purge"),
    ],
)
def test_only_operators_reach_dead_letters(url, method, path):
    assert_problem(httpx.request(method, url + path), 401, "unauthenticated")
    assert_problem(httpx.request(method, url + path, headers=TEAM_A), 403, "operator_only")


def test_an_operator_replays_and_the_tenant_sees_the_job_finish(url, redis_client):
    (job_id,) = dead_jobs(url, redis_client, 1)
    with httpx.Client(base_url=url, headers=OPS, timeout=30) as ops:
        page = ops.get("/v1/deadletters").json()
        assert page["counts"]["measure"] == 1 and page["next"] is None
        (item,) = page["items"]
        assert (item["stage"], item["job"], item["node"]) == ("measure", job_id, "m")
        assert item["error"]["code"] == "max_attempts_exceeded" and item["at"]
        shown = ops.get(f"/v1/deadletters/measure/{item['id']}").json()
        assert shown == {**item, "job_status": "failed"}

        replayed = ops.post(f"/v1/deadletters/measure/{item['id']}/replay")
        assert replayed.status_code == 200, replayed.text
        assert replayed.json() == {
            "stage": "measure",
            "id": item["id"],
            "job": job_id,
            "outcome": "replayed",
            "detail": "1",
        }
        again = ops.post(f"/v1/deadletters/measure/{item['id']}/replay")
        assert_problem(again, 404, "dead_letter_not_found")

    with worker_threads() as start:
        start(make_worker(redis_client, "measure"))
        job = httpx.get(
            f"{url}/v1/jobs/{job_id}", headers={"prefer": "wait=10", **TEAM_A}, timeout=30
        ).json()
    assert job["status"] == "succeeded", job
    (replay,) = job["replays"]
    assert replay["by"] == "operator" and replay["dead_letter"] == item["id"]
    assert (replay["stage"], replay["node"]) == ("measure", "m")


def test_refusals_are_problems_and_bulk_calls_page(url, redis_client):
    ids = dead_jobs(url, redis_client, 3)
    redis_client.delete(f"pf:job:{ids[0]}")  # expired
    with httpx.Client(base_url=url, headers=OPS, timeout=30) as ops:
        first = ops.get("/v1/deadletters", params={"stage": "measure", "limit": 1}).json()
        (expired,) = first["items"]
        assert expired["job"] == ids[0] and first["next"] == f"measure/{expired['id']}"
        refused = ops.post(f"/v1/deadletters/measure/{expired['id']}/replay")
        body = assert_problem(refused, 409, "job_expired")
        assert body["job"] == ids[0] and "cannot replay: the job expired" in body["detail"]

        bulk = ops.post("/v1/deadletters/replay", params={"limit": 2}).json()
        assert bulk["counts"] == {"job_expired": 1, "replayed": 1}
        assert bulk["next"] is not None
        rest = ops.post("/v1/deadletters/replay", params={"after": bulk["next"]}).json()
        assert rest["counts"] == {"replayed": 1} and rest["next"] is None

        purged = ops.post("/v1/deadletters/purge", params={"only_expired": True}).json()
        assert [(r["job"], r["outcome"]) for r in purged["results"]] == [(ids[0], "purged")]
        assert purged["counts"] == {"purged": 1}  # the two replayed letters are gone already
        assert ops.get("/v1/deadletters").json()["counts"]["measure"] == 0

        assert_problem(ops.get("/v1/deadletters", params={"stage": "nope"}), 404, "stage_not_found")
        assert_problem(ops.get("/v1/deadletters", params={"after": "x"}), 400, "bad_reference")
        too_many = ops.get("/v1/deadletters", params={"limit": 51})
        assert_problem(too_many, 400, "limit_too_large")
        assert_problem(ops.get("/v1/deadletters/measure/1-0"), 404, "dead_letter_not_found")
        assert_problem(ops.delete("/v1/deadletters/measure/1-0"), 404, "dead_letter_not_found")


def test_bulk_calls_act_on_named_letters(url, redis_client):
    dead_jobs(url, redis_client, 2)
    with httpx.Client(base_url=url, headers=OPS, timeout=30) as ops:
        first, second = ops.get("/v1/deadletters").json()["items"]
        refs = [f"measure/{first['id']}", "measure/1-0"]
        replayed = ops.post("/v1/deadletters/replay", json={"refs": refs}).json()
        assert [(r["id"], r["outcome"]) for r in replayed["results"]] == [
            ("1-0", "not_found"),
            (first["id"], "replayed"),
        ]
        assert replayed["next"] is None
        purged = ops.post("/v1/deadletters/purge", json={"refs": [f"measure/{second['id']}"]})
        assert purged.json()["counts"] == {"purged": 1}
        assert ops.get("/v1/deadletters").json()["items"] == []
        too_many = ops.post("/v1/deadletters/replay", json={"refs": ["measure/1-0"] * 51})
        assert_problem(too_many, 400, "limit_too_large")
        assert_problem(ops.post("/v1/deadletters/replay", json={"refs": []}), 400, "bad_request")
        bad = ops.post("/v1/deadletters/purge", json={"refs": ["nope/1-0"]})
        assert_problem(bad, 404, "stage_not_found")


def test_purging_one_letter_and_the_open_gateway(start_gateway, redis_client):
    url = start_gateway()  # no API keys: every caller is an operator
    (job_id,) = dead_jobs(url, redis_client, 1)
    (item,) = httpx.get(f"{url}/v1/deadletters").json()["items"]
    assert httpx.delete(f"{url}/v1/deadletters/measure/{item['id']}").status_code == 204
    assert httpx.get(f"{url}/v1/deadletters").json()["items"] == []
    assert httpx.get(f"{url}/v1/jobs/{job_id}").json()["status"] == "failed"


def test_the_routes_are_in_the_openapi_document(url):
    spec = httpx.get(f"{url}/openapi.json").json()
    for path in (
        "/v1/deadletters",
        "/v1/deadletters/{stage}/{entry_id}",
        "/v1/deadletters/{stage}/{entry_id}/replay",
        "/v1/deadletters/replay",
        "/v1/deadletters/purge",
    ):
        assert path in spec["paths"], path
    assert "replays" in spec["components"]["schemas"]["Job"]["properties"]
