"""The REST inference body: JSON, or JSON followed by binary tensor data.

Binary tensor data extension (Triton's, which KServe's clients speak too): when the request has
an ``Inference-Header-Content-Length: N`` header, the first N bytes are the JSON and the rest is
the data of the inputs whose ``parameters.binary_data_size`` says how many bytes are theirs, in
input order. An output is returned the same way when its request asks ``binary_data: true``, or
the request asks ``binary_data_output: true`` for every output without its own setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response

from services.gateway.errors import Problem
from services.gateway.v2.infer import InferRequest, InferResponse, InputTensor, timeout_parameter
from services.gateway.v2.models import INPUT
from services.gateway.v2.wire import decode_base64, deserialize_bytes, flatten

HEADER_LENGTH = "inference-header-content-length"


@dataclass(frozen=True, slots=True)
class RestInfer:
    request: InferRequest
    binary: dict[str, bool]  # per requested output; others use ``binary_default``
    binary_default: bool


def parse(
    body: bytes, header_length: str | None, model: str, version: str, key: str | None
) -> RestInfer:
    json_length = _json_length(header_length, len(body))
    try:
        doc = json.loads(body[:json_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(400, "bad_request", f"the request is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise Problem(400, "bad_request", "the request needs an 'inputs' list")
    binary, offset = body[json_length:], 0
    inputs = []
    for position, raw_input in enumerate(doc["inputs"]):
        tensor, offset = _input(raw_input, position, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise Problem(
            400,
            "bad_request",
            f"{len(binary) - offset} bytes of binary data follow the JSON that no input's "
            "binary_data_size accounts for",
        )
    params = _parameters(doc.get("parameters"), "request")
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise Problem(400, "bad_request", "'outputs' must be a list of {\"name\": ...}")
    per_output = {}
    for output in outputs:
        wanted = _parameters(output.get("parameters"), output["name"]).get("binary_data")
        if wanted is not None:
            per_output[output["name"]] = bool(wanted)
    return RestInfer(
        InferRequest(
            model=model,
            version=version,
            id=str(doc.get("id") or ""),
            inputs=inputs,
            outputs=[o["name"] for o in outputs],
            timeout_s=timeout_parameter(params),
            idempotency_key=key,
        ),
        per_output,
        bool(params.get("binary_data_output", False)),
    )


def render(rest: RestInfer, response: InferResponse) -> Response:
    outputs, blobs = [], []
    for tensor in response.tensors:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if rest.binary.get(tensor.name, rest.binary_default):
            raw = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = tensor.json_data()
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    if response.id:
        doc["id"] = response.id
    doc["parameters"] = {"job_ids": ",".join(response.job_ids)}
    doc["outputs"] = outputs
    text = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(
        b"".join([text, *blobs]),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(text))},
    )


def _json_length(header: str | None, body_length: int) -> int:
    if header is None:
        return body_length
    if not header.isdigit() or int(header) > body_length:
        raise Problem(
            400,
            "bad_request",
            f"Inference-Header-Content-Length {header!r} is not a length within the "
            f"{body_length}-byte body",
        )
    return int(header)


def _input(raw: Any, position: int, binary: bytes, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise Problem(400, "bad_request", f"input {position} needs a 'name'")
    name = raw["name"]
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Problem(400, "bad_request", f"input '{name}' needs a 'shape' of non-negative ints")
    datatype = str(raw.get("datatype", ""))
    params = _parameters(raw.get("parameters"), name)
    size = params.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise Problem(400, "bad_request", f"input '{name}': binary_data_size is a byte count")
        if offset + size > len(binary):
            raise Problem(
                400, "bad_request", f"input '{name}': binary_data_size {size} overruns the body"
            )
        values = deserialize_bytes(binary[offset : offset + size], f"input '{name}'")
        return InputTensor(name, datatype, tuple(shape), values), offset + size
    if "data" not in raw:
        raise Problem(400, "bad_request", f"input '{name}' has neither 'data' nor binary data")
    if name != INPUT or datatype != "BYTES":  # refused by name or type in infer.image_batch
        return InputTensor(name, datatype, tuple(shape), []), offset
    values = [
        decode_base64(item, f"input '{name}' element {i}")
        for i, item in enumerate(flatten(raw["data"]))
    ]
    return InputTensor(name, datatype, tuple(shape), values), offset


def _parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Problem(400, "bad_request", f"'parameters' of {where} must be an object")
    return raw
