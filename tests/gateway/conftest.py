from collections.abc import Callable, Iterator
from contextlib import ExitStack

import cv2
import numpy as np
import pytest

from services.core.settings import Settings
from tests.workers import TEST_PIPELINES, gateway_server


def png(width: int = 32, height: int = 24, trailer: bytes = b"") -> bytes:
    """A real PNG; a trailer after IEND is ignored by decoders but seen by the test stages."""
    pixels = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), np.uint8)
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes() + trailer


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
