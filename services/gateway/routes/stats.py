"""``GET /v1/stats``: what the fleet — or the caller's tenant — did over a recent window, and
what it cost."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.gateway.deps import Gateway, gateway, is_operator, tenant
from services.gateway.errors import Problem
from services.gateway.stats import parse_window, read_stats

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get("/stats")
async def stats(
    gw: Annotated[Gateway, Depends(gateway)],
    caller: Annotated[str, Depends(tenant)],
    window: Annotated[str, Query(description="30s, 5m, 1h … up to 24h")] = "5m",
) -> dict[str, Any]:
    """Throughput per pipeline and stage, latency percentiles end to end and per node, replica
    time per node pool and cost per 1000 images (per pipeline and per pool) in the window.
    An operator's key (or an open gateway) sees the fleet; any other key sees only its
    tenant's jobs and its share of each pool's cost (``scope`` says which)."""
    try:
        seconds = parse_window(window)
    except ValueError as exc:
        raise Problem(400, "bad_window", str(exc)) from None
    scope = None if is_operator(gw.settings, caller) else caller
    return await read_stats(gw.redis, seconds, gw.settings.pool_hourly_cost, scope)
