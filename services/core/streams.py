"""One stage's Redis stream seen by one consumer: read, top up, reclaim, keep alive.

At-least-once delivery comes from the consumer group's pending list: an entry stays pending
until the DAG step that finishes its task acks (and deletes) it, and entries left pending by a
dead consumer past the visibility timeout are taken over with XAUTOCLAIM. Acked entries are
deleted, so the stream's length is exactly the stage's backlog (waiting + in flight).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from services.core import keys


@dataclass(frozen=True, slots=True)
class Delivery:
    entry_id: str
    job_id: str
    node: str


def _deliveries(entries: list) -> list[Delivery]:
    out = []
    for entry_id, fields in entries:
        if fields is None:  # deleted while pending (job gone); nothing to do but drop it
            continue
        out.append(Delivery(_s(entry_id), _s(fields[b"job"]), _s(fields[b"node"])))
    return out


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StageStream:
    def __init__(self, client: redis.Redis, stage: str, consumer: str) -> None:
        self.client = client
        self.stage = stage
        self.consumer = consumer
        self.stream = keys.stream(stage)
        self.group = keys.group(stage)

    def ensure_group(self) -> None:
        """Create the group from the start of the stream, so tasks queued before any worker
        existed are not skipped, and register this consumer at once: a reader that has not yet
        received anything would otherwise be invisible to XINFO CONSUMERS."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.client.xgroup_createconsumer(self.stream, self.group, self.consumer)

    def read(self, count: int, block_ms: int | None) -> list[Delivery]:
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return _deliveries(reply[0][1]) if reply else []

    def claim_stale(self, min_idle_ms: int, count: int) -> list[Delivery]:
        _cursor, entries, *_deleted = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id="0-0",
            count=count,
        )
        return _deliveries(entries)

    def touch(self, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still being worked on, so a batch that runs longer
        than the visibility timeout is not taken over by another worker."""
        if entry_ids:
            self.client.xclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=0,
                message_ids=entry_ids,
                justid=True,
            )

    def ack(self, entry_ids: list[str], pipe: Any = None) -> None:
        """Ack and delete; with ``pipe`` the commands join the caller's pipeline instead."""
        if not entry_ids:
            return
        own = pipe is None
        pipe = self.client.pipeline(transaction=True) if own else pipe
        pipe.xack(self.stream, self.group, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)
        if own:
            pipe.execute()

    def backlog(self) -> int:
        return int(self.client.xlen(self.stream))
