"""The servers Posefleet is compared with in ``make bench``, each answering ``POST /pose`` with the
people in the image, all running the same detector and pose handlers:

  naive      one FastAPI app running both handlers per request, one uvicorn process per core
             (loadtest/baselines/naive_server.py)
  ray serve  the idiomatic Ray Serve composition (loadtest/baselines/ray_serve_app.py) in its
             own venv under the cache dir, created on first use
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

from loadtest.baselines.ray_venv import RAY_ENV, ensure_ray_venv
from loadtest.stacks import ROOT
from services.cli.redis_server import free_port


@contextmanager
def http_server(
    argv: list[str],
    ready: Callable[[httpx.Response], bool],
    ready_path: str,
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> Iterator[str]:
    """Start ``argv`` and yield its base URL once GET ``ready_path`` satisfies ``ready``."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if ready(httpx.get(url + ready_path, timeout=2)):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{argv[2:4]} did not start:\n{tail}")
            time.sleep(0.5)  # poll interval while the models load
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)  # Ray Serve drains its replicas first
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def naive_server(workers: int, log: Path) -> AbstractContextManager[str]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "loadtest.baselines.naive_server:app"]
    argv += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    return http_server(argv, lambda r: r.status_code == 200, "/docs", port, log)


def ray_serve(
    cache_dir: Path, log: Path, say: Callable[[str], None]
) -> AbstractContextManager[str]:
    """Ray Serve running our handlers; raises if its venv cannot be made here (e.g. no Ray
    wheel for this Python or platform)."""
    python = ensure_ray_venv(cache_dir, lambda step, fraction=None: say(step))
    port = free_port()
    argv = [str(python), "-m", "loadtest.baselines.ray_serve_app", "--port", str(port)]
    env = {**os.environ, **RAY_ENV}
    # ray_serve_app prints its READY line once every deployment runs (the proxy's routes list
    # the ingress earlier than that)
    return http_server(
        argv, lambda _: "ray serve is up" in log.read_text(), "/-/routes", port, log, env=env
    )
