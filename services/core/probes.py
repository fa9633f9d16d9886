"""A worker's HTTP side: ``/metrics`` for Prometheus and ``/healthz`` for the kubelet.

Workers are not web services, so this is the standard library's threading HTTP server in a
daemon thread. ``/healthz`` fails when the worker loop has not turned for too long (stuck in
a call that never returns), which is what a liveness probe should restart.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class ProbeServer:
    def __init__(
        self,
        port: int,
        health: Callable[[], tuple[bool, dict[str, object]]],
        refresh: Callable[[], None] | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    if probe.refresh is not None:
                        probe.refresh()
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok, detail = probe.health()
                    body = json.dumps({"status": "ok" if ok else "stuck", **detail}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b'{"status": "not found"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:  # scrapes are not worth a log line
                return

        self.health = health
        self.refresh = refresh
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="probes"
        )

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
