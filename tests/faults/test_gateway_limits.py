"""The gateway's edge under abuse, over real sockets: many waiters on one job, oversized and
too many headers, clients that send their headers or body a byte at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import REGISTRY

from tests.faults.fleet import fleet
from tests.faults.test_redis_faults import png
from tests.workers import make_worker, worker_threads

pytestmark = pytest.mark.faults

WAITERS = 200
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
# How late a cut-off may come past its timeout on a loaded machine (the timer fires on time;
# the rest is scheduling).
SLACK_S = 1.5


def test_two_hundred_waiters_on_one_job_all_get_their_answer(redis_client, start_gateway):
    url = start_gateway()
    job_id = httpx.post(f"{url}/v1/pipelines/single/jobs", content=png(3)).json()["id"]

    async def wait_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=WAITERS, max_keepalive_connections=WAITERS)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
            waiters = [
                asyncio.create_task(http.get(f"/v1/jobs/{job_id}", headers={"Prefer": "wait=30"}))
                for _ in range(WAITERS)
            ]
            deadline = time.monotonic() + 30
            while REGISTRY.get_sample_value("posefleet_gateway_waiters") != WAITERS:
                assert time.monotonic() < deadline, "the waiters never all registered"
                await asyncio.sleep(0.05)  # poll interval
            # All 200 wait on the one job; it finishes now and wakes them at the same moment.
            start(make_worker(redis_client, "measure"))
            return await asyncio.gather(*waiters)

    with worker_threads() as start:
        answers = asyncio.run(wait_all())
    codes = [a.status_code for a in answers]
    assert codes.count(200) == WAITERS, {c: codes.count(c) for c in set(codes)}
    assert {a.json()["status"] for a in answers} == {"succeeded"}


def _read_all(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes (a reset after its answer counts as close)."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw request (from a thread: the server may answer before it has read it all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def send() -> None:
            # The server may answer and close before it has read everything.
            with contextlib.suppress(OSError):
                sock.sendall(request)

        sender = threading.Thread(target=send)
        sender.start()
        raw = _read_all(sock, 10)
        sender.join()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.fixture
def gateway_port(redis_url, tmp_path):
    """``python -m services.gateway`` as deployed, with short client timeouts."""
    timeouts = {
        "http_header_timeout_s": str(HEADER_TIMEOUT_S),
        "http_body_timeout_s": str(BODY_TIMEOUT_S),
    }
    with fleet(redis_url, tmp_path, **timeouts) as f:
        yield urlsplit(f.gateway()).port


def _assert_problem(status: int, headers: dict[str, str], body: bytes, want: int, code: str):
    assert status == want, body
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == code


def test_one_huge_header_is_refused_with_431(gateway_port):
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    _assert_problem(*_exchange(gateway_port, big), 431, "headers_too_large")


def test_five_thousand_headers_are_refused_with_431(gateway_port):
    many = b"X: v\r\n" * 5000  # 30 kB: under the byte limit, so only the count refuses it
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    _assert_problem(*_exchange(gateway_port, request), 431, "too_many_headers")


def test_ordinary_headers_pass(gateway_port):
    some = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + some + b"\r\n"
    status, _, _ = _exchange(gateway_port, request)
    assert status == 200


def _trickle_until_cut(port: int, opening: bytes, drip: bytes) -> tuple[float, bytes, int]:
    """Send ``opening`` then ``drip`` every 0.25 s until the server closes; meanwhile a normal
    client keeps asking /healthz. Returns (seconds until cut, what the server sent, normal
    requests served meanwhile)."""
    served = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(opening)
        started = time.monotonic()
        while time.monotonic() - started < 15:
            readable, _, _ = select.select([sock], [], [], 0.25)  # the drip's pace
            if readable:
                return time.monotonic() - started, _read_all(sock, 5), served
            try:
                sock.sendall(drip)
            except OSError:
                return time.monotonic() - started, b"", served
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            served += answer.status_code == 200
    raise AssertionError("the slow client was never cut off")


def test_a_slowloris_header_is_cut_off_while_others_are_served(gateway_port):
    opening = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    elapsed, sent, served = _trickle_until_cut(gateway_port, opening, b"X-Slow: 1\r\n")
    assert elapsed < HEADER_TIMEOUT_S + SLACK_S
    assert sent.startswith(b"HTTP/1.1 408 ")
    assert served >= 3  # everyone else was answered while it dripped


def test_a_slow_body_is_cut_off_while_others_are_served(gateway_port):
    opening = (
        b"POST /v1/pipelines/single/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 100000\r\n\r\n" + b"\x89PNG"
    )
    elapsed, sent, served = _trickle_until_cut(gateway_port, opening, b"\0")
    assert elapsed < BODY_TIMEOUT_S + SLACK_S
    assert sent.startswith(b"HTTP/1.1 408 ")
    assert served >= 3
