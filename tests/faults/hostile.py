"""Hostile uploads, crafted compactly: images whose headers promise far more pixels than their
bytes carry (decompression bombs, forged headers), thin images, and zip bombs. Each is built in
a few milliseconds and a few kilobytes; none of them is ever decoded here."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def png_zeros(width: int, height: int, rgb: bool = False) -> bytes:
    """A real, valid PNG of black pixels (1-bit grey, or 8-bit RGB), compressed a row at a
    time: a 30000x30000 one is ~110 KB and never exists uncompressed here."""
    row = b"\0" * (1 + (width * 3 if rgb else (width + 7) // 8))
    deflate = zlib.compressobj(9)
    rows_per_chunk = max(1, (1 << 20) // len(row))
    parts, left = [], height
    while left:
        n = min(left, rows_per_chunk)
        parts.append(deflate.compress(row * n))
        left -= n
    parts.append(deflate.flush())
    header = _ihdr(width, height, 8 if rgb else 1, 2 if rgb else 0)
    return PNG_SIGNATURE + header + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A forged PNG: a valid IHDR claiming ``width`` x ``height`` RGB, no pixel data at all."""
    return PNG_SIGNATURE + _ihdr(width, height, 8, 2) + _chunk(b"IEND", b"")


def jpeg(width: int, height: int, noise: bool = True, quality: int = 95) -> bytes:
    """A real JPEG, of noise (which keeps it from compressing to nothing) or of flat grey."""
    pixels = (
        np.random.default_rng(width + height).integers(0, 255, (height, width, 3), np.uint8)
        if noise
        else np.full((height, width, 3), 128, np.uint8)
    )
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``:
    decoders that trust it allocate the claimed frame and fill what the data lacks."""
    data = bytearray(jpeg(96, 96))
    at = 2
    while data[at + 1] != 0xC0:  # walk the marker segments to the baseline frame header
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_header_only(width: int, height: int) -> bytes:
    """A forged extended WebP: a VP8X chunk declaring a ``width`` x ``height`` canvas and an
    empty frame."""
    vp8x = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x + b"VP8 " + b"\0\0\0\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def zip_of(entries: dict[str, bytes]) -> bytes:
    """A zip (deflated) of the given entries, in the given order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def zip_bomb(entries: int, entry_bytes: int) -> bytes:
    """A zip of ``entries`` PNG-looking entries that each inflate to ``entry_bytes`` (a PNG
    signature, then zeros), streamed into the archive so the inflated bytes never exist here."""
    buffer = io.BytesIO()
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for i in range(entries):
            with archive.open(f"bomb-{i:03}.png", "w", force_zip64=True) as entry:
                entry.write(PNG_SIGNATURE)
                left = entry_bytes - len(PNG_SIGNATURE)
                while left:
                    n = min(left, len(block))
                    entry.write(block[:n])
                    left -= n
    return buffer.getvalue()
