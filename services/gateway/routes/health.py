"""Probes and metrics: /healthz (the process lives), /readyz (it can take jobs), /metrics."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from services.core.backlog import backlog_commands, record_backlog
from services.core.redis_memory import memory_command, record_memory
from services.gateway.deps import Gateway, gateway, metrics_reader

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
    except redis.RedisError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}: {exc}"
    checks["events"] = "ok" if gw.events.subscribed else "not subscribed"
    return checks["redis"] == "ok" and checks["events"] == "ok", checks


@router.get("/readyz")
async def readyz(gw: GatewayDep) -> Response:
    ready, checks = await readiness(gw)
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", dependencies=[Depends(metrics_reader)])
async def metrics(gw: GatewayDep) -> Response:
    """The gateway's own metrics plus every stage's backlog and dead letters and Redis's
    memory, read now (an operator's key needed when ``POSEFLEET_PUBLIC_METRICS=false``)."""
    pipe = gw.redis.pipeline(transaction=False)
    names = backlog_commands(pipe, gw.config.stages)
    memory_command(pipe)
    with contextlib.suppress(redis.RedisError):
        *backlog, memory = await pipe.execute()
        record_backlog(names, backlog)
        record_memory(memory)
    return Response(_exposition(), media_type=CONTENT_TYPE_LATEST)


def _exposition() -> bytes:
    """This process's metrics; with several gateway processes (POSEFLEET_GATEWAY_PROCESSES,
    prometheus_client's multiprocess mode) all of theirs added up, or a scrape would see the
    counters of whichever process answered."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
