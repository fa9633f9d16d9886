"""``python -m services.gateway``: serve the API with uvicorn (``PORT``/``HOST`` from the env),
with the edge limits (header size and count, slow-client timeouts) from settings, and V2 gRPC
on ``GRPC_PORT`` (default 8081; 0 turns gRPC off) in the same process."""

from __future__ import annotations

import os

import uvicorn

from services.core.logs import configure_logging, uvicorn_log_config
from services.core.settings import get_settings
from services.gateway.app import create_app
from services.gateway.edge import uvicorn_options


def main() -> None:
    configure_logging("gateway")
    settings = get_settings()
    host = os.environ.get("HOST", "127.0.0.1")
    grpc_port = int(os.environ.get("GRPC_PORT", "8081"))
    uvicorn.run(
        create_app(settings, grpc_address=f"{host}:{grpc_port}" if grpc_port else None),
        host=host,
        port=int(os.environ.get("PORT", "8080")),
        log_config=uvicorn_log_config("gateway"),
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
