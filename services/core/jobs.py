"""Job records as the API shows them: one documented state machine and per-node timings.

States: ``queued`` (created, no node started) → ``running`` (a node started) → one of
``succeeded``, ``failed`` (a node failed for good), ``canceled`` (DELETE), ``expired`` (the
deadline passed before a node could run). Terminal states never change again. All timestamps
come from the Redis clock (see services/core/lua/create.lua).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "canceled", "expired")


def iso_ms(epoch_ms: int | str | bytes) -> str:
    return datetime.fromtimestamp(int(epoch_ms) / 1000, UTC).isoformat(timespec="milliseconds")


def job_view(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Render an HGETALL of a job hash; node outputs stay internal, the result carries them."""
    rec = {k.decode(): v for k, v in raw.items()}
    text = {k: v.decode() for k, v in rec.items() if not k.startswith("o:")}
    dag = json.loads(text["dag"])
    nodes: dict[str, Any] = {}
    for name in dag["nodes"]:
        p = f"n:{name}:"
        start, enq, end = text.get(p + "start"), text.get(p + "enq"), text.get(p + "end")
        compute = text.get(p + "compute_ms")
        nodes[name] = {
            "stage": dag["nodes"][name]["stage"],
            "status": text.get(p + "status", "pending"),
            "attempts": int(text.get(p + "attempts", 0)),
            "queue_ms": int(start) - int(enq) if start and enq else None,
            "compute_ms": float(compute) if compute else None,
            "started_at": iso_ms(start) if start else None,
            "finished_at": iso_ms(end) if end else None,
            "worker": text.get(p + "worker"),
            "pool": text.get(p + "pool"),
        }
    view: dict[str, Any] = {
        "id": text["id"],
        "pipeline": text["pipeline"],
        "status": text["status"],
        "created_at": iso_ms(text["created_at"]),
        "updated_at": iso_ms(text["updated_at"]),
        "image": json.loads(text["image"]) if "image" in text else None,
        "nodes": nodes,
    }
    if "result" in text:
        view["result"] = json.loads(text["result"])
    if "error" in text:
        view["error"] = json.loads(text["error"])
    if "callback" in text:
        view["webhook"] = webhook_view(text)
    return view


def webhook_view(text: dict[str, str]) -> dict[str, Any]:
    """A record's callback and its delivery (jobs and batches alike): ``pending`` until the
    receiver accepts it (``delivered``) or the attempts run out (``failed``); every attempt is
    listed. ``delivery`` is the id sent as ``Posefleet-Delivery``, known once one is queued."""
    state = json.loads(text.get("webhook", '{"state": "pending"}'))
    return {
        "url": text["callback"],
        "state": state["state"],
        "delivery": state.get("delivery"),
        "attempts": state.get("attempts", []),
    }
