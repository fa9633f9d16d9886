"""Tensors on the wire, for both V2 transports: the raw layout (the binary tensor data
extension's appended bytes, gRPC's raw_*_contents) and the JSON one.

Raw layout: a tensor's elements flattened row-major, little-endian; a BYTES element is its
4-byte little-endian length then its bytes — the layout every V2 client writes.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.gateway.errors import Problem

_LENGTH = struct.Struct("<I")
_NUMERIC = {"FP32": "<f4", "INT32": "<i4", "INT64": "<i8"}


@dataclass(frozen=True, slots=True)
class Tensor:
    """An output tensor: numbers in an ndarray, or BYTES as a list of elements."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]

    def raw(self) -> bytes:
        if isinstance(self.values, list):
            return serialize_bytes(self.values)
        return np.ascontiguousarray(self.values, dtype=_NUMERIC[self.datatype]).tobytes()

    def json_data(self) -> list[Any]:
        """Flattened row-major; BYTES elements as UTF-8 text (our BYTES outputs are text)."""
        if isinstance(self.values, list):
            return [v.decode("utf-8", errors="replace") for v in self.values]
        return self.values.ravel().tolist()


def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def deserialize_bytes(raw: bytes, what: str) -> list[bytes]:
    """The elements of a raw BYTES tensor; 400 when the lengths do not add up."""
    elements, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise Problem(400, "bad_tensor", f"{what}: truncated BYTES element length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(raw):
            raise Problem(
                400, "bad_tensor", f"{what}: a BYTES element of {length} bytes overruns the data"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def decode_base64(text: Any, what: str) -> bytes:
    """A JSON BYTES element of the `image` input: the file, base64-encoded (JSON cannot carry
    raw image bytes; the binary tensor data extension sends them as they are)."""
    if not isinstance(text, str):
        raise Problem(400, "bad_tensor", f"{what}: expected a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(
            400,
            "bad_tensor",
            f"{what}: not base64; in JSON send each image base64-encoded, or use the binary "
            "tensor data extension",
        ) from None


def flatten(data: Any) -> list[Any]:
    """JSON tensor data may be flat or nested by the shape; both mean the same elements."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(flatten(item) if isinstance(item, list) else [item])
    return flat


def elements(shape: list[int] | tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
