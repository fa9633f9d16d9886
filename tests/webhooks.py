"""What the webhook tests share: a real HTTP receiver on 127.0.0.1, a hosts file the test
controls, and the real control worker (``posefleet control-worker``) as a process.

The hosts file is how a test makes a name resolve where it wants, and change it between submit
and delivery (DNS rebinding): ``install_hosts`` patches ``socket.getaddrinfo`` so the names in a
JSON file resolve to their listed addresses and every other name as usual. The test process
installs it for its in-process gateway; the control worker gets it at start-up through
``python -c``. No resolver hook exists in the services themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
from rq import Worker

from services.core import keys
from tests.clirun import ROOT

SECRET = "whsec-test-0123456789"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request was read


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0  # a body of this many zero bytes, written in 64 KiB chunks
    hold: threading.Event | None = None  # answer only once this is set (a hung receiver)


class Receiver:
    """Answers each POST with the next scripted ``Reply`` (the last one repeats) and records
    every request; ``sent_bytes`` counts the body bytes the socket accepted."""

    def __init__(self, replies: list[Reply] | None = None, tls: ssl.SSLContext | None = None):
        self.replies = list(replies or [Reply()])
        self.received: list[Received] = []
        self.sent_bytes = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._changed:
                    reply = receiver.replies[min(len(receiver.received), len(receiver.replies) - 1)]
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                    receiver._changed.notify_all()
                if reply.hold is not None:
                    reply.hold.wait(timeout=60)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(reply.body_bytes))
                self.end_headers()
                chunk = b"\0" * 65536
                left = reply.body_bytes
                try:
                    while left > 0:
                        self.wfile.write(chunk[: min(left, len(chunk))])
                        receiver.sent_bytes += min(left, len(chunk))
                        left -= len(chunk)
                except OSError:
                    pass  # the client closed the connection: what a capped reader does

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_for(self, count: int, timeout_s: float = 30) -> list[Received]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout_s):
                raise AssertionError(f"{len(self.received)} of {count} requests in {timeout_s}s")
            return list(self.received)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def hosts_resolver(path: Path) -> Callable[..., Any]:
    """A ``socket.getaddrinfo`` that consults ``path`` (JSON: name -> [addresses]) first. The
    file is read on every lookup, so a test can change what a name resolves to; a name given
    ``{"rotate": [[addresses], ...]}`` answers each lookup with the next list (in this process),
    as a rebinding DNS server does."""
    real = socket.getaddrinfo
    lookups: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        listed = json.loads(path.read_text()).get(name)
        if listed is None:
            return real(host, port, *args, **kwargs)
        if isinstance(listed, dict):
            lookups[name] = lookups.get(name, -1) + 1
            listed = listed["rotate"][lookups[name] % len(listed["rotate"])]
        if not listed:  # listed with no address: the name does not exist
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port or 0), 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
            for a in listed
        ]

    return getaddrinfo


def install_hosts(path: str) -> None:
    """For the control worker's process, before anything resolves."""
    socket.getaddrinfo = hosts_resolver(Path(path))


def webhook_env(redis_url: str, pipelines: Path, **settings: Any) -> dict[str, str]:
    """POSEFLEET_* variables for a control worker; lists and dicts as JSON, as pydantic reads."""
    values = {
        "redis_url": redis_url,
        "pipelines_file": str(pipelines),
        "webhook_secret": SECRET,
        "webhook_retry_intervals_s": [1],
        "webhook_max_attempts": 3,
        **settings,
    }
    return {
        f"POSEFLEET_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
        for k, v in values.items()
    }


@contextmanager
def control_worker(env: dict[str, str], hosts: Path | None = None) -> Iterator[subprocess.Popen]:
    """``posefleet control-worker`` as a process, started and ready (its RQ workers and its
    relay's consumer group registered); SIGTERM on exit, which it must survive with exit 0.
    Its logs go to a file: a pipe nobody reads would fill and block its threads."""
    code = "from services.cli.main import main; main()"
    if hosts is not None:
        code = f"from tests.webhooks import install_hosts; install_hosts({str(hosts)!r}); {code}"
    client = redis.Redis.from_url(env["POSEFLEET_REDIS_URL"])
    expected = 1 + int(env.get("POSEFLEET_WEBHOOK_WORKERS", "4"))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "control-worker"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        deadline = time.monotonic() + 30
        try:
            while Worker.count(connection=client) < expected or not client.exists(
                keys.CALLBACKS_STREAM
            ):
                assert proc.poll() is None, output()
                assert time.monotonic() < deadline, "the control worker did not get ready"
                time.sleep(0.05)  # poll interval while the process starts
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            client.close()
        assert proc.returncode == 0, output()


def wait_webhook(api: Any, path: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
    """Poll a job or batch until its webhook reaches ``state``."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = api.get(path).json()
        if view.get("webhook", {}).get("state") == state:
            return view
        assert time.monotonic() < deadline, view.get("webhook")
        time.sleep(0.05)  # a client polling the record
