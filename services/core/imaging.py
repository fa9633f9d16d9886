"""Image sniffing, header checks and decoding shared by the gateway (validation), the stage
workers (pixels) and batch expansion (frames).

Every decode is bounded: the format and size are read from the image's HEADER (Pillow's lazy
``Image.open`` parses the header and stops before the pixel data) and checked against the
limits of docs/limits.md — bytes, pixel count, longest side, aspect ratio — before any decoder
allocates a frame. A 110 KB PNG can claim 30000x30000 pixels (2.5 GiB decoded); a 17 KB JPEG
can be 1x65500, which stages that resize the shorter side blow up to gigabytes.

Decoding itself goes through OpenCV, which applies the EXIF orientation, so every stage and
every coordinate we return lives in the image as a person would view it. Any decoder failure
(``cv2.error``, a truncated file, a header Pillow cannot parse) is the image's own fault and
becomes an ``ImageRefused`` with a stable code.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import ExifTags, Image

from services.core.handler import Task, TaskError
from services.core.settings import Settings, get_settings

# Our own limits replace Pillow's process-wide decompression-bomb guard, which raises from
# ``Image.open`` above 2x its own default pixel count (179 Mpx), before we could read the size
# and answer with our code and our configured limit. Pillow never decodes pixels here.
Image.MAX_IMAGE_PIXELS = None

# Magic numbers of the formats we accept; a Content-Type header alone proves nothing.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
)
# The one Pillow plugin allowed to parse each sniffed type.
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# EXIF orientations that turn the stored image a quarter turn (its width becomes the height).
_QUARTER_TURNS = {5, 6, 7, 8}


def sniff_image_type(data: bytes) -> str | None:
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (
            mime != "image/webp" or data[:4] == b"RIFF"
        ):
            return mime
    return None


class ImageRefused(ValueError):
    """An image we will not decode, with the stable ``code`` a client sees (docs/limits.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UndecodableImage(ImageRefused):
    def __init__(self, message: str = "the image data could not be decoded") -> None:
        super().__init__("undecodable_image", message)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an image may cost before it is decoded (settings of docs/limits.md)."""

    max_bytes: int
    max_pixels: int
    max_side: int
    max_aspect: float

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(
            settings.max_image_bytes,
            settings.max_image_pixels,
            settings.max_image_side,
            settings.max_image_aspect,
        )


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the header says: the sniffed type and the size as a person views the image (EXIF
    orientation applied, as the decoder will)."""

    content_type: str
    width: int
    height: int


def read_header(data: bytes) -> ImageHeader:
    """The image's type and size from its header alone; no pixel data is decoded."""
    mime = sniff_image_type(data)
    if mime is None:
        raise UndecodableImage("the data could not be decoded: it is not a JPEG, PNG or WebP image")
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[mime]]) as image:
            width, height = image.size
            exif = image.info.get("exif")
    except Exception as exc:  # a parser on untrusted bytes: any failure is the image's fault
        raise UndecodableImage(
            f"the {mime} image could not be decoded: its header is unreadable"
        ) from exc
    if width < 1 or height < 1:
        raise UndecodableImage(f"the {mime} image could not be decoded: it is {width}x{height}")
    if _orientation(exif) in _QUARTER_TURNS:
        width, height = height, width
    return ImageHeader(mime, width, height)


def _orientation(exif: bytes | None) -> int:
    """The EXIF orientation tag (1 = as stored); an unreadable EXIF block counts as absent, as
    it does for the decoder."""
    if not exif:
        return 1
    try:
        tags = Image.Exif()
        tags.load(exif)
        return int(tags.get(ExifTags.Base.Orientation, 1))
    except Exception:  # malformed EXIF: the decoder ignores it too
        return 1


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse a size that would be too costly to decode or to prepare for a model."""
    size = f"{width}x{height}"
    if width * height > limits.max_pixels:
        raise ImageRefused(
            "image_too_many_pixels", f"{size} exceeds the {limits.max_pixels}-pixel limit"
        )
    if max(width, height) > limits.max_side:
        raise ImageRefused(
            "image_side_too_long", f"{size} has a side over the {limits.max_side}-pixel limit"
        )
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ImageRefused(
            "image_aspect_too_extreme",
            f"{size} is more elongated than the {limits.max_aspect:g}:1 aspect-ratio limit",
        )


def check_image(data: bytes, limits: ImageLimits) -> ImageHeader:
    """Refuse what would be too costly to decode, from the bytes and the header only."""
    if len(data) > limits.max_bytes:
        raise ImageRefused(
            "image_too_large", f"{len(data)} bytes exceed the {limits.max_bytes}-byte limit"
        )
    header = read_header(data)
    check_size(header.width, header.height, limits)
    return header


def check_complete(data: bytes, header: ImageHeader) -> None:
    """Refuse an image whose data is cut short or corrupt, without decoding a pixel: the
    gateway's promise of a 422 for such uploads, at a fraction of a decode's cost
    (docs/performance.md). PNG: every chunk's CRC up to IEND (Pillow's ``verify``). JPEG: an
    end-of-image marker after the first scan (a truncated file has none; bytes appended after
    it, as motion photos carry, are allowed). WebP: reading the header already parsed the whole
    RIFF container. Corruption that keeps the checksums and markers intact is left to the
    stages' decode, which fails the job with ``invalid_input``."""
    if header.content_type == "image/png":
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                image.verify()
        except Exception as exc:  # truncated chunk, CRC mismatch, missing IEND
            message = "the PNG image could not be decoded: its data is corrupt"
            raise UndecodableImage(message) from exc
    elif header.content_type == "image/jpeg":
        scan = _jpeg_first_scan(data)
        if scan is None or data.find(b"\xff\xd9", scan) == -1:
            raise UndecodableImage("the JPEG image could not be decoded: its data is cut short")


def _jpeg_first_scan(data: bytes) -> int | None:
    """The offset of the first start-of-scan marker, found by walking the marker segments
    (their lengths skip an EXIF thumbnail's own markers); ``None`` if the segments are broken."""
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif marker == 0xDA:
            return i
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def decode_image(data: bytes, limits: ImageLimits | None = None) -> np.ndarray:
    """Return an HxWx3 RGB uint8 array, EXIF orientation applied, after ``check_image`` with
    ``limits`` (the settings' by default)."""
    check_image(data, limits or ImageLimits.of(get_settings()))
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise UndecodableImage() from exc
    if bgr is None or bgr.size == 0:
        raise UndecodableImage()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def task_pixels(data: bytes) -> np.ndarray:
    """A worker's decode, under the same limits as the gateway's: a refused or undecodable
    image is the task's own bad input, which fails its job with ``invalid_input`` instead of
    being retried."""
    try:
        return decode_image(data)
    except ImageRefused as exc:
        raise TaskError(str(exc)) from None


def whole_image_batch(
    tasks: list[Task], prepare: Callable[[np.ndarray], tuple[np.ndarray, Any]]
) -> tuple[np.ndarray, list[Any]]:
    """Whole-image stages: each task's image through ``prepare`` (tensor, how to map back),
    stacked into one batch for one model run."""
    tensors, frames = [], []
    for task in tasks:
        tensor, frame = prepare(task_pixels(task.inputs["image"]))
        tensors.append(tensor)
        frames.append(frame)
    return np.stack(tensors), frames


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a letterboxed model input maps back to its image: the original size and the scale
    (model px per image px); the square's side covers the image's longer side."""

    width: int
    height: int
    scale: float

    @property
    def side(self) -> int:
        return max(self.width, self.height)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """The image scaled to fit a ``size`` square, top-left, zero padded right and bottom (aspect
    kept: whole-image models such as NanoDet and MultiPose see undistorted people), uint8."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: scaled[1], : scaled[0]] = cv2.resize(rgb, scaled, interpolation=cv2.INTER_LINEAR)
    return canvas, Letterbox(width, height, scale)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
