"""The Open Inference Protocol (KServe V2, Triton's protocol): every pipeline is a model, served
over REST on the gateway's port (``rest.py``) and over gRPC on ``GRPC_PORT``
(``grpcserver.py``) — two thin adapters over the data plane, as in KServe's protocol layer.
docs/oip.md is the user's reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway.deps import Gateway
from services.gateway.v2 import grpcserver
from services.gateway.v2.models import ModelCatalog
from services.gateway.v2.rest import router

__all__ = ["router", "serving"]


@asynccontextmanager
async def serving(app: FastAPI, gw: Gateway, grpc_address: str | None) -> AsyncIterator[None]:
    """The V2 models for the REST routes, and the gRPC server when ``grpc_address`` is set
    (its bound port lands in ``app.state.grpc_port``), for the lifetime of the gateway."""
    catalog = ModelCatalog(gw.config)
    app.state.oip_models = catalog
    if grpc_address is None:
        yield
        return
    async with grpcserver.serving(gw, catalog, grpc_address) as port:
        app.state.grpc_port = port
        yield
