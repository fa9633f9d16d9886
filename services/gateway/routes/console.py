"""The web console: static files served by the gateway at ``/console/`` (``/`` redirects there).

The files are plain ES modules, CSS and SVG inside the package (no build step, no CDN, no
external fonts), so the console works air-gapped and ships in the gateway image with the code.
They hold no secrets and are served without authentication; every call they make goes through
the public API with the user's key, like any other client. The Content-Security-Policy allows
only this origin, so the page cannot load (or leak to) anything else.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

CONSOLE_DIR = Path(str(resources.files("services.gateway") / "console"))
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Revalidate each load, so a gateway upgrade never runs with a stale module.
    "cache-control": "no-cache",
}

router = APIRouter(include_in_schema=False)


class ConsoleFiles(StaticFiles):
    """StaticFiles plus the security headers above on every response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_headers)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
