"""Webhooks: POST a finished job's or batch's JSON, signed, to its callback URL, and record
every attempt on the job or batch record.

One delivery is one RQ job on the ``posefleet-webhooks`` queue. RQ retries a failed attempt
(network error, timeout, any non-2xx answer, redirects included: none is followed) after
``webhook_retry_intervals_s``, up to ``webhook_max_attempts`` in all; a URL the SSRF guard
(``egress.py``) refuses, or a tenant without a secret, fails at once, since trying again would
not change the answer. The payload is the record as the API shows it, less its ``webhook``
field, so every attempt of a delivery sends the same body.

Signature, Stripe's scheme: ``Posefleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` keyed with the tenant's secret. Receivers check it with ``verify_signature``,
reject timestamps older than their tolerance (a captured request cannot be replayed later) and
dedupe on ``Posefleet-Delivery``, which is the same on every attempt of one delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
from functools import lru_cache
from pathlib import Path

import httpx
import redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import DuplicateJobError
from rq.job import Dependency, Job

from services.control.egress import CallbackRefused, check_callback
from services.control.queue import batch_state, batch_view
from services.core import keys
from services.core.jobs import iso_ms, job_view, webhook_view
from services.core.settings import Settings, get_settings

log = logging.getLogger("posefleet.webhooks")

SIGNATURE_HEADER = "Posefleet-Signature"
DELIVERY_HEADER = "Posefleet-Delivery"
EVENT_HEADER = "Posefleet-Event"
USER_AGENT = "posefleet-webhooks/1"

# Writes a delivery's new state unless the record has expired (HSET would recreate it without
# a TTL) or a newer delivery of the same record replaced this one (a job run again).
_RECORD_ATTEMPT = """
local current = redis.call('HGET', KEYS[1], 'webhook')
if not current or cjson.decode(current).delivery ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[2])
return 1
"""


class DeliveryFailed(Exception):
    """An attempt failed in a way that may pass later; raised so that RQ retries it."""


def secret_for(settings: Settings, tenant: str) -> str:
    """The tenant's signing secret, else the fleet's; empty means webhooks are off for it."""
    secret = settings.webhook_tenant_secrets.get(tenant, settings.webhook_secret)
    return secret.get_secret_value()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Posefleet-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: float = 300) -> bool:
    """Whether ``header`` (a ``Posefleet-Signature`` value) signs exactly ``body`` with
    ``secret`` at a time no further than ``tolerance_s`` from now. Any ``v1`` entry may match,
    so a receiver keeps working while secrets rotate."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in fields if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split(",v1=", 1)[1]
    return any(
        hmac.compare_digest(expected, value.strip()) for key, value in fields if key.strip() == "v1"
    )


def webhook_queue(client: redis.Redis) -> Queue:
    return Queue(keys.WEBHOOK_QUEUE, connection=client)


def enqueue_delivery(
    client: redis.Redis,
    kind: str,
    target_id: str,
    delivery: str,
    settings: Settings,
    after: str | None = None,
) -> Job | None:
    """Queue delivery ``delivery`` of job or batch ``target_id``; with ``after``, once that
    RQ job has ended, however it ended (a batch's webhook waits for the batch). Returns None
    when the delivery is queued already (its RQ job id is derived from it)."""
    retries = settings.webhook_max_attempts - 1
    try:
        return webhook_queue(client).enqueue_call(
            deliver,
            args=(kind, target_id, delivery),
            job_id=f"webhook-{delivery}",
            unique=after is None,
            depends_on=Dependency(jobs=[after], allow_failure=True) if after else None,
            # RQ's backstop only: the attempt's own limits end it first.
            timeout=int(2 * settings.webhook_timeout_s) + 30,
            result_ttl=settings.result_ttl_s,
            failure_ttl=settings.result_ttl_s,
            retry=Retry(max=retries, interval=settings.webhook_retry_intervals_s)
            if retries
            else None,
            description=f"webhook for {kind} {target_id}",
        )
    except DuplicateJobError:
        return None


def deliver(kind: str, target_id: str, delivery: str) -> str:
    """The RQ job: one attempt of one delivery. Returns how it ended; raises
    ``DeliveryFailed`` for RQ to retry (the last attempt raises too, so RQ lists it failed)."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return _deliver(client, settings, kind, target_id, delivery)
    finally:
        client.close()


def _deliver(
    client: redis.Redis, settings: Settings, kind: str, target_id: str, delivery: str
) -> str:
    record = keys.job(target_id) if kind == "job" else keys.batch(target_id)
    raw = client.hgetall(record)
    text = {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"o:")}
    webhook = webhook_view(text) if "callback" in text else None
    if webhook is None or webhook["delivery"] != delivery or webhook["state"] != "pending":
        log.info("webhook skipped", extra={"delivery": delivery, "why": "expired or settled"})
        return "skipped"
    if kind == "job":
        payload = job_view(raw)
    else:
        payload = batch_view(target_id, text, batch_state(client, target_id))
    del payload["webhook"]
    body = json.dumps(payload, separators=(",", ":")).encode()
    secret = secret_for(settings, text["tenant"])
    started, at = time.monotonic(), time.time()
    status_code, error, retryable = _attempt(
        settings, webhook["url"], body, secret, f"{kind}.finished", delivery, at
    )
    rq_job = get_current_job()
    retries_left = (rq_job.retries_left or 0) if rq_job is not None else 0
    state = "delivered" if error is None else "pending" if retryable and retries_left else "failed"
    attempt = {
        "at": iso_ms(int(at * 1000)),
        "status_code": status_code,
        "error": error,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    stored = {"state": state, "delivery": delivery, "attempts": [*webhook["attempts"], attempt]}
    client.register_script(_RECORD_ATTEMPT)(
        keys=[record], args=[delivery, json.dumps(stored, separators=(",", ":"))]
    )
    log.info("webhook attempt", extra={"delivery": delivery, "state": state, **attempt})
    if state == "delivered" or not retryable:
        return state if retryable else "refused"
    raise DeliveryFailed(error)


def _attempt(
    settings: Settings, url: str, body: bytes, secret: str, event: str, delivery: str, at: float
) -> tuple[int | None, str | None, bool]:
    """Sign and POST ``body``: (status code, error or None, whether trying again may help)."""
    if not secret:
        return None, "refused: no signing secret is configured for this tenant", False
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery,
        SIGNATURE_HEADER: sign(secret, body, int(at)),
    }
    try:
        status_code = post(url, body, headers, settings)
    except CallbackRefused as exc:
        return None, f"refused: {exc}", False
    except httpx.TimeoutException:
        return None, f"timed out after {settings.webhook_timeout_s:g} s", True
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}", True
    if 200 <= status_code < 300:
        return status_code, None, True
    return status_code, f"the receiver answered {status_code}", True


def post(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> int:
    """One POST to the checked, pinned address: no redirects, no proxies from the environment,
    at most ``webhook_max_response_bytes`` of the raw response read. Returns the status."""
    target = check_callback(url, settings)
    deadline = time.monotonic() + settings.webhook_timeout_s
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    with (
        httpx.Client(
            verify=_tls_context(settings.webhook_ca_bundle),
            trust_env=False,
            follow_redirects=False,
            timeout=settings.webhook_timeout_s,
        ) as http,
        http.stream(
            "POST",
            target.url,
            content=body,
            headers={**headers, "Host": target.host_header},
            extensions=extensions,
        ) as response,
    ):
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read >= settings.webhook_max_response_bytes or time.monotonic() > deadline:
                break
        return response.status_code


@lru_cache(maxsize=4)
def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The public roots (certifi, as httpx uses), plus the operator's CA bundle if any."""
    context = httpx.create_ssl_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def batch_webhook_fields(batch_id: str, url: str) -> dict[str, str]:
    """A new batch record's callback fields. A batch ends once, so its one delivery is named
    after it (see ``enqueue_batch_delivery``)."""
    return {
        "callback": url,
        "webhook": json.dumps({"state": "pending", "delivery": _batch_delivery(batch_id)}),
    }


def enqueue_batch_delivery(client: redis.Redis, batch_id: str, settings: Settings) -> Job | None:
    """Queued at submit, run by RQ once the batch's RQ job has ended, succeeded or failed for
    good (after its retries): RQ enqueues a job's dependents only then."""
    return enqueue_delivery(
        client, "batch", batch_id, _batch_delivery(batch_id), settings, after=batch_id
    )


def _batch_delivery(batch_id: str) -> str:
    return f"{batch_id}-end"
