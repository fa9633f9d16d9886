"""The control worker (RQ) outlives Redis failures like the stage workers do: RQ's own loop quits
on the first Redis error, so ours starts it again after a back-off; batches submitted after
Redis came back are expanded without restarting anything."""

import io
import time
import zipfile

import httpx
import pytest
import redis

from services.cli.redis_server import free_port, start_redis
from services.core import keys
from tests.faults.fleet import fill_to_maxmemory, fleet, free_filler
from tests.gateway.conftest import png

pytestmark = [pytest.mark.faults, pytest.mark.integration]  # private Redis servers


def zip_of_pngs(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"{i:02d}.png", png(16 + i, 12))
    return buffer.getvalue()


def control_workers(client: redis.Redis) -> set[bytes]:
    """The RQ workers registered on the control queue: a new name is a new RQ work loop."""
    return client.smembers(f"rq:workers:{keys.CONTROL_QUEUE}")


def wait_for(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)  # poll interval


def submit(api: httpx.Client, pipeline: str) -> str:
    response = api.post(f"/v1/pipelines/{pipeline}/batches", content=zip_of_pngs(3))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def finished(api: httpx.Client, batch_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        view = api.get(f"/v1/batches/{batch_id}").json()
        if view["status"] in ("succeeded", "failed"):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)  # poll interval


def test_control_worker_survives_a_full_redis_and_a_restart(tmp_path):
    port = free_port()
    server = start_redis(port=port, order=("path", "embedded"))
    try:
        client = redis.Redis.from_url(server.url)
        with fleet(server.url, tmp_path) as f:
            f.worker("measure")
            f.worker("slow-measure")
            control = f.control_worker()
            api = httpx.Client(base_url=f.gateway(), timeout=30)
            wait_for(lambda: control_workers(client), 30, "control worker never registered")
            first = control_workers(client)

            # Full while a batch expands: the batch's progress writes and RQ's heartbeat meet
            # OutOfMemoryError, and RQ's own loop quits; ours must start it again.
            slow = submit(api, "slow")
            wait_for(lambda: api.get(f"/v1/batches/{slow}").json()["status"] == "running", 30, "")
            written = fill_to_maxmemory(client)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                assert control.alive, control.output()
                time.sleep(0.5)  # watch the process while Redis is full
            free_filler(client, written)
            wait_for(lambda: control_workers(client) - first, 30, "RQ's loop never restarted")
            assert control.alive, control.output()
            assert finished(api, submit(api, "single"))["status"] == "succeeded"

            client.shutdown(nosave=True)  # a restart that lost everything
            server.stop()
            time.sleep(1.0)  # down for a while, as a real restart is
            server = start_redis(port=port, order=("path", "embedded"))
            assert control.alive, control.output()
            assert finished(api, submit(api, "single"))["status"] == "succeeded"
            assert client.xlen(keys.stream("measure")) == 0
    finally:
        server.stop()
