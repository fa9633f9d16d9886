"""The V2 gRPC service (``inference.GRPCInferenceService``) inside the gateway process: grpcio's
asyncio server runs on the gateway's event loop, so it shares the data plane, the Redis pool and
the job-completion subscription with the REST routes.

Credentials come from the call's metadata (``authorization: Bearer KEY``, or ``x-api-key``),
an idempotency key from ``idempotency-key``, the time budget from the call's deadline (or
Triton's ``timeout`` parameter). Errors are status codes: INVALID_ARGUMENT, UNAUTHENTICATED,
NOT_FOUND, RESOURCE_EXHAUSTED (with ``retry-after`` trailing metadata), UNAVAILABLE,
DEADLINE_EXCEEDED, ABORTED, INTERNAL. The standard grpc.health.v1 service answers for
Kubernetes' gRPC probes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.gateway.deps import Gateway, tenant_of
from services.gateway.errors import Problem
from services.gateway.routes.health import readiness
from services.gateway.v2.errors import OIP_REQUESTS, as_problem, grpc_code
from services.gateway.v2.infer import (
    InferRequest,
    InferResponse,
    InputTensor,
    infer,
    timeout_parameter,
)
from services.gateway.v2.models import VERSION, ModelCatalog, server_metadata
from services.gateway.v2.proto import grpc_predict_v2_pb2 as pb
from services.gateway.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from services.gateway.v2.wire import deserialize_bytes

log = logging.getLogger("posefleet.gateway.v2")
SERVICE = "inference.GRPCInferenceService"
Reply = TypeVar("Reply")


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, gw: Gateway, catalog: ModelCatalog) -> None:
        self.gw, self.catalog = gw, catalog

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        ready, _ = await readiness(self.gw)
        return pb.ServerReadyResponse(ready=ready)

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        async def ready(_caller: str) -> pb.ModelReadyResponse:
            if request.name not in self.catalog.models or request.version not in ("", VERSION):
                return pb.ModelReadyResponse(ready=False)  # like Triton: not ready, no error
            is_ready, _ = await readiness(self.gw)
            return pb.ModelReadyResponse(ready=is_ready)

        return await self._call(context, ready)

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        async def metadata(_caller: str) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**server_metadata())

        return await self._call(context, metadata)

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        async def metadata(_caller: str) -> pb.ModelMetadataResponse:
            doc = self.catalog.get(request.name, request.version).metadata()
            return pb.ModelMetadataResponse(
                name=doc["name"],
                versions=doc["versions"],
                platform=doc["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["outputs"]],
            )

        return await self._call(context, metadata)

    async def ModelConfig(self, request: Any, context: Any) -> pb.ModelConfigResponse:
        async def config(_caller: str) -> pb.ModelConfigResponse:
            doc = self.catalog.get(request.name, request.version).config()
            return pb.ModelConfigResponse(
                config=pb.ModelConfig(
                    name=doc["name"],
                    platform=doc["platform"],
                    max_batch_size=doc["max_batch_size"],
                    input=[pb.ModelInput(**t) for t in doc["input"]],
                    output=[pb.ModelOutput(**t) for t in doc["output"]],
                )
            )

        return await self._call(context, config)

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        raw = len(request.raw_input_contents) > 0

        async def run(caller: str) -> pb.ModelInferResponse:
            call = _infer_request(request, context)
            return _reply(await infer(self.gw, self.catalog, call, caller), raw)

        return await self._call(context, run, counted=request.model_name)

    def _caller(self, context: Any) -> str:
        metadata = dict(context.invocation_metadata() or ())
        return tenant_of(
            self.gw.settings, metadata.get("authorization", ""), metadata.get("x-api-key")
        )

    async def _call(
        self, context: Any, work: Callable[[str], Awaitable[Reply]], counted: str | None = None
    ) -> Reply:
        """Authenticate, run ``work`` for the caller's tenant, and turn a Problem or a Redis
        outage into a status code; an inference (``counted`` = its model) is counted by
        outcome."""
        outcome = "ok"
        try:
            return await work(self._caller(context))
        except Exception as exc:
            problem = as_problem(exc)
            outcome = problem.code if problem else "internal"
            if problem is None:
                log.exception("V2 gRPC call failed")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the logs")
                raise
            retry = problem.headers.get("Retry-After")
            if retry is not None:
                context.set_trailing_metadata((("retry-after", retry),))
            await context.abort(grpc_code(problem), f"{problem.code}: {problem.detail}")
            raise
        finally:
            if counted is not None:
                OIP_REQUESTS.labels("grpc", self.catalog.label(counted), outcome).inc()


def _infer_request(request: Any, context: Any) -> InferRequest:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise Problem(
            400,
            "bad_request",
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input",
        )
    inputs = []
    for position, tensor in enumerate(request.inputs):
        if raw:
            values = deserialize_bytes(raw[position], f"input '{tensor.name}'")
        else:
            values = list(tensor.contents.bytes_contents)
        inputs.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), values))
    params = {k: _parameter(v) for k, v in request.parameters.items()}
    remaining = context.time_remaining()
    budget = timeout_parameter(params)
    if remaining is not None:
        budget = remaining if budget is None else min(budget, remaining)
    metadata = dict(context.invocation_metadata() or ())
    return InferRequest(
        model=request.model_name,
        version=request.model_version,
        id=request.id,
        inputs=inputs,
        outputs=[o.name for o in request.outputs],
        timeout_s=budget,
        idempotency_key=metadata.get("idempotency-key"),
    )


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return None if kind is None else getattr(value, kind)


def _reply(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    """Raw contents when the request sent raw ones (Triton's clients always do), typed
    contents otherwise — KServe's server answers the same way."""
    reply = pb.ModelInferResponse(
        model_name=response.model,
        model_version=response.version,
        id=response.id,
        parameters={"job_ids": pb.InferParameter(string_param=",".join(response.job_ids))},
    )
    for tensor in response.tensors:
        out = reply.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            reply.raw_output_contents.append(tensor.raw())
        elif isinstance(tensor.values, list):
            out.contents.bytes_contents.extend(tensor.values)
        elif tensor.datatype == "FP32":
            out.contents.fp32_contents.extend(tensor.values.ravel().tolist())
        elif tensor.datatype == "INT64":
            out.contents.int64_contents.extend(tensor.values.ravel().tolist())
        else:
            out.contents.int_contents.extend(tensor.values.ravel().tolist())
    return reply


@asynccontextmanager
async def serving(gw: Gateway, catalog: ModelCatalog, address: str) -> AsyncIterator[int]:
    """Serve V2 gRPC on ``address`` (host:port) until the block ends; yields the bound port.
    SO_REUSEPORT is off for a single gateway process, so a port another process holds is an
    error, not a shared socket; with ``gateway_processes`` > 1 it is on, so the gateway's
    processes share the port and the kernel spreads connections across them."""
    shared = gw.settings.gateway_processes > 1
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", int(shared)),
            ("grpc.max_receive_message_length", gw.settings.oip_max_request_bytes),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(gw, catalog), server)
    probes = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(probes, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot serve gRPC on {address} ({exc}); set GRPC_PORT to a free port (0 = off)"
        ) from None
    await server.start()
    for name in ("", SERVICE):
        await probes.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving V2 gRPC", extra={"address": address, "port": port})
    try:
        yield port
    finally:
        await probes.enter_graceful_shutdown()
        await server.stop(grace=5)
