"""Services as real processes for the fault suite, and their memory as the kernel reports it.

In-process servers would share the test's heap, so a decompression bomb's allocation could not
be told apart from the test's own; a subprocess has its own ``VmHWM`` (peak resident set).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.cli.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def memory_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS (proc(5), clear_refs 5), so
    the next peak measures what happens from now on."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_growth_mib(pid: int, since_kib: int) -> float:
    """How far the peak RSS rose above ``since_kib`` (a ``VmRSS`` read after ``reset_peak``)."""
    return (memory_kib(pid, "VmHWM") - since_kib) / 1024


@contextmanager
def service_process(
    args: list[str], env: dict[str, str], log: Path, ready_url: str | None = None
) -> Iterator[int]:
    """Run ``python -m <args>`` from the repo root with ``env`` added; wait until ``ready_url``
    answers (when given); stop it (SIGTERM, then SIGKILL) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if ready_url is not None:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, "service did not start"
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)  # poll interval while it binds
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gateway_process(redis_url: str, log: Path, **settings: str) -> Iterator[tuple[str, int]]:
    """``python -m services.gateway`` on a free loopback port; yields its base URL and pid."""
    port = free_port()
    env = {"POSEFLEET_REDIS_URL": redis_url, "PORT": str(port), "HOST": "127.0.0.1", **settings}
    base = f"http://127.0.0.1:{port}"
    with service_process(["services.gateway"], env, log, f"{base}/healthz") as pid:
        yield base, pid


@contextmanager
def control_worker_process(redis_url: str, log: Path, **settings: str) -> Iterator[int]:
    """``posefleet control-worker``; yields its pid (RQ's SimpleWorker runs batch jobs in it)."""
    env = {"POSEFLEET_REDIS_URL": redis_url, **settings}
    with service_process(["services.cli", "control-worker"], env, log) as pid:
        yield pid
