"""How the data plane's Problems reach V2 clients: the spec's ``{"error": "..."}`` with an HTTP
status over REST, a status code over gRPC, and one counter of V2 requests by outcome.

HTTP statuses are the job API's, except that what the job API answers with 415 or 422 (the
image is not a JPEG/PNG/WebP, cannot be decoded, has too many pixels) is a 400 here: in V2 the
request is a JSON or protobuf message, and the image is just one of its tensors.
"""

from __future__ import annotations

import grpc
import redis
from prometheus_client import Counter

from services.gateway.errors import Problem

OIP_REQUESTS = Counter(
    "posefleet_oip_requests_total",
    "Open Inference Protocol (V2) inference requests by protocol, model and outcome "
    "(ok or the error code)",
    ["protocol", "model", "outcome"],
)

_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Codes whose status alone would say the wrong thing over gRPC.
_GRPC_BY_CODE = {"job_canceled": grpc.StatusCode.ABORTED}


def http_status(problem: Problem) -> int:
    return 400 if problem.status in (415, 422) else problem.status


def grpc_code(problem: Problem) -> grpc.StatusCode:
    return _GRPC_BY_CODE.get(problem.code) or _GRPC_CODES.get(
        http_status(problem), grpc.StatusCode.INTERNAL
    )


def as_problem(exc: Exception) -> Problem | None:
    """The Problem an exception stands for, or None for a bug (let it surface as a 500)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Problem(
            503,
            "store_unavailable",
            "the job store (Redis) is unreachable; retry later",
            headers={"Retry-After": "5"},
        )
    return None
