"""``python -m services.gateway``: serve the API with uvicorn (``PORT``/``HOST`` from the env),
V2 gRPC on ``GRPC_PORT`` (default 8081; 0 turns gRPC off), and the edge limits (header size and
count, slow-client timeouts) from settings.

uvicorn runs on uvloop (docs/performance.md), with ``POSEFLEET_GATEWAY_PROCESSES`` > 1 as that
many processes sharing one listening socket (and, with SO_REUSEPORT, the gRPC port), each with
its own event loop, Redis pool and pub/sub subscription, whose metrics /metrics adds up. The
HTTP parser stays h11: the slow-client deadlines and the 431 for an over-long head are built on
its connection states (services/gateway/edge.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn
from fastapi import FastAPI

from services.core.logs import configure_logging, uvicorn_log_config
from services.core.settings import Settings, get_settings
from services.gateway.app import create_app
from services.gateway.edge import EdgeProtocol, uvicorn_options


def grpc_address() -> str | None:
    port = int(os.environ.get("GRPC_PORT", "8081"))
    return f"{os.environ.get('HOST', '127.0.0.1')}:{port}" if port else None


def serve_app() -> FastAPI:
    """The app of one gateway process (uvicorn's factory: it runs in every process)."""
    configure_logging("gateway")
    return create_app(grpc_address=grpc_address())


def main() -> None:
    configure_logging("gateway")
    settings = get_settings()
    own_metrics_dir = None
    if settings.gateway_processes > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus_client's multiprocess mode: each process writes its metrics under this
        # directory and /metrics adds them up (routes/health.py); set before the processes start
        own_metrics_dir = tempfile.mkdtemp(prefix="posefleet-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    try:
        serve(settings)
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
        if settings.gateway_processes > 1:
            stop_resource_tracker()


def stop_resource_tracker() -> None:
    """uvicorn's processes are spawned by multiprocessing, which starts a resource tracker that
    ignores SIGTERM and exits only when it sees this process gone: stop and reap it now, so a
    stopped gateway leaves no process behind (a supervisor checks for exactly that).
    ``_stop`` is the standard library's own shutdown of it (CPython 3.8+)."""
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def serve(settings: Settings) -> None:
    uvicorn.run(
        "services.gateway.__main__:serve_app",
        factory=True,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        workers=settings.gateway_processes,
        access_log=settings.gateway_access_log,
        loop="uvloop",
        log_config=uvicorn_log_config("gateway"),
        timeout_graceful_shutdown=10,
        # A module-level protocol class: uvicorn's worker processes receive the config pickled.
        **{**uvicorn_options(settings), "http": EdgeProtocol},
    )


if __name__ == "__main__":
    main()
