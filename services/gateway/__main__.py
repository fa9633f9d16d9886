"""``python -m services.gateway``: serve the API with uvicorn (``PORT``/``HOST`` from the env).

uvicorn runs on uvloop with the httptools parser (docs/performance.md), and with
``POSEFLEET_GATEWAY_PROCESSES`` > 1 as that many processes sharing one listening socket, each
with its own event loop, Redis pool and pub/sub subscription.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from services.core.logs import configure_logging, uvicorn_log_config
from services.core.settings import get_settings
from services.gateway.app import create_app


def serve_app() -> FastAPI:
    """The app of one gateway process (uvicorn's factory: it runs in every process)."""
    configure_logging("gateway")
    return create_app()


def main() -> None:
    configure_logging("gateway")
    settings = get_settings()
    uvicorn.run(
        "services.gateway.__main__:serve_app",
        factory=True,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8080")),
        workers=settings.gateway_processes,
        access_log=settings.gateway_access_log,
        loop="uvloop",
        http="httptools",
        log_config=uvicorn_log_config("gateway"),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
