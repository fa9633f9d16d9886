"""What routes get injected: settings, the Redis client, the DAG steps and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from fastapi import Request

from services.core.dag import DagSteps
from services.core.pipeline import PipelineConfig, PipelineSpec
from services.core.settings import Settings
from services.gateway.errors import Problem
from services.gateway.events import JobEvents
from services.gateway.reads import SharedReads


@dataclass
class Gateway:
    settings: Settings
    config: PipelineConfig
    redis: aioredis.Redis
    steps: DagSteps
    events: JobEvents
    # RQ (the control plane) speaks only the sync client; used from the thread pool.
    sync_redis: redis.Redis
    # Job records read once per burst of requests (many waiters wake at once).
    reads: SharedReads


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def tenant(request: Request) -> str:
    """API keys map to tenants (``POSEFLEET_API_KEYS='{"key": "tenant"}'``); none configured
    means an open gateway whose callers all share the ``default`` tenant."""
    return tenant_of(
        request.app.state.gateway.settings,
        request.headers.get("authorization", ""),
        request.headers.get("x-api-key"),
    )


def tenant_of(settings: Settings, authorization: str, api_key: str | None) -> str:
    """The tenant of a caller's credentials (an ``Authorization: Bearer`` value, else an
    ``X-API-Key``), whichever protocol carried them: HTTP headers or gRPC metadata."""
    api_keys = settings.api_keys
    if not api_keys:
        return "default"
    key = authorization[7:] if authorization.lower().startswith("bearer ") else api_key
    if not key:
        raise Problem(
            401,
            "unauthenticated",
            "send an API key as 'Authorization: Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if key not in api_keys:
        raise Problem(
            401,
            "invalid_api_key",
            "the API key is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return api_keys[key]


def operator(request: Request) -> str:
    """The caller's tenant, refused with 403 unless it is an operator tenant
    (``POSEFLEET_OPERATOR_TENANTS``) or the gateway has no API keys at all."""
    caller = tenant(request)
    settings = request.app.state.gateway.settings
    if settings.api_keys and caller not in settings.operator_tenants:
        raise Problem(403, "operator_only", "this endpoint needs an operator's API key")
    return caller


def docs_reader(request: Request) -> None:
    """Guard of /docs, /redoc and /openapi.json: anyone, or any tenant's key when
    ``public_docs`` is off."""
    if not request.app.state.gateway.settings.public_docs:
        tenant(request)


def metrics_reader(request: Request) -> None:
    """Guard of the gateway's /metrics: anyone, or an operator's key when ``public_metrics``
    is off (the gauges describe the whole fleet)."""
    if not request.app.state.gateway.settings.public_metrics:
        operator(request)


def is_operator(settings: Settings, caller: str) -> bool:
    """Whether ``caller`` sees the fleet rather than only its own tenant's work."""
    return not settings.api_keys or caller in settings.operator_tenants


def pipeline_spec(name: str, request: Request) -> PipelineSpec:
    """The pipeline named in the path, or 404 listing the ones that exist."""
    pipelines = request.app.state.gateway.config.pipelines
    spec = pipelines.get(name)
    if spec is None:
        raise Problem(
            404, "pipeline_not_found", f"no pipeline '{name}' (known: {sorted(pipelines)})"
        )
    return spec
