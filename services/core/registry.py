"""The worker registry and the stage groups, kept bounded (issue 10: they only grew).

Each replica writes its record (stage, pool, started_ms, seen_ms) into ``pf:workers`` — the
hash ``GET /v1/stats`` reads for replica-hours — and its last registration time into the
sorted set ``pf:workers:seen``, so stale records are found with one range query instead of
decoding every record. In the same round trip it runs ``prune.lua``: consumers of its stage's
group with nothing pending whose process has not registered for ``dead_consumer_grace_s`` are
removed, and records not refreshed for ``worker_registry_retention_s`` are deleted. Redis 7.0
has no per-field expiry (HEXPIRE is 7.4), hence the index.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

import redis

from services.core import keys
from services.core.settings import Settings

log = logging.getLogger("posefleet.registry")


class Registry:
    def __init__(self, client: redis.Redis, stage: str, settings: Settings) -> None:
        lua = resources.files("services.core").joinpath("lua", "prune.lua").read_text()
        self._prune = client.register_script(lua)
        self.client = client
        self.stage = stage
        self.grace_ms = int(settings.dead_consumer_grace_s * 1000)
        self.retention_ms = int(settings.worker_registry_retention_s * 1000)

    def register(self, consumer: str, record: dict[str, Any]) -> None:
        """Write ``consumer``'s record and prune, in one pipelined round trip. The prune runs
        even when the write is refused (a full Redis): it only frees memory."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.WORKERS, consumer, json.dumps(record))
        pipe.zadd(keys.WORKERS_SEEN, {consumer: record["seen_ms"]})
        self._prune(
            keys=[keys.stream(self.stage), keys.WORKERS, keys.WORKERS_SEEN],
            args=[keys.group(self.stage), self.grace_ms, self.retention_ms],
            client=pipe,
        )
        replies = pipe.execute(raise_on_error=False)
        pruned = replies[-1]
        if not isinstance(pruned, Exception) and any(pruned):
            log.info(
                "pruned the registries",
                extra={"stage": self.stage, "consumers": pruned[0], "records": pruned[1]},
            )
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            raise errors[0]
