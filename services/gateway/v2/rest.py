"""The V2 REST endpoints on the gateway's port: a thin adapter over the data plane.

Errors are the spec's ``{"error": "..."}`` (plus our machine-readable ``code``) as
``application/json``, whatever raised them — the route class below catches the data plane's
Problems, Redis outages and malformed requests for every /v2 route.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from services.gateway.deps import Gateway, gateway, tenant
from services.gateway.errors import Problem
from services.gateway.routes.health import readiness
from services.gateway.routes.jobs import read_body
from services.gateway.v2 import restbody
from services.gateway.v2.errors import OIP_REQUESTS, as_problem, http_status
from services.gateway.v2.infer import infer
from services.gateway.v2.models import ModelCatalog, server_metadata


def error_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        {"error": problem.detail, "code": problem.code},
        status_code=http_status(problem),
        headers=problem.headers,
    )


class OipRoute(APIRoute):
    """Every /v2 route answers errors the V2 way (FastAPI's documented custom-route hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(Problem(400, "bad_request", str(exc.errors())))
            except Exception as exc:
                problem = as_problem(exc)
                if problem is None:
                    raise
                return error_response(problem)

        return handle


router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], route_class=OipRoute)
GatewayDep = Annotated[Gateway, Depends(gateway)]
TenantDep = Annotated[str, Depends(tenant)]


def catalog(request: Request) -> ModelCatalog:
    return request.app.state.oip_models


CatalogDep = Annotated[ModelCatalog, Depends(catalog)]


@router.get("")
async def metadata(_caller: TenantDep) -> dict[str, Any]:
    """Server metadata: name, version and the protocol extensions implemented."""
    return server_metadata()


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
async def ready(gw: GatewayDep) -> JSONResponse:
    """200 when the gateway can take inferences (Redis answers, waiters can be woken); 503
    otherwise, like /readyz."""
    is_ready, _ = await readiness(gw)
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(
    name: str, models: CatalogDep, _caller: TenantDep, version: str = ""
) -> dict[str, Any]:
    return models.get(name, version).metadata()


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(
    name: str, gw: GatewayDep, models: CatalogDep, _caller: TenantDep, version: str = ""
) -> JSONResponse:
    """A pipeline is ready when the gateway is: stages scaled to zero wake on their backlog,
    so a pipeline without a running worker still takes (and finishes) inferences."""
    model = models.get(name, version)
    is_ready, _ = await readiness(gw)
    return JSONResponse(
        {"name": model.name, "ready": is_ready}, status_code=200 if is_ready else 503
    )


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_config(
    name: str, models: CatalogDep, _caller: TenantDep, version: str = ""
) -> dict[str, Any]:
    """Triton's model configuration extension (read-only subset), which perf_analyzer reads."""
    return models.get(name, version).config()


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def model_infer(
    name: str,
    request: Request,
    gw: GatewayDep,
    models: CatalogDep,
    caller: TenantDep,
    version: str = "",
) -> Response:
    """Inference: every image of the BYTES input ``image`` becomes a job; see docs/oip.md."""
    outcome = "ok"
    try:
        body = await read_body(request, gw.settings.oip_max_request_bytes, "request")
        call = restbody.parse(
            body,
            request.headers.get(restbody.HEADER_LENGTH),
            name,
            version,
            request.headers.get("idempotency-key"),
        )
        return restbody.render(call, await infer(gw, models, call.request, caller))
    except Exception as exc:
        problem = as_problem(exc)
        outcome = problem.code if problem else "internal"
        raise
    finally:
        OIP_REQUESTS.labels("rest", models.label(name), outcome).inc()


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown(rest: str) -> Response:
    raise Problem(404, "not_found", f"no V2 endpoint '/v2/{rest}' (see docs/oip.md)")
