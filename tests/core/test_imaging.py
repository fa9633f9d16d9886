"""Bounded decoding (services/core/imaging.py): sizes come from the header, every limit has its
code, and every decoder failure is an ``ImageRefused`` instead of a library exception."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from services.core.handler import TaskError
from services.core.imaging import (
    ImageLimits,
    ImageRefused,
    UndecodableImage,
    check_image,
    check_size,
    decode_image,
    read_header,
    task_pixels,
)
from services.core.settings import Settings
from tests.faults.hostile import jpeg, jpeg_claiming, png_header_only, png_zeros

LIMITS = ImageLimits.of(Settings())
LIFTED = ImageLimits(max_bytes=1 << 30, max_pixels=10**12, max_side=10**7, max_aspect=10**7)


def pillow_encoded(fmt: str, orientation: int | None = None) -> bytes:
    """A 40x20 image (white left quarter), optionally tagged with an EXIF orientation."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_zeros(30000, 30000), ("image/png", 30000, 30000)),
        (jpeg_claiming(30000, 20000), ("image/jpeg", 30000, 20000)),
        (png_header_only(7, 5), ("image/png", 7, 5)),
        (pillow_encoded("WEBP"), ("image/webp", 40, 20)),
    ],
)
def test_header_gives_type_and_size_without_decoding(data, expected):
    header = read_header(data)
    assert (header.content_type, header.width, header.height) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_turns_the_header_size_as_the_decoder_turns_the_pixels(fmt):
    data = pillow_encoded(fmt, orientation=6)  # stored 40x20, viewed 20x40
    header = read_header(data)
    assert (header.width, header.height) == (20, 40)
    assert decode_image(data).shape == (40, 20, 3)


def test_decoded_pixels_are_opencvs_in_rgb(photos):
    data = photos["astronaut"]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decode_image(data), expected)


@pytest.mark.parametrize(
    ("size", "code"),
    [
        ((8000, 7000), "image_too_many_pixels"),
        ((16385, 100), "image_side_too_long"),
        ((2100, 100), "image_aspect_too_extreme"),
        ((100, 2100), "image_aspect_too_extreme"),
    ],
)
def test_each_limit_has_its_code(size, code):
    with pytest.raises(ImageRefused) as refused:
        check_size(*size, LIMITS)
    assert refused.value.code == code


def test_sizes_within_the_limits_pass():
    for size in [(7000, 7000), (16384, 1000), (2000, 100), (1, 1)]:
        check_size(*size, LIMITS)


def test_bytes_are_checked_before_the_header():
    with pytest.raises(ImageRefused) as refused:
        check_image(jpeg(8, 8), ImageLimits(10, 100, 100, 2))
    assert refused.value.code == "image_too_large"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image",
        b"\xff\xd8\xff garbage",
        png_zeros(32, 24)[:40],  # truncated inside the header
        png_header_only(30000, 30000),  # a header and no pixels: passes only lifted limits
        jpeg_claiming(65500, 65500),  # over OpenCV's own 2^30 limit: cv2.error, not None
    ],
)
def test_every_decoder_failure_is_undecodable(data):
    with pytest.raises(UndecodableImage) as refused:
        decode_image(data, LIFTED)
    assert refused.value.code == "undecodable_image"


def test_a_worker_refuses_over_the_limits_before_decoding():
    with pytest.raises(TaskError, match="pixel limit"):
        task_pixels(png_zeros(30000, 30000))
