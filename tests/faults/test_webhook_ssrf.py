"""A tenant must not be able to make the fleet call into its own network through a webhook:
refused at submit, refused again at delivery when the name has moved (DNS rebinding), no
redirect followed, and a receiver cannot make a delivery unbounded in size or time.

Names resolve through a hosts file the test controls (tests/webhooks.py): the in-process gateway
and the control worker process both read it, so a name can point at a public address when the
job is submitted and at 127.0.0.1 when it is delivered."""

import json
import threading

import httpx
import pytest

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

pytestmark = pytest.mark.faults

PUBLIC = "93.184.215.14"  # a global address; nothing connects to it in these tests
HOSTS = {
    "mixed.test": [PUBLIC, "127.0.0.1"],
    "pods.test": ["8.8.8.8"],  # inside the denied network below, as a pod CIDR would be
    "gone.test": [],  # NXDOMAIN
}


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(HOSTS))
    monkeypatch.setattr("socket.getaddrinfo", hosts_resolver(path))
    return path


def submit(api, callback: str, wait: bool = False) -> httpx.Response:
    return api.post(
        "/v1/pipelines/single/jobs",
        params={"callback_url": callback},
        content=png(),
        headers={"Prefer": "wait=10"} if wait else {},
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "resolves to 127.0.0.1, which is a loopback address"),
        ("http://127.0.0.1:8080/hook", "scheme 'http' is not allowed"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("https://[::ffff:169.254.169.254]/", "a link-local address"),
        ("https://10.0.0.5/", "which is a private address"),
        ("https://[fd00::5]/", "which is a private address"),
        ("https://[::1]/", "which is a loopback address"),
        ("https://localhost/", "which is a loopback address"),
        ("https://2130706433/", "resolves to 127.0.0.1, which is a loopback address"),
        ("https://0.0.0.0/", "an unspecified address"),
        ("https://100.64.0.1/", "not a public address"),
        ("https://mixed.test/", "resolves to 127.0.0.1, which is a loopback address"),
        ("https://pods.test/", "in the denied network 8.8.8.0/24"),
        ("https://gone.test/", "does not resolve"),
        ("redis://127.0.0.1:6379/0", "scheme 'redis' is not allowed"),
        ("file:///etc/passwd", "absolute https URL with a host"),
        ("https://user:secret@hooks.example.com/", "credentials in the URL"),
        ("https://hooks.example.com/" + "a" * 2100, "over 2048 characters"),
    ],
)
def test_submit_refuses_urls_into_the_fleet(url, reason, hosts, start_gateway, redis_client):
    base = start_gateway(webhook_secret=SECRET, webhook_denied_networks=["8.8.8.0/24"])
    with httpx.Client(base_url=base, timeout=30) as api:
        response = submit(api, url)
        batch = api.post(
            "/v1/pipelines/single/batches", params={"callback_url": url}, content=b"PK\x03\x04"
        )
    for refused in (response, batch):
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["code"] == "callback_not_allowed" and reason in problem["detail"]
    assert not redis_client.keys(keys.job("*")) and not redis_client.keys(keys.batch("*"))
    assert not redis_client.exists(keys.stream("measure"))


def test_no_secret_no_webhooks(start_gateway):
    with httpx.Client(base_url=start_gateway(), timeout=30) as api:
        response = submit(api, "https://hooks.example.com/")
    assert response.status_code == 422 and "not enabled" in response.json()["detail"]


def test_delivery_refuses_a_name_that_moved_into_the_fleet(
    hosts, start_gateway, redis_url, redis_client
):
    """Public at submit, internal at delivery: refused then, not retried, nothing sent. The
    trusted name on the same receiver shows the request would otherwise have arrived."""
    moved = {"a.test": "127.0.0.1", "b.test": "169.254.169.254", "c.test": "10.0.0.7"}
    hosts.write_text(json.dumps({**{n: [PUBLIC] for n in moved}, "trusted.test": ["127.0.0.1"]}))
    settings = {"webhook_schemes": ["http", "https"], "webhook_trusted_hosts": ["trusted.test"]}
    env = webhook_env(redis_url, TEST_PIPELINES, **settings)
    with (
        httpx.Client(base_url=start_gateway(webhook_secret=SECRET, **settings)) as api,
        control_worker(env, hosts),
        Receiver() as receiver,
    ):
        jobs = {n: submit(api, receiver.url(f"/{n}", host=n)).json()["id"] for n in moved}
        trusted = submit(api, receiver.url("/trusted", host="trusted.test")).json()["id"]
        hosts.write_text(
            json.dumps({**{n: [a] for n, a in moved.items()}, "trusted.test": ["127.0.0.1"]})
        )
        with worker_threads() as start:
            start(make_worker(redis_client, "measure"))
            wait_webhook(api, f"/v1/jobs/{trusted}", "delivered")
            views = {n: wait_webhook(api, f"/v1/jobs/{j}", "failed") for n, j in jobs.items()}
    assert [hit.path for hit in receiver.received] == ["/trusted"]
    for name, view in views.items():
        (attempt,) = view["webhook"]["attempts"]
        assert attempt["status_code"] is None
        assert attempt["error"].startswith(f"refused: host '{name}' resolves to {moved[name]}")


def test_the_connection_goes_to_the_address_that_was_checked(
    hosts, start_gateway, redis_url, redis_client
):
    """A name answering 127.0.0.2, then 127.0.0.1 (the receiver) on the next lookup: the
    delivery connects to the address it resolved and checked (nothing listens on 127.0.0.2),
    never to a second answer (a client resolving again would reach the receiver). Trusted, so
    that loopback may be called at all; the pinning is the same for every host."""
    hosts.write_text(json.dumps({"flip.test": {"rotate": [["127.0.0.2"], ["127.0.0.1"]]}}))
    trusted = {"webhook_trusted_hosts": ["flip.test"], "webhook_max_attempts": 1}
    env = webhook_env(redis_url, TEST_PIPELINES, **trusted)
    with (
        httpx.Client(base_url=start_gateway(webhook_secret=SECRET, **trusted)) as api,
        control_worker(env, hosts),
        worker_threads() as start,
        Receiver() as receiver,
    ):
        start(make_worker(redis_client, "measure"))
        job = submit(api, receiver.url(host="flip.test"), wait=True).json()
        view = wait_webhook(api, f"/v1/jobs/{job['id']}", "failed")
    (attempt,) = view["webhook"]["attempts"]
    assert attempt["error"].startswith("ConnectError") and not receiver.received


def test_redirects_are_not_followed_and_responses_are_bounded(
    start_gateway, redis_url, redis_client
):
    """A redirect (here to a path the receiver would answer) is a failed attempt, a 256 MiB
    answer is read to 64 KiB, and a receiver that never answers costs one timeout."""
    trusted = {"webhook_trusted_hosts": ["127.0.0.1"]}
    env = webhook_env(
        redis_url, TEST_PIPELINES, webhook_max_attempts=1, webhook_timeout_s=1, **trusted
    )
    hung = threading.Event()
    with (
        httpx.Client(base_url=start_gateway(webhook_secret=SECRET, **trusted)) as api,
        control_worker(env),
        worker_threads() as start,
        Receiver() as receiver,
    ):
        start(make_worker(redis_client, "measure"))
        scripted = [
            (Reply(302, {"Location": receiver.url("/internal")}), "failed"),
            (Reply(200, body_bytes=256 * 1024 * 1024), "delivered"),
            (Reply(200, hold=hung), "failed"),
        ]
        receiver.replies = [reply for reply, _ in scripted]
        views = []
        try:
            for _, state in scripted:  # one job at a time, so each meets its reply
                job = submit(api, receiver.url(), wait=True).json()
                views.append(wait_webhook(api, f"/v1/jobs/{job['id']}", state))
        finally:
            hung.set()
    redirected, huge, slow = (view["webhook"]["attempts"] for view in views)
    assert [hit.path for hit in receiver.received] == ["/hook"] * 3  # /internal never called
    assert [a["status_code"] for a in redirected] == [302]
    assert [a["status_code"] for a in huge] == [200]
    assert receiver.sent_bytes < 32 * 1024 * 1024  # the worker closed the connection early
    assert [a["error"] for a in slow] == ["timed out after 1 s"]
    assert slow[0]["duration_ms"] < 3000
