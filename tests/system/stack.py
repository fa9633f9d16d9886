"""``posefleet up`` as a user runs it: a subprocess with its own Redis, gateway and workers."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loadtest.stacks import ROOT
from loadtest.stacks import local_stack as start_local_stack
from services.cli.redis_server import free_port

__all__ = ["ROOT", "Stack", "descendants", "local_stack"]


@dataclass
class Stack:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    grpc: str  # host:port of the V2 gRPC service

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
    """A stack on a free port with a private cache dir (its own Redis data) and the suite's
    already-built models."""
    port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as cache:
        env = {
            "POSEFLEET_CACHE_DIR": cache,
            "POSEFLEET_MODEL_ROOT": str(model_root),
            "POSEFLEET_REDIS_URL": "",
        }
        log = Path(cache) / "up.log"
        flags = ("--no-build", "--grpc-port", str(grpc_port), *extra)
        with start_local_stack(port, log, *flags, env=env) as proc:
            yield Stack(f"http://127.0.0.1:{port}", proc, log, f"127.0.0.1:{grpc_port}")
