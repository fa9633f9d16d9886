from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.cli.redis_server import free_port
from services.core.settings import Settings
from tests.workers import gateway_server


def png(width: int = 32, height: int = 24, trailer: bytes = b"") -> bytes:
    """A real PNG; a trailer after IEND is ignored by decoders but seen by the test stages."""
    pixels = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), np.uint8)
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes() + trailer


OIP_PIPELINES = Path(__file__).resolve().parents[1] / "data" / "pipelines-oip.yaml"


@pytest.fixture
def start_oip(redis_url) -> Iterator[Callable[..., tuple[str, str]]]:
    """Start a gateway serving V2 REST and gRPC on the model-free V2 test pipelines; keyword
    arguments override settings; returns (base URL, gRPC target)."""
    with ExitStack() as stack:

        def start(**overrides: object) -> tuple[str, str]:
            settings = Settings(
                **{"redis_url": redis_url, "pipelines_file": OIP_PIPELINES, **overrides}
            )
            target = f"127.0.0.1:{free_port()}"
            return stack.enter_context(gateway_server(settings, target)), target

        yield start
