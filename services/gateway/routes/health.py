"""Probes and metrics: /healthz (the process lives), /readyz (it can take jobs), /metrics."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.core.backlog import backlog_commands, record_backlog
from services.gateway.deps import Gateway, gateway

router = APIRouter(tags=["health"])
GatewayDep = Annotated[Gateway, Depends(gateway)]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readiness(gw: Gateway) -> tuple[bool, dict[str, Any]]:
    """Whether the gateway can take jobs (Redis answers, waiters can be woken), and why; every
    protocol's readiness (/readyz, the V2 health endpoints) is this one check."""
    checks: dict[str, Any] = {"pipelines": sorted(gw.config.pipelines)}
    try:
        await gw.redis.ping()
        checks["redis"] = "ok"
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        checks["redis"] = f"unreachable: {exc}"
    checks["events"] = "ok" if gw.events.subscribed else "not subscribed"
    return checks["redis"] == "ok" and checks["events"] == "ok", checks


@router.get("/readyz")
async def readyz(gw: GatewayDep) -> Response:
    ready, checks = await readiness(gw)
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics")
async def metrics(gw: GatewayDep) -> Response:
    """The gateway's own metrics plus every stage's backlog and dead letters, read now."""
    pipe = gw.redis.pipeline(transaction=False)
    names = backlog_commands(pipe, gw.config.stages)
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
        record_backlog(names, await pipe.execute())
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
