"""The API's description: /openapi.json and its two viewers, /docs (Swagger UI) and /redoc.

FastAPI's own copies of these routes cannot take a dependency, so the app turns them off and
serves them here behind ``docs_reader``: public by default, any tenant's key when
``POSEFLEET_PUBLIC_DOCS=false``. (A browser sends no key when it opens /docs, so with the
switch off the viewers are for clients that add the header, e.g. through a proxy; the
description itself is ``curl -H 'Authorization: Bearer KEY' …/openapi.json``.)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from services.gateway.deps import docs_reader

OPENAPI_PATH = "/openapi.json"
router = APIRouter(include_in_schema=False, dependencies=[Depends(docs_reader)])


def _openapi_url(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/") + OPENAPI_PATH


@router.get(OPENAPI_PATH)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - Swagger UI"
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=_openapi_url(request), title=f"{request.app.title} - ReDoc")
