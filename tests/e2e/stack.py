"""``posefleet up`` as a user runs it: a subprocess with its own Redis, gateway and workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.core.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def children(self) -> set[int]:
        return descendants(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


@contextmanager
def local_stack(model_root: Path, *extra: str) -> Iterator[Stack]:
    port = free_port()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "POSEFLEET_CACHE_DIR": cache, "POSEFLEET_MODEL_ROOT": str(model_root)}
        env.pop("POSEFLEET_REDIS_URL", None)
        log = Path(cache) / "up.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "up",
                    "--no-build",
                    "--port",
                    str(port),
                    *extra,
                ],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        stack = Stack(f"http://127.0.0.1:{port}", proc, log)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"posefleet up exited:\n{stack.output()}"
                if "Posefleet is up" in stack.output():  # gateway ready, workers joined
                    break
                assert time.monotonic() < deadline, f"not ready:\n{stack.output()}"
                time.sleep(0.2)  # poll interval while the stack starts
            yield stack
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
