"""Reads of a job record shared by every request that asks for it at the same time.

When a job finishes, every request waiting on it wakes at once and re-reads the record: 200
waiters meant 200 simultaneous HGETALLs of the same hash. Here a process has at most one read
of a key in flight; requests arriving meanwhile share the next read, sent when that one ends —
two reads for any burst.

Why not join the read in flight: it may have been answered before the request registered its
watcher (``JobEvents.watch``), so a job finishing in between would be seen neither in that read
nor by a notice (which came before the watcher). A shared read sent after every joiner arrived
is as fresh as a read of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any


class SharedReads:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._next: dict[str, asyncio.Future[dict[bytes, bytes]]] = {}  # not yet sent
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        future = self._next.get(key)
        if future is None:
            future = self._next[key] = asyncio.get_running_loop().create_future()
            # Retrieved here too, so a failure nobody awaits any more is not logged as lost.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            if key not in self._in_flight:
                self._send(key)
        # A request that gives up (client gone) must not cancel the read for the others.
        return await asyncio.shield(future)

    def _send(self, key: str) -> None:
        future = self._next.pop(key)
        self._in_flight.add(key)
        task = asyncio.create_task(self._read(key, future), name=f"read {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, key: str, future: asyncio.Future[dict[bytes, bytes]]) -> None:
        try:
            result = await self._client.hgetall(key)
        except asyncio.CancelledError:  # the gateway is stopping
            self._in_flight.discard(key)
            future.cancel()
            raise
        except Exception as exc:  # every sharer gets the error, e.g. a Redis error → 503
            future.set_exception(exc)
        else:
            future.set_result(result)
        self._in_flight.discard(key)
        if key in self._next:
            self._send(key)
