"""Pipeline metadata: what a client may submit to and what it gets back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.core.pipeline import REQUEST_PREFIX, PipelineConfig, PipelineSpec
from services.gateway.deps import Gateway, gateway, pipeline_spec, tenant
from services.gateway.schemas import Pipeline, PipelineList

router = APIRouter(prefix="/v1", tags=["pipelines"], dependencies=[Depends(tenant)])
GatewayDep = Annotated[Gateway, Depends(gateway)]


def describe(config: PipelineConfig, spec: PipelineSpec) -> dict[str, Any]:
    request_inputs = sorted(
        {
            ref[len(REQUEST_PREFIX) :]
            for node in spec.nodes.values()
            for ref in node.refs()
            if ref.startswith(REQUEST_PREFIX)
        }
    )
    return {
        "name": spec.name,
        "description": spec.description,
        "inputs": request_inputs,
        "outputs": spec.outputs,
        "output_schemas": spec.output_schemas(config.stages),
        "stages": spec.stages(),
        "nodes": [
            {
                "name": n,
                "stage": spec.nodes[n].stage,
                "inputs": spec.nodes[n].inputs,
                "params": spec.nodes[n].params,
                "model": config.stages[spec.nodes[n].stage].model,
                "model_version": config.stages[spec.nodes[n].stage].model_version,
            }
            for n in spec.order
        ],
        "edges": [(up, n) for n in spec.order for up in sorted(spec.nodes[n].upstream())],
    }


@router.get("/pipelines", response_model=PipelineList)
async def list_pipelines(gw: GatewayDep) -> dict[str, Any]:
    return {"pipelines": [describe(gw.config, s) for s in gw.config.pipelines.values()]}


@router.get("/pipelines/{name}", response_model=Pipeline)
async def get_pipeline(
    gw: GatewayDep, spec: Annotated[PipelineSpec, Depends(pipeline_spec)]
) -> dict[str, Any]:
    return describe(gw.config, spec)
