"""A small fleet of real processes for the Redis fault tests: a private Redis, stage workers
(``python -m services.cli worker STAGE``) and the gateway (``python -m services.gateway``),
each logging to its own file so a hung pipe can never stall a process under test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from services.cli.local import wait_for_workers
from services.cli.redis_server import free_port
from tests.workers import TEST_PIPELINES

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Fleet:
    """Processes sharing one environment (the Redis URL, the test pipelines, fast timings)."""

    redis_url: str
    logs: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str], extra: dict[str, str]) -> Process:
        log = self.logs / f"{name}-{len(self.processes)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env={**os.environ, **self.env, **extra},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, proc, log)
        self.processes.append(process)
        return process

    def worker(self, stage: str, wait_ready: bool = True, **env: str) -> Process:
        process = self._spawn(stage, ["-m", "services.cli", "worker", stage], env)
        if wait_ready:
            wait_for_workers(self.redis_url, {stage: (stage, process.proc.pid)}, timeout_s=30)
        return process

    def control_worker(self, **env: str) -> Process:
        return self._spawn("control", ["-m", "services.cli", "control-worker"], env)

    def gateway(self, **env: str) -> str:
        port = free_port()
        process = self._spawn(
            "gateway",
            ["-m", "services.gateway"],
            {"HOST": "127.0.0.1", "PORT": str(port), **env},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.alive, process.output()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway not ready: " + process.output()
            time.sleep(0.1)  # poll interval while uvicorn starts

    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name != "gateway"]

    def stop(self) -> None:
        for process in self.processes:
            if process.alive:
                process.proc.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.proc.kill()
                process.proc.wait()


@contextmanager
def fleet(redis_url: str, logs: Path, **settings: str) -> Iterator[Fleet]:
    """``settings`` are POSEFLEET_* variables without the prefix, e.g. VISIBILITY_TIMEOUT_S."""
    env = {
        "POSEFLEET_REDIS_URL": redis_url,
        "POSEFLEET_PIPELINES_FILE": str(TEST_PIPELINES),
        "POSEFLEET_BLOCK_MS": "100",
        "POSEFLEET_METRICS_PORT": "0",
        **{f"POSEFLEET_{k.upper()}": v for k, v in settings.items()},
    }
    running = Fleet(redis_url, logs, env)
    try:
        yield running
    finally:
        running.stop()


def fill_to_maxmemory(client: redis.Redis, headroom_bytes: int = 4 * 1024 * 1024) -> int:
    """Cap Redis a few MiB above what it holds (noeviction, as the chart runs it) and write
    filler until it refuses; returns the number of filler keys written. The cap then drops
    1 MiB below the usage, so jobs finishing (their images deleted) cannot un-fill it."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used + headroom_bytes))
    written = 0
    chunk = b"f" * 64 * 1024
    while True:
        try:
            client.set(f"filler:{written}", chunk)
        except redis.exceptions.OutOfMemoryError:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", str(used - 1024 * 1024))
            return written
        written += 1


def free_filler(client: redis.Redis, written: int) -> None:
    """What an operator does: free memory (the filler) and lift the cap."""
    for start in range(0, written, 500):
        client.delete(*[f"filler:{i}" for i in range(start, min(start + 500, written))])
    client.config_set("maxmemory", "0")
