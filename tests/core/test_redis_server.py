import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from services.core.redis_server import RedisUnavailable, embedded_binary, start_redis

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("kind", ["path", "embedded"])
def test_each_local_strategy_serves_on_a_free_port(kind):
    with start_redis(order=(kind,)) as first, start_redis(order=(kind,)) as second:
        assert first.kind == second.kind == kind
        assert first.url != second.url
        client = redis.Redis.from_url(first.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(first.url, socket_connect_timeout=0.5).ping()
    first.stop()  # idempotent


def test_embedded_binary_ships_with_the_wheel():
    binary = embedded_binary()
    assert binary and Path(binary).exists()


def test_no_usable_strategy_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RedisUnavailable, match="tried docker: no engine answered"):
        start_redis(order=("docker",))


def test_server_dies_with_its_parent(tmp_path):
    script = (
        "from services.core.redis_server import start_redis\n"
        "import os, sys, time\n"
        "server = start_redis(order=('path',))\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    redis_pid = int(child.stdout.readline())
    assert alive(redis_pid)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while alive(redis_pid):
        assert time.monotonic() < deadline, "redis outlived its SIGKILLed parent"
        time.sleep(0.05)  # poll interval
