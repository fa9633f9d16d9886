import cv2
import numpy as np


def png(width: int = 32, height: int = 24, trailer: bytes = b"") -> bytes:
    """A real PNG; a trailer after IEND is ignored by decoders but seen by the test stages."""
    pixels = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), np.uint8)
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return buf.tobytes() + trailer
