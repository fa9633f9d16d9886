"""A small synchronous client of the job API, used by ``posefleet submit``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from services.core.jobs import is_terminal

DEFAULT_URL = "http://127.0.0.1:8080"  # `posefleet up`'s gateway


class JobClientError(Exception):
    pass


class JobClient:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(70.0))

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

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, content=body, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise JobClientError(f"{method} {self._http.base_url}{path}: {exc}") from None

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                problem = response.json()
                detail = f"{problem.get('code')}: {problem.get('detail')}"
            except ValueError:
                detail = response.text[:200]
            raise JobClientError(f"HTTP {response.status_code} {detail}")
        return response.json()
