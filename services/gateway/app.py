"""The gateway's application factory: the only public entry to a Posefleet deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from services.core.dag import DagSteps
from services.core.pipeline import load_pipelines
from services.core.settings import Settings, get_settings
from services.gateway import errors, v2
from services.gateway.deps import Gateway
from services.gateway.edge import HeaderLimits
from services.gateway.events import JobEvents
from services.gateway.reads import SharedReads
from services.gateway.routes import (
    batches,
    console,
    deadletters,
    docs,
    events,
    health,
    jobs,
    pipelines,
    stats,
)
from services.gateway.store import connect


def create_app(settings: Settings | None = None, grpc_address: str | None = None) -> FastAPI:
    """The gateway; with ``grpc_address`` (host:port) it also serves V2 gRPC in its lifespan."""
    settings = settings or get_settings()
    # Loaded here, not in the lifespan: a broken pipelines file stops start-up with its message.
    config = load_pipelines(settings.pipelines_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings)
        events = JobEvents(client, settings.redis_backoff_max_s)
        await events.start()
        # Ready means waiters can be woken; if Redis is down, start anyway and report not ready.
        await events.wait_subscribed(timeout_s=2.0)
        sync_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        app.state.gateway = Gateway(
            settings, config, client, DagSteps(client), events, sync_client, SharedReads(client)
        )
        try:
            async with v2.serving(app, app.state.gateway, grpc_address):
                yield
        finally:
            await events.stop()
            await client.aclose()
            sync_client.close()

    app = FastAPI(
        title="Posefleet",
        version="0.1.0",
        summary="Durable submit/poll jobs for multi-stage computer-vision pipelines.",
        lifespan=lifespan,
        # Served by routes/docs.py instead, behind the public_docs switch.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(
        HeaderLimits,
        max_headers=settings.http_max_headers,
        max_bytes=settings.http_max_header_bytes,
    )
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(events.router)
    app.include_router(stats.router)
    app.include_router(deadletters.router)
    app.include_router(pipelines.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.include_router(v2.router)
    console.mount(app)
    return app
