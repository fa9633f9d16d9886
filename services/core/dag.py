"""The DAG engine's atomic steps, each one Lua script (services/core/lua/*.lua).

Each script reads and writes one job record, so it is atomic without locks: fan-out (one node
releasing several successors) and fan-in (a successor counting its finished inputs down to zero)
are counters in the job hash, and a redelivered task finds its node already done and changes
nothing. The same wrapper serves the sync client (workers) and the asyncio client (gateway):
``register_script`` returns a callable of the right kind for either, and ``client=`` lets a
caller put several steps in one pipeline (one round trip per batch).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from services.core import keys
from services.core.pipeline import PipelineSpec


def _script(name: str, *libraries: str) -> str:
    lua = resources.files("services.core").joinpath("lua")
    return "\n".join(lua.joinpath(f"{n}.lua").read_text() for n in (*libraries, name))


def job_fields(spec: PipelineSpec, extra: dict[str, str]) -> dict[str, str]:
    """The static fields of a new job record: its DAG copy and one input counter per node."""
    dag = spec.compile()
    fields = {
        "pipeline": spec.name,
        "dag": json.dumps(dag, separators=(",", ":")),
        "left": str(len(spec.nodes)),
        **extra,
    }
    for name, node in dag["nodes"].items():
        fields[f"n:{name}:wait"] = str(node["wait"])
        fields[f"n:{name}:status"] = "pending"
        fields[f"n:{name}:attempts"] = "0"
    return fields


class DagSteps:
    def __init__(self, client: Any) -> None:
        self._create = client.register_script(_script("create"))
        self._begin = client.register_script(_script("begin", "callbacks"))
        self._complete = client.register_script(_script("complete", "stats", "callbacks"))
        self._fail = client.register_script(_script("fail", "stats", "callbacks"))
        self._cancel = client.register_script(_script("cancel", "callbacks"))

    def create(
        self,
        job_id: str,
        spec: PipelineSpec,
        image: bytes,
        fields: dict[str, str],
        *,
        ttl_s: int,
        deadline_s: float,
        idempotency: tuple[str, str] | None = None,
        max_backlog: int = 0,
        client: Any = None,
    ) -> Any:
        """Returns ``[b'created', now_ms]``, ``[b'exists', stored idempotency value]`` or
        ``[b'busy', stage, depth]`` when a root stage holds ``max_backlog`` tasks already."""
        idem_key, idem_value = idempotency or ("", "")
        pairs = [x for kv in job_fields(spec, fields).items() for x in kv]
        roots = [x for n in spec.roots() for x in (n, spec.nodes[n].stage)]
        return self._create(
            keys=[keys.job(job_id), keys.blob(job_id), idem_key or keys.job(job_id)],
            args=[
                job_id,
                image,
                ttl_s,
                deadline_s,
                idem_value,
                keys.STREAM_PREFIX,
                max_backlog,
                len(pairs) // 2,
                *pairs,
                *roots,
            ],
            client=client,
        )

    def begin(
        self, job_id: str, node: str, worker: str, pool: str, max_attempts: int, client: Any = None
    ) -> Any:
        """Returns ``[b'run', attempts, queue_ms, job_age_ms, dag, *input values]`` or
        ``[reason, detail]``; the times are measured on the Redis clock."""
        return self._begin(
            keys=[keys.job(job_id), keys.blob(job_id), keys.CALLBACKS_STREAM],
            args=[node, worker, pool, max_attempts, keys.EVENTS_CHANNEL],
            client=client,
        )

    def complete(
        self,
        job_id: str,
        node: str,
        stage: str,
        entry_id: str,
        outputs: dict[str, Any],
        compute_ms: float,
        client: Any = None,
    ) -> Any:
        pairs: list[str] = []
        for field, value in outputs.items():
            pairs += [field, json.dumps(value, separators=(",", ":"), allow_nan=False)]
        return self._complete(
            keys=[
                keys.job(job_id),
                keys.blob(job_id),
                keys.stream(stage),
                keys.STATS_STREAM,
                keys.CALLBACKS_STREAM,
            ],
            args=[
                node,
                round(compute_ms, 3),
                keys.group(stage),
                entry_id,
                keys.STREAM_PREFIX,
                keys.EVENTS_CHANNEL,
                *pairs,
            ],
            client=client,
        )

    def fail(
        self,
        job_id: str,
        node: str,
        stage: str,
        entry_id: str,
        error: dict[str, Any],
        dead_letter_reason: str = "",
        client: Any = None,
    ) -> Any:
        return self._fail(
            keys=[
                keys.job(job_id),
                keys.blob(job_id),
                keys.stream(stage),
                keys.dead(stage),
                keys.STATS_STREAM,
                keys.CALLBACKS_STREAM,
            ],
            args=[
                node,
                job_id,
                keys.group(stage),
                entry_id,
                json.dumps(error),
                keys.EVENTS_CHANNEL,
                dead_letter_reason,
            ],
            client=client,
        )

    def cancel(self, job_id: str, client: Any = None) -> Any:
        return self._cancel(
            keys=[keys.job(job_id), keys.blob(job_id), keys.CALLBACKS_STREAM],
            args=[keys.EVENTS_CHANNEL],
            client=client,
        )
