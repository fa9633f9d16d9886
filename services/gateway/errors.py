"""RFC 9457 problem+json for every error the gateway returns.

Routes raise ``Problem``; one handler renders it. Framework errors (unknown route, bad query)
and every Redis error are mapped here too, so a client never sees a bare 500 for what it sent
or for a store in trouble: each Redis error is a 503 with ``Retry-After`` and a code that says
which trouble — ``store_full`` (maxmemory reached), ``store_busy`` (every connection of this
gateway's pool in use) or ``store_unavailable`` (unreachable, timed out, loading, read-only
after a failover, out of client slots, any other error).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import MaxConnectionsError, OutOfMemoryError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.core.metrics import GATEWAY_STORE_ERRORS

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("posefleet.gateway.errors")


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for OpenAPI: each status documented as problem+json."""
    return {
        status: {"model": None, "description": desc, "content": {PROBLEM_JSON: {}}}
        for status, desc in descriptions.items()
    }


def problem_body(problem: Problem, instance: str | None) -> dict[str, Any]:
    body = {
        "type": f"urn:posefleet:problem:{problem.code}",
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        **problem.extra,
    }
    if instance is not None:
        body["instance"] = instance
    return body


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem_body(problem, request.url.path),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def store_problem(exc: redis.RedisError) -> Problem:
    """The 503 for a Redis error; Retry-After is how soon trying again is likely to help."""
    if isinstance(exc, OutOfMemoryError):
        code, detail, retry_s = "store_full", "the job store (Redis) is full; retry later", 10
    elif isinstance(exc, MaxConnectionsError):
        code, retry_s = "store_busy", 1
        detail = "every connection to the job store is in use; retry shortly"
    else:
        code, detail, retry_s = "store_unavailable", "the job store (Redis) is unavailable", 5
    return Problem(503, code, detail, headers={"Retry-After": str(retry_s)})


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(request, Problem(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return problem_response(
            request, Problem(400, "bad_request", "the request is malformed", errors=errors)
        )

    @app.exception_handler(redis.RedisError)
    async def _store_error(request: Request, exc: redis.RedisError) -> JSONResponse:
        problem = store_problem(exc)
        GATEWAY_STORE_ERRORS.labels(problem.code).inc()
        log.warning(
            "job store error",
            extra={
                "code": problem.code,
                "error_class": type(exc).__name__,
                "error": str(exc),
                "path": request.url.path,
            },
        )
        return problem_response(request, problem)
