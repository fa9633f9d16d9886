"""The gateway's Redis client: a bounded pool whose requests wait for a free connection.

redis-py's asyncio default is a pool of 100 connections that fails the 101st concurrent
command at once with a ConnectionError — 200 clients waiting on one job got 101 answers of
"Redis unreachable". Here the pool is ``redis_max_connections`` large and a command waits up to
``redis_pool_timeout_s`` for a connection; only then does it fail, as ``MaxConnectionsError``
(redis-py's own class for an exhausted pool, a ConnectionError subclass), which the gateway
answers with 503 ``store_busy`` rather than ``store_unavailable``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, MaxConnectionsError

from services.core.settings import Settings


class WaitingPool(aioredis.BlockingConnectionPool):
    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)
        except ConnectionError as exc:
            # The wait for a free connection timed out (redis-py chains the TimeoutError);
            # a failure to connect is left as it is.
            if isinstance(exc.__cause__, TimeoutError):
                raise MaxConnectionsError(
                    f"no free connection within {self.timeout} s (pool of {self.max_connections})"
                ) from exc
            raise


def connect(settings: Settings) -> aioredis.Redis:
    pool = WaitingPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
        socket_connect_timeout=2,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)
