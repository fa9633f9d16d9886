"""The job record: its states, its fields, and how the API shows it — in one module.

A job is one Redis hash (``keys.job(id)``), the single source of truth. The Lua DAG steps
(services/core/lua) write it and spell the same state names as the enums below; a test reads the
scripts and fails on any state not declared here.

States: ``queued`` (created, no node started) → ``running`` (a node started) → one of
``succeeded``, ``failed`` (a node failed for good), ``canceled`` (DELETE), ``expired`` (the
deadline passed before a node could run). Terminal states never change again, except that an
operator may replay the dead letter that failed a job (back to ``running``). Node states:
``pending`` (waiting for inputs) → ``queued`` → ``running`` → ``succeeded`` | ``failed``. All
timestamps come from the Redis clock (see services/core/lua/create.lua).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.core.pipeline import PipelineSpec


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class NodeState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED})


def is_terminal(status: str | bytes | None) -> bool:
    """Whether a status read from the record (or from a client) is final; a record that is gone
    (``None``) is final too: nothing will ever change it again."""
    if status is None:
        return True
    return (status.decode() if isinstance(status, bytes) else status) in TERMINAL


# Per-node fields of the record: inputs still awaited, state, begin count, enqueue/start/end
# times (Redis clock, ms), the batch's handler time, and which worker of which pool ran it.
NODE_FIELDS = ("wait", "status", "attempts", "enq", "start", "end", "compute_ms", "worker", "pool")


def node_field(node: str, name: str) -> str:
    return f"n:{node}:{name}"


def new_record(spec: PipelineSpec, extra: dict[str, str]) -> dict[str, str]:
    """The static fields of a new job record: its DAG copy and one input counter per node;
    create.lua adds id, status and the timestamps."""
    dag = spec.compile()
    fields = {
        "pipeline": spec.name,
        "dag": json.dumps(dag, separators=(",", ":")),
        "left": str(len(spec.nodes)),
        **extra,
    }
    for name, node in dag["nodes"].items():
        fields[node_field(name, "wait")] = str(node["wait"])
        fields[node_field(name, "status")] = NodeState.PENDING
        fields[node_field(name, "attempts")] = "0"
    return fields


def iso_ms(epoch_ms: int | str | bytes) -> str:
    return datetime.fromtimestamp(int(epoch_ms) / 1000, UTC).isoformat(timespec="milliseconds")


def job_view(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Render an HGETALL of a job hash; node outputs stay internal, the result carries them."""
    rec = {k.decode(): v for k, v in raw.items()}
    text = {k: v.decode() for k, v in rec.items() if not k.startswith("o:")}
    dag = json.loads(text["dag"])
    nodes: dict[str, Any] = {}
    for name, node in dag["nodes"].items():
        f = {key: text.get(node_field(name, key)) for key in NODE_FIELDS}
        start, enq, end, compute = f["start"], f["enq"], f["end"], f["compute_ms"]
        nodes[name] = {
            "stage": node["stage"],
            "status": f["status"] or NodeState.PENDING,
            "attempts": int(f["attempts"] or 0),
            "queue_ms": int(start) - int(enq) if start and enq else None,
            "compute_ms": float(compute) if compute else None,
            "started_at": iso_ms(start) if start else None,
            "finished_at": iso_ms(end) if end else None,
            "worker": f["worker"],
            "pool": f["pool"],
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
    if "replays" in text:  # an operator replayed a dead letter of this job (replay.lua)
        view["replays"] = [{**r, "at": iso_ms(r["at"])} for r in json.loads(text["replays"])]
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
