"""The Redis fixture's testcontainers path, for real: the locally built Redis image on the
private engine (no registry, no Ryuk reaper), through the same launcher `posefleet up` uses."""

from __future__ import annotations

import pytest
import redis

from services.cli.redis_server import start_redis
from tools.containers.images import REDIS_TAG

pytestmark = pytest.mark.deploy


def test_redis_from_the_local_image_through_testcontainers(images):
    with start_redis(order=("docker",), docker_image=REDIS_TAG, appendonly=True) as server:
        assert server.kind == "docker" and server.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(server.url)
        assert client.ping() and client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.info("server")["redis_version"].startswith("7.")
        client.close()


def test_the_session_fixture_uses_the_engine_when_it_is_up(images, redis_server):
    assert redis_server.kind == "docker"
