"""Webhooks end to end: the in-process gateway, real stage workers in threads, the real
``posefleet control-worker`` process and a real HTTP receiver on 127.0.0.1 (allow-listed
through ``webhook_trusted_hosts``, as the tests must be)."""

import io
import itertools
import json
import re
import socket
import ssl
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import redis
import trustme
from rq import Queue

from services.control.webhooks import sign, verify_signature
from services.core import keys
from tests.gateway.conftest import png
from tests.webhooks import (
    SECRET,
    Receiver,
    Reply,
    control_worker,
    hosts_resolver,
    wait_webhook,
    webhook_env,
)
from tests.workers import TEST_PIPELINES, make_worker, worker_threads

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
TRUSTED = {"webhook_secret": SECRET, "webhook_trusted_hosts": ["127.0.0.1"]}


@pytest.fixture
def api(start_gateway):
    with httpx.Client(base_url=start_gateway(**TRUSTED), timeout=30) as client:
        yield client


@pytest.fixture
def stage(redis_client):
    with worker_threads() as start:
        start(make_worker(redis_client, "measure"))
        yield


@pytest.fixture
def control(redis_url):
    env = webhook_env(redis_url, TEST_PIPELINES, webhook_trusted_hosts=["127.0.0.1"])
    with control_worker(env) as proc:
        yield proc


def submit(api, callback: str, image: bytes | None = None, pipeline: str = "single") -> dict:
    """Waits for the job to end unless no worker serves the pipeline yet (``slow``)."""
    response = api.post(
        f"/v1/pipelines/{pipeline}/jobs",
        params={"callback_url": callback},
        content=image or png(),
        headers={} if pipeline == "slow" else {"Prefer": "wait=10"},
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


def docs_verifier():
    """The receiver-side snippet of docs/webhooks.md, run as a user would paste it."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace["verify"]


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1000 + micros // 1000


def nothing_left_to_deliver(client: redis.Redis) -> bool:
    queue = Queue(keys.WEBHOOK_QUEUE, connection=client)
    return queue.count == 0 and queue.scheduled_job_registry.count == 0


def test_a_finished_job_is_posted_once_signed(api, stage, control, redis_client):
    with Receiver() as receiver:
        job = submit(api, receiver.url())
        assert job["status"] == "succeeded"
        (hit,) = receiver.wait_for(1)
        view = wait_webhook(api, f"/v1/jobs/{job['id']}", "delivered")
    assert json.loads(hit.body) == {k: v for k, v in view.items() if k != "webhook"}
    assert hit.path == "/hook" and hit.headers["content-type"] == "application/json"
    assert hit.headers["posefleet-event"] == "job.finished"
    assert hit.headers["posefleet-delivery"] == view["webhook"]["delivery"]
    assert view["webhook"]["url"] == receiver.url()
    (attempt,) = view["webhook"]["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert nothing_left_to_deliver(redis_client) and len(receiver.received) == 1

    header = hit.headers["posefleet-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    tampered = hit.body.replace(b'"succeeded"', b'"failed"')
    old = sign(SECRET, hit.body, int(time.time()) - 3600)
    for verify in (verify_signature, docs_verifier()):
        assert verify(SECRET, header, hit.body)
        assert not verify(SECRET, header, tampered)
        assert not verify("another-secret", header, hit.body)
        assert not verify(SECRET, old, hit.body)  # a replay an hour later
        assert verify(SECRET, old, hit.body, tolerance_s=7200)


def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(api, stage, redis_url):
    """RQ's back-off set to 2 s here: its scheduler keeps times in whole seconds and looks
    every second, so a retry leaves between 1 and 3 s after the failed attempt."""
    env = webhook_env(
        redis_url,
        TEST_PIPELINES,
        webhook_trusted_hosts=["127.0.0.1"],
        webhook_retry_intervals_s=[2],
    )
    with control_worker(env), Receiver([Reply(500), Reply(500), Reply(200)]) as receiver:
        job = submit(api, receiver.url())
        view = wait_webhook(api, f"/v1/jobs/{job['id']}", "delivered")
        hits = receiver.wait_for(3)
    attempts = view["webhook"]["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert [a["error"] for a in attempts] == ["the receiver answered 500"] * 2 + [None]
    assert len(hits) == 3 and len({h.headers["posefleet-delivery"] for h in hits}) == 1
    assert all(h.body == hits[0].body for h in hits)  # one delivery, re-signed per attempt
    assert all(verify_signature(SECRET, h.headers["posefleet-signature"], h.body) for h in hits)
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert min(gaps) >= 0.9, gaps  # RQ's back-off separated them


def test_a_receiver_that_never_accepts_fails_after_max_attempts(api, stage, control, redis_client):
    with Receiver([Reply(503)]) as receiver:
        job = submit(api, receiver.url())
        view = wait_webhook(api, f"/v1/jobs/{job['id']}", "failed")
    assert [a["status_code"] for a in view["webhook"]["attempts"]] == [503, 503, 503]
    assert len(receiver.received) == 3 and nothing_left_to_deliver(redis_client)
    failed = Queue(keys.WEBHOOK_QUEUE, connection=redis_client).failed_job_registry
    assert failed.get_job_ids() == [f"webhook-{view['webhook']['delivery']}"]


def test_every_ending_is_delivered(api, start_gateway, stage, control, redis_client):
    """failed (fail.lua), canceled (cancel.lua) and expired (begin.lua) call back too."""
    with Receiver() as receiver:
        failed = submit(api, receiver.url(), png(trailer=b"poison"))
        assert failed["status"] == "failed"
        canceled = submit(api, receiver.url(), pipeline="slow")  # no slow worker yet
        assert api.delete(f"/v1/jobs/{canceled['id']}").json()["status"] == "canceled"
        with httpx.Client(
            base_url=start_gateway(**TRUSTED, job_deadline_s=0.05), timeout=30
        ) as short:
            expiring = submit(short, receiver.url(), pipeline="slow")
            deadline = int(redis_client.hget(keys.job(expiring["id"]), "deadline"))
            while redis_ms(redis_client) <= deadline:
                time.sleep(0.01)  # until Redis's clock, which decides, passes the deadline
            with worker_threads() as start:
                start(make_worker(redis_client, "slow-measure"))
                hits = receiver.wait_for(3)
    payloads = {body["id"]: body for body in (json.loads(h.body) for h in hits)}
    assert {job_id: body["status"] for job_id, body in payloads.items()} == {
        failed["id"]: "failed",
        canceled["id"]: "canceled",
        expiring["id"]: "expired",
    }
    assert payloads[failed["id"]]["error"]["code"] == "invalid_input"
    assert payloads[expiring["id"]]["error"]["code"] == "deadline_exceeded"


def test_a_batch_is_posted_once_when_it_ends(api, stage, control, redis_client):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.png", png(16, 16))
        z.writestr("b.png", png(20, 12))
    with Receiver() as receiver:
        accepted = api.post(
            "/v1/pipelines/single/batches",
            params={"callback_url": receiver.url("/batches")},
            content=archive.getvalue(),
        ).json()
        view = wait_webhook(api, f"/v1/batches/{accepted['id']}", "delivered")
        (hit,) = receiver.wait_for(1)
    payload = json.loads(hit.body)
    assert payload == {k: v for k, v in view.items() if k != "webhook"}
    assert (payload["status"], payload["total"], payload["done"]) == ("succeeded", 2, 2)
    assert hit.path == "/batches" and hit.headers["posefleet-event"] == "batch.finished"
    assert verify_signature(SECRET, hit.headers["posefleet-signature"], hit.body)
    assert [a["status_code"] for a in view["webhook"]["attempts"]] == [200]
    assert nothing_left_to_deliver(redis_client) and len(receiver.received) == 1


def test_https_goes_to_the_checked_address_and_checks_the_certificate(
    redis_url, start_gateway, stage, redis_client, tmp_path, monkeypatch
):
    """The delivery connects to the address it checked, while the Host header and TLS name
    stay the URL's: a certificate for hooks.test is accepted there, and refused for a name
    it does not cover (the same server reached as wrong.test)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    tls = ca.issue_cert("hooks.test").configure_cert  # the receiver's certificate
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps({"hooks.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]}))
    monkeypatch.setattr(socket, "getaddrinfo", hosts_resolver(hosts))  # for the gateway
    trusted = {"webhook_trusted_hosts": ["hooks.test", "wrong.test"]}
    env = webhook_env(
        redis_url,
        TEST_PIPELINES,
        webhook_ca_bundle=str(tmp_path / "ca.pem"),
        webhook_max_attempts=1,
        **trusted,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls(context)
    with (
        httpx.Client(base_url=start_gateway(webhook_secret=SECRET, **trusted), timeout=30) as api,
        control_worker(env, hosts),
        Receiver(tls=context) as receiver,
    ):
        good = submit(api, receiver.url(host="hooks.test", scheme="https"))
        bad = submit(api, receiver.url(host="wrong.test", scheme="https"))
        delivered = wait_webhook(api, f"/v1/jobs/{good['id']}", "delivered")
        refused = wait_webhook(api, f"/v1/jobs/{bad['id']}", "failed")
    (hit,) = receiver.received
    assert hit.headers["host"] == f"hooks.test:{receiver.port}"
    assert json.loads(hit.body)["id"] == delivered["id"]
    (attempt,) = refused["webhook"]["attempts"]
    assert attempt["status_code"] is None and "certificate" in attempt["error"].lower()
