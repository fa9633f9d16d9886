"""The gateway's HTTP edge: header limits and slow-client timeouts, which uvicorn lacks.

- **Header limits → 431.** ``HeaderLimits`` (ASGI middleware) refuses a request with more than
  ``http_max_headers`` fields or more than ``http_max_header_bytes`` of request line and headers.
  A head still incomplete past ``http_max_header_bytes`` is refused by h11 before it is buffered
  any further (``h11_max_incomplete_event_size``); uvicorn would answer that with a plain-text
  400, ``EdgeProtocol`` answers the same 431 problem+json (and any unparsable request with a
  400 problem+json).
- **Slow clients → cut off.** uvicorn only times out idle keep-alive connections: a client that
  sends its headers or body a byte at a time holds a connection forever. ``EdgeProtocol`` gives
  a request's line and headers ``http_header_timeout_s`` (from when the connection is ready for
  a request) and its body ``http_body_timeout_s`` (from the end of the headers); past either,
  the client gets 408 problem+json — unless an answer has started or nothing was sent yet —
  and the connection is closed.

``EdgeProtocol`` extends uvicorn's h11 protocol (uvicorn is pinned), reading h11's connection
state to know what the connection waits for.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.core.settings import Settings, get_settings
from services.gateway.errors import PROBLEM_JSON, Problem, problem_body, problem_response

log = logging.getLogger("posefleet.gateway.edge")


def _too_large(limit: int) -> Problem:
    detail = f"the request line and headers exceed {limit} bytes"
    return Problem(431, "headers_too_large", detail, headers={"Connection": "close"})


class HeaderLimits:
    def __init__(self, app: ASGIApp, max_headers: int, max_bytes: int) -> None:
        self.app = app
        self.max_headers = max_headers
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in headers)  # ": ", CRLF
            problem = None
            if len(headers) > self.max_headers:
                detail = f"{len(headers)} header fields; the limit is {self.max_headers}"
                problem = Problem(431, "too_many_headers", detail, headers={"Connection": "close"})
            elif size > self.max_bytes:
                problem = _too_large(self.max_bytes)
            if problem is not None:
                await problem_response(Request(scope), problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _raw_problem(problem: Problem) -> bytes:
    """A whole response written straight to the socket: for answers given outside any request
    cycle (h11 refused the request, or it never finished arriving)."""
    body = json.dumps(problem_body(problem, None)).encode()
    phrase = http.HTTPStatus(problem.status).phrase
    head = (
        f"HTTP/1.1 {problem.status} {phrase}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class EdgeProtocol(H11Protocol):
    # None: the process's settings (POSEFLEET_HTTP_*_TIMEOUT_S); edge_protocol() fixes them.
    header_timeout_s: float | None = None
    body_timeout_s: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        settings = get_settings()
        self.header_timeout_s = self.header_timeout_s or settings.http_header_timeout_s
        self.body_timeout_s = self.body_timeout_s or settings.http_body_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._phase: tuple[str | None, Any] = (None, None)
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused what arrived: an over-long head is 431, anything else 400."""
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        if len(self.conn.trailing_data[0]) > limit:
            problem = _too_large(limit)
        else:
            problem = Problem(400, "bad_http_request", f"not a valid HTTP/1.1 request: {msg}")
        self.transport.write(_raw_problem(problem))
        self.transport.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _follow(self) -> None:
        """Arm the deadline for what the connection now waits for from the client: a request's
        head (h11 IDLE) or the rest of its body (SEND_BODY); nothing otherwise."""
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        waiting = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        phase = (waiting, self.cycle)  # a new request is a new cycle
        if phase == self._phase:
            return
        self._phase = phase
        self._cancel()
        if waiting is not None:
            timeout = self.header_timeout_s if waiting == "headers" else self.body_timeout_s
            self._timer = self.loop.call_later(timeout, self._too_slow, waiting, timeout)

    def _too_slow(self, waiting: str, timeout: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if waiting == "headers":
            answer = bool(self.conn.trailing_data[0])  # silence is only an idle connection
        else:
            answer = not self.cycle.response_started
            # The app sees a disconnect, and its answer, if it still sends one, goes nowhere.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        log.warning(
            "slow client cut off",
            extra={"client": self.client, "waiting_for": waiting, "timeout_s": timeout},
        )
        if answer:
            detail = f"the request's {waiting} did not arrive within {timeout:g} s"
            self.transport.write(_raw_problem(Problem(408, "request_timeout", detail)))
        self.transport.close()


def edge_protocol(settings: Settings) -> type[EdgeProtocol]:
    class ConfiguredEdgeProtocol(EdgeProtocol):
        header_timeout_s = settings.http_header_timeout_s
        body_timeout_s = settings.http_body_timeout_s

    return ConfiguredEdgeProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What ``uvicorn.run``/``uvicorn.Config`` needs for the edge limits."""
    return {
        "http": edge_protocol(settings),
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keep_alive_s,
    }
