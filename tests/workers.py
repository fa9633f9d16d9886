"""In-process workers and gateway for tests: real Redis, real HTTP, threads instead of pods."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import redis
import uvicorn

from services.cli.redis_server import free_port
from services.core.pipeline import load_pipelines
from services.core.settings import Settings
from services.core.worker import Worker, start_instances
from services.gateway.app import create_app
from services.gateway.edge import uvicorn_options

TEST_PIPELINES = Path(__file__).resolve().parent / "data" / "pipelines-test.yaml"


def make_workers(
    client: redis.Redis, stage: str, settings: Settings | None = None, **overrides: object
) -> list[Worker]:
    """A stage's workers as ``run_stage`` builds them: one per instance of the group."""
    settings = settings or Settings(block_ms=50, pipelines_file=TEST_PIPELINES)
    spec = replace(load_pipelines(settings.pipelines_file).stages[stage], **overrides)
    workers = start_instances(spec, settings, client, threading.Event())
    workers[0].stream.ensure_group()
    return workers


def make_worker(
    client: redis.Redis, stage: str, settings: Settings | None = None, **overrides: object
) -> Worker:
    return make_workers(client, stage, settings, **overrides)[0]


@contextmanager
def worker_threads() -> Iterator[Callable[[Worker], Worker]]:
    """Start worker loops in threads; stop and join them on exit."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> Worker:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    try:
        yield start
    finally:
        for worker, _ in started:
            worker.stop()
        for _, thread in started:
            thread.join(timeout=10)


@contextmanager
def gateway_server(settings: Settings, grpc_address: str | None = None) -> Iterator[str]:
    """uvicorn serving the real app on a free port, in a thread; yields its base URL. With
    ``grpc_address`` the app serves V2 gRPC there too."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, grpc_address),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(settings),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.01)  # poll interval while uvicorn binds
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
