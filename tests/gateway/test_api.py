"""The public job API over real HTTP (uvicorn) against a real Redis, with model-free stages."""

import httpx
import pytest

from tests.gateway.conftest import png
from tests.scrape import scrape
from tests.workers import make_worker

PROBLEM = "application/problem+json"


@pytest.fixture
def api(start_gateway):
    with httpx.Client(base_url=start_gateway(max_image_bytes=50_000), timeout=30) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:posefleet:problem:{code}" and body["detail"]
    return body


def test_submit_then_poll(api, workers):
    image = png()
    accepted = api.post(
        "/v1/pipelines/diamond/jobs", content=image, headers={"content-type": "image/png"}
    )
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "queued" and body["pipeline"] == "diamond"
    assert body["links"]["self"] == f"/v1/jobs/{body['id']}"
    assert accepted.headers["location"] == body["links"]["self"]
    job = api.get(body["links"]["self"], headers={"prefer": "wait=10"}).json()
    assert job["status"] == "succeeded"
    assert job["result"] == {"total": 5 * len(image), "parts": 2, "size": len(image), "items": []}
    assert job["image"] == {
        "width": 32,
        "height": 24,
        "content_type": "image/png",
        "bytes": len(image),
    }
    assert set(job["nodes"]) == {"m", "double", "triple", "sum"}
    assert all(n["status"] == "succeeded" and n["attempts"] == 1 for n in job["nodes"].values())
    assert job["nodes"]["m"]["compute_ms"] >= 0 and job["nodes"]["m"]["queue_ms"] >= 0


def test_prefer_wait_returns_the_finished_job(api, workers):
    response = api.post("/v1/pipelines/single/jobs", content=png(), headers={"prefer": "wait=10"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=10"
    assert response.json()["status"] == "succeeded"


def test_prefer_wait_times_out_with_202(api):
    # No worker runs, so the job cannot finish within the wait.
    response = api.post("/v1/pipelines/single/jobs", content=png(), headers={"prefer": "wait=0.2"})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_multipart_upload(api, workers):
    response = api.post(
        "/v1/pipelines/single/jobs",
        files={"file": ("a.png", png(), "image/png")},
        headers={"prefer": "wait=10"},
    )
    assert response.status_code == 200
    assert response.json()["result"]["size"] == len(png())


def test_multipart_without_file_part(api):
    assert_problem(
        api.post("/v1/pipelines/single/jobs", files={"other": (None, "x")}), 400, "missing_file"
    )


def test_empty_body(api):
    assert_problem(api.post("/v1/pipelines/single/jobs", content=b""), 400, "empty_body")


def test_too_large_is_413(api):
    big = png(400, 400)
    assert len(big) > 50_000
    assert_problem(api.post("/v1/pipelines/single/jobs", content=big), 413, "image_too_large")
    assert_problem(
        api.post("/v1/pipelines/single/jobs", files={"file": ("a.png", big, "image/png")}),
        413,
        "image_too_large",
    )


def test_multipart_part_just_over_the_limit_is_413(api):
    # Small enough to pass the Content-Length pre-check, too big for the part limit.
    slightly_big = png(40, 40, trailer=b"\0" * 55_000)
    response = api.post("/v1/pipelines/single/jobs", files={"file": ("a.png", slightly_big)})
    assert_problem(response, 413, "image_too_large")


def test_malformed_multipart_is_400(api):
    response = api.post(
        "/v1/pipelines/single/jobs",
        content=b"--x\r\nnonsense",
        headers={"content-type": "multipart/form-data"},
    )  # no boundary
    assert_problem(response, 400, "bad_multipart")


def test_not_an_image_is_415_even_when_labelled_as_one(api):
    response = api.post(
        "/v1/pipelines/single/jobs",
        content=b"GIF89a not supported",
        headers={"content-type": "image/png"},
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_undecodable_image_is_422(api):
    truncated = png()[:40]
    assert_problem(
        api.post("/v1/pipelines/single/jobs", content=truncated), 422, "undecodable_image"
    )


def test_too_many_pixels_is_422(start_gateway):
    with httpx.Client(base_url=start_gateway(max_image_pixels=100)) as api:
        response = api.post("/v1/pipelines/single/jobs", content=png(20, 20))
    assert_problem(response, 422, "image_too_many_pixels")


def test_unknown_pipeline_and_job_are_404(api):
    assert_problem(api.post("/v1/pipelines/nope/jobs", content=png()), 404, "pipeline_not_found")
    assert_problem(api.get("/v1/jobs/4b6f0c1e-0000-4000-8000-000000000000"), 404, "job_not_found")
    assert_problem(api.get("/v1/nothing-here"), 404, "not_found")


def test_failed_job_reports_a_machine_readable_error(api, workers):
    job = api.post(
        "/v1/pipelines/diamond/jobs", content=png(trailer=b"poison"), headers={"prefer": "wait=10"}
    ).json()
    assert job["status"] == "failed"
    assert job["error"] == {
        "code": "invalid_input",
        "message": "poisoned image",
        "node": "m",
        "stage": "measure",
    }
    assert "result" not in job
    assert job["nodes"]["m"]["status"] == "failed" and job["nodes"]["sum"]["status"] == "pending"


def test_idempotency_key(api):
    headers = {"idempotency-key": "order-42"}
    first = api.post("/v1/pipelines/single/jobs", content=png(), headers=headers)
    again = api.post("/v1/pipelines/single/jobs", content=png(), headers=headers)
    assert first.status_code == 202 and again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/pipelines/single/jobs", content=png(8, 8), headers=headers)
    assert_problem(other, 409, "idempotency_conflict")


def test_cancel(api, redis_client):
    job_id = api.post("/v1/pipelines/single/jobs", content=png()).json()["id"]
    canceled = api.delete(f"/v1/jobs/{job_id}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert_problem(api.delete(f"/v1/jobs/{job_id}"), 409, "job_finished")
    # The queued task is dropped, not run, once a worker reaches it.
    worker = make_worker(redis_client, "measure")
    worker.process(worker.collect())
    assert worker.handler.calls == []
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"


def test_backlog_over_limit_is_429(start_gateway):
    with httpx.Client(base_url=start_gateway(max_backlog=2)) as api:
        for _ in range(2):
            assert api.post("/v1/pipelines/single/jobs", content=png()).status_code == 202
        response = api.post("/v1/pipelines/single/jobs", content=png())
    assert_problem(response, 429, "backlog_full")
    assert response.headers["retry-after"] == "2"


def test_redis_down_is_503_not_500(start_gateway):
    url = start_gateway(redis_url="redis://127.0.0.1:1/0")
    with httpx.Client(base_url=url, timeout=30) as api:
        assert_problem(
            api.post("/v1/pipelines/single/jobs", content=png()), 503, "store_unavailable"
        )
        assert_problem(api.get("/v1/jobs/x"), 503, "store_unavailable")
        ready = api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert api.get("/healthz").status_code == 200


def test_api_keys_and_tenant_isolation(start_gateway):
    url = start_gateway(api_keys={"key-a": "alice", "key-b": "bob"})
    with httpx.Client(base_url=url) as api:
        assert_problem(api.post("/v1/pipelines/single/jobs", content=png()), 401, "unauthenticated")
        assert_problem(
            api.get("/v1/pipelines", headers={"authorization": "Bearer nope"}),
            401,
            "invalid_api_key",
        )
        alice = {"authorization": "Bearer key-a"}
        job_id = api.post("/v1/pipelines/single/jobs", content=png(), headers=alice).json()["id"]
        assert api.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
        assert_problem(
            api.get(f"/v1/jobs/{job_id}", headers={"x-api-key": "key-b"}), 404, "job_not_found"
        )


def test_pipeline_metadata(api):
    listing = api.get("/v1/pipelines").json()["pipelines"]
    assert {p["name"] for p in listing} == {"single", "diamond", "slow", "slow-chain"}
    diamond = api.get("/v1/pipelines/diamond").json()
    assert diamond["inputs"] == ["image"]
    assert diamond["stages"] == ["measure", "scale", "total"]
    assert sorted(map(tuple, diamond["edges"])) == [
        ("double", "sum"),
        ("m", "double"),
        ("m", "triple"),
        ("triple", "sum"),
    ]
    assert diamond["nodes"][0]["name"] == "m"
    assert_problem(api.get("/v1/pipelines/nope"), 404, "pipeline_not_found")


def test_probes_metrics_and_docs(api, workers):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"

    def submitted() -> float:
        for line in api.get("/metrics").text.splitlines():
            if line.startswith('posefleet_jobs_submitted_total{pipeline="single"}'):
                return float(line.split()[-1])
        return 0.0

    before = submitted()
    api.post("/v1/pipelines/single/jobs", content=png())
    assert submitted() == before + 1
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert "/v1/pipelines/{name}/jobs" in paths and "/v1/jobs/{job_id}" in paths


def test_gateway_metrics_include_backlog_of_every_stage(start_gateway):
    url = start_gateway()
    with httpx.Client(base_url=url) as api:
        for _ in range(2):
            api.post("/v1/pipelines/single/jobs", content=png())
        metrics = scrape(url)
    assert metrics[("posefleet_stage_backlog", frozenset({("stage", "measure")}))] == 2
    assert metrics[("posefleet_stage_backlog", frozenset({("stage", "total")}))] == 0
