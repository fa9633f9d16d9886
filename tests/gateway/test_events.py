"""Server-sent events over real HTTP against a real Redis, with model-free stages stepped by hand
so every node transition is observable."""

import json
import time

import httpx
import pytest
from httpx_sse import connect_sse

from services.core import keys
from services.gateway.routes.events import job_events, node_codes
from tests.gateway.conftest import png
from tests.gateway.test_api import assert_problem
from tests.workers import make_worker


@pytest.fixture
def api(start_gateway):
    with httpx.Client(base_url=start_gateway(), timeout=30) as client:
        yield client


def step(redis_client, stage: str) -> None:
    """One worker batch on ``stage``: its queued nodes start and finish."""
    worker = make_worker(redis_client, stage)
    worker.process(worker.collect())


def until(events, last) -> list[dict]:
    """Node events (data plus their id) up to and including the first one ``last`` accepts."""
    got = []
    for event in events:
        assert event.event == "node", event
        got.append({**json.loads(event.data), "id": event.id})
        if last(got[-1]):
            return got
    raise AssertionError(f"the stream ended after {got}")


def test_job_stream_shows_each_node_with_timings_then_the_result(api, redis_client):
    job_id = api.post("/v1/pipelines/diamond/jobs", content=png()).json()["id"]
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = source.iter_sse()
        first = next(events)
        assert first.retry == 2000 and first.data == ""
        state = next(events)
        assert state.event == "state"
        assert json.loads(state.data)["status"] == "queued"
        assert state.id == "q.q0-p0-p0-p0"

        step(redis_client, "measure")
        # Events follow the record: m running (unless it coalesced), m done, both branches
        # released. Each event's id is the state after it.
        got = until(events, lambda n: n["node"] == "triple")
        m = [n for n in got if n["node"] == "m"]
        assert [n["status"] for n in m] in (["running", "succeeded"], ["succeeded"])
        done = m[-1]
        assert (done["job"], done["attempts"], done["status"]) == (job_id, 1, "succeeded")
        assert done["job_status"] == "running" and done["stage"] == "measure"
        assert done["queue_ms"] >= 0 and done["compute_ms"] >= 0 and done["finished_at"]
        assert [(n["node"], n["status"]) for n in got[len(m) :]] == [
            ("double", "queued"),
            ("triple", "queued"),
        ]
        assert got[-1]["id"] == "r.s1-q0-q0-p0"
        step(redis_client, "scale")
        step(redis_client, "total")
        rest = list(events)
    assert rest[-1].event == "end" and rest[-1].id == "end"
    final = json.loads(rest[-1].data)
    assert final["status"] == "succeeded" and final["result"]["parts"] == 2
    assert final == api.get(f"/v1/jobs/{job_id}").json()
    nodes = {json.loads(e.data)["node"]: json.loads(e.data) for e in rest[:-1]}
    assert {n["status"] for n in nodes.values()} == {"succeeded"}
    assert set(nodes) == {"double", "triple", "sum"}


def test_resume_with_last_event_id_sends_only_what_changed(api, redis_client):
    job_id = api.post("/v1/pipelines/diamond/jobs", content=png()).json()["id"]
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
        seen = next(e for e in source.iter_sse() if e.event == "state").id
    step(redis_client, "measure")
    headers = {"last-event-id": seen}
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        events = source.iter_sse()
        next(events)  # retry
        changed = until(events, lambda n: n["node"] == "triple")
    assert [n["node"] for n in changed] == ["m", "double", "triple"]  # no `state`, no repeats
    for stage in ("scale", "total"):
        step(redis_client, stage)
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        after = [e for e in source.iter_sse() if e.data]
    assert [e.event for e in after] == ["node"] * 4 + ["end"]
    # The last id means "over": a browser's EventSource stops reconnecting on 204.
    assert api.get(f"/v1/jobs/{job_id}/events", headers={"last-event-id": "end"}).status_code == 204


def test_finished_job_is_one_end_event_and_failures_carry_the_error(api, redis_client):
    job_id = api.post("/v1/pipelines/single/jobs", content=png(trailer=b"poison")).json()["id"]
    step(redis_client, "measure")
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
        events = [e for e in source.iter_sse() if e.data]
    assert [e.event for e in events] == ["end"]
    assert json.loads(events[0].data)["error"]["code"] == "invalid_input"


def test_canceling_ends_the_stream(api):
    job_id = api.post("/v1/pipelines/single/jobs", content=png()).json()["id"]
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
        events = source.iter_sse()
        assert next(e for e in events if e.data).event == "state"
        api.delete(f"/v1/jobs/{job_id}")
        end = next(events)
        assert end.event == "end" and json.loads(end.data)["status"] == "canceled"


def test_progress_channel_is_subscribed_only_while_a_stream_is_open(api, redis_client):
    job_id = api.post("/v1/pipelines/single/jobs", content=png()).json()["id"]
    channel = keys.job_events(job_id)
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
        events = source.iter_sse()  # kept: a dropped iterator closes the connection
        next(e for e in events if e.data)
        assert redis_client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    deadline = time.monotonic() + 5
    while redis_client.pubsub_numsub(channel)[0][1]:
        assert time.monotonic() < deadline, "the channel stayed subscribed after the client left"
        time.sleep(0.02)  # the unsubscribe is sent by a task after the disconnect


def test_streams_close_after_the_limit_and_resume(start_gateway, redis_client):
    url = start_gateway(events_max_stream_s=0.3)
    with httpx.Client(base_url=url, timeout=30) as api:
        job_id = api.post("/v1/pipelines/single/jobs", content=png()).json()["id"]
        with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events") as source:
            events = [e for e in source.iter_sse() if e.data]  # ends by itself, no `end`
        assert [e.event for e in events] == ["state"]
        step(redis_client, "measure")
        headers = {"last-event-id": events[-1].id}
        with connect_sse(api, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
            assert [e.event for e in source.iter_sse() if e.data] == ["node", "end"]


def test_stream_limit_errors_and_tenants(start_gateway):
    url = start_gateway(events_max_streams=1, api_keys={"key-a": "alice", "key-b": "bob"})
    alice, bob = {"authorization": "Bearer key-a"}, {"x-api-key": "key-b"}
    with httpx.Client(base_url=url, timeout=30) as api:
        job_id = api.post("/v1/pipelines/single/jobs", content=png(), headers=alice).json()["id"]
        path = f"/v1/jobs/{job_id}/events"
        assert_problem(api.get(path), 401, "unauthenticated")
        assert_problem(api.get(path, headers=bob), 404, "job_not_found")
        assert_problem(api.get("/v1/batches/nope/events", headers=bob), 404, "batch_not_found")
        with connect_sse(api, "GET", path, headers=alice) as source:
            events = source.iter_sse()
            next(e for e in events if e.data)
            busy = api.get(path, headers=alice)
            assert_problem(busy, 503, "too_many_streams")
            assert busy.headers["retry-after"] == "5"


def test_a_retried_node_is_one_event_per_attempt():
    def view(status: str, attempts: int) -> dict:
        node = {"stage": "s", "status": status, "attempts": attempts}
        return {"id": "j", "status": "running", "nodes": {"n": node}}

    seen = node_codes(view("running", 1))
    (retry,) = job_events(view("running", 2), seen)
    assert retry.event == "node" and retry.id == "r.r2"
    assert json.loads(retry.data)["attempts"] == 2
    assert job_events(view("running", 2), node_codes(view("running", 2))) == []
