"""Start the local stack (``posefleet up``) as a subprocess and wait until it is fully up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.cli.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
READY_MARK = "Posefleet is up"  # printed once the gateway is ready and every worker joined


@contextmanager
def local_stack(
    port: int,
    log: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
    root: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Yield the running ``posefleet up`` process, run from the checkout at ``root`` (with its
    own .venv when it has one); SIGINT (Ctrl-C) it on exit."""
    own = root / ".venv" / "bin" / "python"
    python = str(own) if root != ROOT and own.exists() else sys.executable
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [python, "-m", "services.cli", "up", "--port", str(port), *extra],
            cwd=root,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while READY_MARK not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "posefleet up did not come up:\n" + log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)  # poll interval while the stack starts
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def posefleet_stack(tmp: str, name: str, **env: str) -> Iterator[str]:
    """``posefleet up`` with its own Redis under ``tmp``; yields the base URL."""
    port = free_port()
    stack_env = {"POSEFLEET_CACHE_DIR": tmp, "POSEFLEET_REDIS_URL": "", **env}
    with local_stack(port, Path(tmp) / f"{name}.log", "--no-build", env=stack_env):
        yield f"http://127.0.0.1:{port}"
