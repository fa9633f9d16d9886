"""Where a batch's frames come from — a video's frames or a zip's image entries — bounded before
anything is decoded or inflated.

A zip is read from its directory: the entry count is capped before the directory is parsed,
the inflated size of all entries is capped (from the sizes the directory declares) before one
byte is inflated, and each entry is read asking for no more than its declared size, which the
stdlib's reader also stops at (a longer stream fails its CRC check). Only stored or deflated
entries are read: deflate inflates at most what is asked for; bzip2 and LZMA inflate a whole
compressed read at once, however large. Each image entry, and
each video frame, obeys the same byte, pixel, side and aspect limits as an upload to ``/jobs``;
a frame that does not is a failed line of the batch, with the code ``/jobs`` would answer.
What makes the whole upload unusable (not a video, a bad zip, no frames, over an archive limit)
is a ``BatchRefused``: the batch fails at once, since retrying cannot help.
"""

from __future__ import annotations

import io
import logging
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import cv2

from services.core.imaging import (
    ImageHeader,
    ImageLimits,
    ImageRefused,
    check_image,
    check_size,
    sniff_image_type,
)

log = logging.getLogger("posefleet.control")

# Every record of a zip's central directory starts with this; counting them bounds the number
# of entries (from above) before the stdlib parses the directory into objects.
_DIRECTORY_RECORD = b"PK\x01\x02"
_READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_SNIFF_BYTES = 16


class BatchRefused(Exception):
    """The upload cannot be expanded at all; ``code`` and ``message`` are shown to the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def error(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class FrameSlot:
    """A frame's place in its batch: what its result line says besides the outcome."""

    index: int
    timestamp_ms: float | None
    name: str | None

    def slot(self) -> FrameSlot:
        return FrameSlot(self.index, self.timestamp_ms, self.name)

    def line(self) -> dict[str, Any]:
        line: dict[str, Any] = {"frame": self.index, "timestamp_ms": self.timestamp_ms}
        if self.name is not None:
            line["name"] = self.name
        return line


@dataclass(frozen=True, slots=True)
class Frame(FrameSlot):
    image: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class RefusedFrame(FrameSlot):
    """A frame over a limit: it becomes a failed line without ever being submitted."""

    code: str
    message: str


def video_frames(
    data: bytes, stride: int, limit: int, limits: ImageLimits
) -> Iterator[Frame | RefusedFrame]:
    """Every ``stride``-th frame, at most ``limit``; OpenCV needs a file, so one is written."""
    with tempfile.NamedTemporaryFile(suffix=".video") as f:
        f.write(data)
        f.flush()
        capture = cv2.VideoCapture(f.name)
        if not capture.isOpened():
            raise BatchRefused("not_a_video", "the upload could not be read as a video")
        try:
            declared = (
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
            if all(declared):  # 0 when the container does not say: each frame is checked
                _check_video_size(*declared, limits)
            position, emitted = 0, 0
            while emitted < limit and capture.grab():
                if position % stride == 0:
                    ok, bgr = capture.retrieve()
                    if not ok:
                        break
                    _check_video_size(bgr.shape[1], bgr.shape[0], limits)
                    stamp = round(capture.get(cv2.CAP_PROP_POS_MSEC), 1)
                    yield _video_frame(emitted, stamp, bgr, limits)
                    emitted += 1
                position += 1
        except cv2.error as exc:
            log.warning("video decoding failed", exc_info=exc)
            raise BatchRefused("not_a_video", "the video could not be decoded") from None
        finally:
            capture.release()
    if emitted == 0:
        raise BatchRefused("no_frames", "no frame could be read from the video")


def _check_video_size(width: int, height: int, limits: ImageLimits) -> None:
    try:
        check_size(width, height, limits)
    except ImageRefused as exc:
        raise BatchRefused(exc.code, f"the video's frames are refused: {exc}") from None


def _video_frame(index: int, stamp: float, bgr: Any, limits: ImageLimits) -> Frame | RefusedFrame:
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        return RefusedFrame(
            index, stamp, None, "undecodable_image", "the frame could not be encoded"
        )
    if jpeg.size > limits.max_bytes:
        message = f"the frame's JPEG has {jpeg.size} bytes, over the {limits.max_bytes}-byte limit"
        return RefusedFrame(index, stamp, None, "image_too_large", message)
    return Frame(index, stamp, None, jpeg.tobytes(), "image/jpeg", bgr.shape[1], bgr.shape[0])


def zip_frames(
    data: bytes, limit: int, limits: ImageLimits, max_entries: int, max_inflated: int
) -> Iterator[Frame | RefusedFrame]:
    """Image entries in name order (other entries are skipped), at most ``limit``."""
    if data.count(_DIRECTORY_RECORD) > max_entries:
        raise BatchRefused("too_many_entries", f"the zip lists more than {max_entries} entries")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # the stdlib parser on untrusted bytes: any failure is the upload's
        log.warning("zip directory unreadable", exc_info=exc)
        raise BatchRefused("bad_zip", "the upload is not a readable zip archive") from None
    with archive:
        entries = sorted(
            (i for i in archive.infolist() if not i.is_dir()), key=attrgetter("filename")
        )
        inflated = sum(info.file_size for info in entries)
        if inflated > max_inflated:
            raise BatchRefused(
                "archive_too_large",
                f"the zip's entries inflate to {inflated} bytes, over the "
                f"{max_inflated}-byte limit",
            )
        index = 0
        for info in entries:
            if index >= limit:
                return
            try:
                read = _read_entry(archive, info, limits)
            except ImageRefused as exc:
                yield RefusedFrame(index, None, info.filename, exc.code, str(exc))
                index += 1
                continue
            if read is not None:
                content, header = read
                yield Frame(
                    index,
                    None,
                    info.filename,
                    content,
                    header.content_type,
                    header.width,
                    header.height,
                )
                index += 1
    if index == 0:
        raise BatchRefused("no_frames", "the zip holds no JPEG, PNG or WebP image")


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ImageLimits
) -> tuple[bytes, ImageHeader] | None:
    """An image entry's bytes and checked header; None for an entry that is not an image.
    Inflates no more than the entry's declared size, itself at most ``limits.max_bytes``."""
    if info.flag_bits & 0x1:
        raise ImageRefused("unsupported_zip_entry", "the entry is encrypted")
    if info.compress_type not in _READABLE_METHODS:
        raise ImageRefused(
            "unsupported_zip_entry",
            f"the entry uses compression method {info.compress_type}; "
            "zip images stored or deflated",
        )
    try:
        with archive.open(info) as entry:
            head = entry.read(_SNIFF_BYTES)
            if sniff_image_type(head) is None:
                return None
            fits = info.file_size <= limits.max_bytes
            content = head + entry.read(max(0, info.file_size - len(head))) if fits else b""
    except Exception as exc:  # a CRC mismatch, a truncated stream: the entry is corrupt
        log.warning("zip entry unreadable", extra={"entry": info.filename}, exc_info=exc)
        raise ImageRefused("corrupt_zip_entry", "the entry is corrupt") from None
    if not fits:
        raise ImageRefused(
            "image_too_large",
            f"the entry inflates to {info.file_size} bytes, over the {limits.max_bytes}-byte limit",
        )
    return content, check_image(content, limits)
