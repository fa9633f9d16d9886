"""A small synchronous client of the job API, used by every ``posefleet`` command that talks to
a gateway. Its errors are one sentence that says what to do next: which URL was tried, how to
pass a key, when to retry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from services.core.jobs import is_terminal

DEFAULT_URL = "http://127.0.0.1:8080"  # `posefleet up`'s gateway
RETRY_LIMIT_S = 300.0  # --retry gives up once Retry-After waits add up to this


class JobClientError(Exception):
    pass


class JobClient:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        retry: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(70.0))
        self._retry = retry
        self._on_wait = on_wait or (lambda _message: None)

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._http.close()

    def submit(self, pipeline: str, image: bytes, wait_s: float = 0) -> dict[str, Any]:
        headers = {"content-type": "application/octet-stream"}
        if wait_s:
            headers["prefer"] = f"wait={wait_s:g}"
        return self._json(self._request("POST", f"/v1/pipelines/{pipeline}/jobs", image, headers))

    def wait(
        self,
        job_id: str,
        timeout_s: float,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Long-poll with ``Prefer: wait`` until the job is terminal or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            step = max(0.0, min(remaining, 30.0))
            job = self._json(
                self._request("GET", f"/v1/jobs/{job_id}", None, {"prefer": f"wait={step:.1f}"})
            )
            if on_poll:
                on_poll(job)
            if is_terminal(job["status"]) or remaining <= 0:
                return job

    def submit_batch(
        self, pipeline: str, upload: bytes, frame_stride: int = 1, max_frames: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, int] = {"frame_stride": frame_stride}
        if max_frames:
            params["max_frames"] = max_frames
        path = f"/v1/pipelines/{pipeline}/batches?" + "&".join(
            f"{k}={v}" for k, v in params.items()
        )
        return self._json(
            self._request("POST", path, upload, {"content-type": "application/octet-stream"})
        )

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/v1/batches/{batch_id}", None, {}))

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        response = self._request("GET", f"/v1/batches/{batch_id}/results", None, {})
        if response.status_code >= 400:
            self._json(response)
        return [json.loads(line) for line in response.text.splitlines() if line]

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Any other JSON endpoint (the operator commands use it); None for a 204. Parameters
        that are None are left out."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        content, headers = None, {}
        if body is not None:
            content, headers = json.dumps(body).encode(), {"content-type": "application/json"}
        response = self._request(method, path, content, headers, params)
        return None if response.status_code == 204 else self._json(response)

    def get(self, path: str) -> dict[str, Any]:
        return self._json(self._request("GET", path, None, {}))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self._request("DELETE", f"/v1/jobs/{job_id}", None, {}))

    def text(self, path: str) -> str:
        response = self._request("GET", path, None, {})
        if response.status_code >= 400:
            self._json(response)
        return response.text

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A server-sent event stream as (event, data) pairs, until its ``end`` event;
        reconnects with Last-Event-ID when the stream drops before the end."""
        last_id: str | None = None
        retry_s = 2.0
        while True:
            headers = {"last-event-id": last_id} if last_id else {}
            try:
                with connect_sse(self._http, "GET", path, headers=headers) as source:
                    if source.response.status_code == 204:
                        return
                    if source.response.status_code >= 400:
                        source.response.read()
                        self._json(source.response)
                    for sse in source.iter_sse():
                        last_id = sse.id or last_id
                        retry_s = sse.retry / 1000 if sse.retry is not None else retry_s
                        if not sse.data:
                            continue
                        yield sse.event, json.loads(sse.data)
                        if sse.event == "end":
                            return
            except (httpx.HTTPError, SSEError) as exc:
                raise JobClientError(self._unreachable(f"GET {path}", exc)) from None
            time.sleep(retry_s)  # the stream closed before its end: resume as the server advised

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        waited = 0.0
        while True:
            try:
                response = self._http.request(
                    method, path, content=body, headers=headers, params=params
                )
            except httpx.HTTPError as exc:
                raise JobClientError(self._unreachable(f"{method} {path}", exc)) from None
            retry_after = _retry_after(response)
            if not (self._retry and retry_after is not None and waited < RETRY_LIMIT_S):
                return response
            self._on_wait(f"HTTP {response.status_code}: retrying in {retry_after:g} s")
            time.sleep(retry_after)  # the server's Retry-After
            waited += retry_after

    def _unreachable(self, what: str, exc: httpx.HTTPError) -> str:
        url = str(self._http.base_url).rstrip("/")
        if isinstance(exc, httpx.ConnectError):
            return (
                f"cannot reach the gateway at {url} ({what}: {exc}); start one with "
                "`posefleet up`, or point --url / POSEFLEET_URL at yours"
            )
        if isinstance(exc, httpx.TimeoutException):
            return f"the gateway at {url} did not answer in time ({what})"
        return f"{what} at {url} failed: {exc}"

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise JobClientError(problem_line(response))
        return response.json()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before retrying a 429 or 503, from its Retry-After header."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None


def problem_line(response: httpx.Response) -> str:
    """One line for an HTTP error: the server's problem detail and what to do about it."""
    try:
        problem = response.json()
        code, detail = problem.get("code", "error"), problem.get("detail", "")
    except ValueError:
        code, detail = "error", response.text[:200]
    line = f"HTTP {response.status_code} {code}: {detail}"
    if response.status_code == 401:
        return f"{line}; pass a key with --api-key KEY or POSEFLEET_API_KEY=KEY"
    if response.status_code == 403:
        return f"{line}; this needs an operator's API key (POSEFLEET_OPERATOR_TENANTS)"
    retry_after = _retry_after(response)
    if retry_after is not None:
        return f"{line} (Retry-After {retry_after:g} s); add --retry to wait and retry"
    return line
