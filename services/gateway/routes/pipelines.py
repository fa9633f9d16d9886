"""Pipeline metadata: what a client may submit to and what it gets back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.core.pipeline import PipelineSpec
from services.gateway.deps import Gateway, gateway, pipeline_spec, tenant
from services.gateway.schemas import Pipeline, PipelineList

router = APIRouter(prefix="/v1", tags=["pipelines"], dependencies=[Depends(tenant)])
GatewayDep = Annotated[Gateway, Depends(gateway)]


@router.get("/pipelines", response_model=PipelineList)
async def list_pipelines(gw: GatewayDep) -> dict[str, Any]:
    return {"pipelines": [s.describe(gw.config.stages) for s in gw.config.pipelines.values()]}


@router.get("/pipelines/{name}", response_model=Pipeline)
async def get_pipeline(
    gw: GatewayDep, spec: Annotated[PipelineSpec, Depends(pipeline_spec)]
) -> dict[str, Any]:
    return spec.describe(gw.config.stages)
