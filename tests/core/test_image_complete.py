"""The gateway's completeness check (``imaging.check_complete``): the 422 for an upload cut short
or corrupt, given without decoding a pixel — and no refusal of what decoders accept."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from services.core.imaging import (
    ImageLimits,
    UndecodableImage,
    check_complete,
    check_image,
    decode_image,
)
from services.core.settings import Settings
from tests.faults.hostile import jpeg

LIMITS = ImageLimits.of(Settings())


def png(width: int = 48, height: int = 32) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (height, width, 3), np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def complete(data: bytes) -> None:
    check_complete(data, check_image(data, LIMITS))


def jpeg_with_thumbnail() -> bytes:
    """A JPEG whose EXIF block carries a whole JPEG thumbnail (its own scan and end marker)."""
    image = Image.fromarray(np.full((64, 96, 3), 90, np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "posefleet"  # Make
    thumbnail = io.BytesIO()
    image.resize((16, 8)).save(thumbnail, "JPEG")
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes() + thumbnail.getvalue())
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [png(), jpeg(64, 48), jpeg_with_thumbnail()],
    ids=["png", "jpeg", "jpeg-with-thumbnail"],
)
def test_whole_images_pass_and_decode(data):
    complete(data)
    assert decode_image(data).size > 0


@pytest.mark.parametrize(
    "data",
    [png() + b"trailer after IEND", jpeg(64, 48) + b"\x00" * 64 + b"ftypmp42 a motion photo"],
    ids=["png-trailer", "jpeg-trailer"],
)
def test_bytes_after_the_end_are_allowed_as_decoders_allow_them(data):
    complete(data)
    assert decode_image(data).size > 0


@pytest.mark.parametrize("fraction", [0.2, 0.6, 0.99])
@pytest.mark.parametrize("make", [png, lambda: jpeg(64, 48), jpeg_with_thumbnail])
def test_cut_short_is_refused_as_the_decoder_refuses_it(make, fraction):
    data = make()
    cut = data[: int(len(data) * fraction)]
    with pytest.raises(UndecodableImage):
        complete(cut)
    with pytest.raises(UndecodableImage):
        decode_image(cut)


def test_a_corrupt_png_chunk_is_refused_by_its_crc():
    data = bytearray(png())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(UndecodableImage, match="corrupt"):
        complete(bytes(data))
