"""A submission's ``callback_url`` (jobs and batches): checked before anything is stored, so a
URL the fleet would refuse to call is a 422 at once, not a silent failure after the job ends.
The control worker checks it again at each delivery (services/control/egress.py)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from services.control.egress import CallbackRefused, check_callback
from services.control.webhooks import secret_for
from services.core.settings import Settings
from services.gateway.errors import Problem

CALLBACK_DESCRIPTION = (
    "POST the finished job or batch, signed, to this https URL (docs/webhooks.md); refused "
    "with 422 callback_not_allowed when the fleet may not call it"
)


async def check_callback_url(settings: Settings, tenant: str, url: str) -> None:
    """Raise 422 ``callback_not_allowed`` with the reason when ``url`` may not be called.
    Resolving the host blocks, so it runs in the thread pool."""
    if not secret_for(settings, tenant):
        raise Problem(
            422,
            "callback_not_allowed",
            "webhooks are not enabled for this tenant (no signing secret is configured)",
        )
    try:
        await run_in_threadpool(check_callback, url, settings)
    except CallbackRefused as exc:
        raise Problem(422, "callback_not_allowed", f"callback_url refused: {exc}") from None
