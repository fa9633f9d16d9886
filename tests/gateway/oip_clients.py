"""Drive a running Posefleet with a V2 client we did not write, as its users would, and print
what it saw as JSON — run as a subprocess by the tests:

    python -m tests.gateway.oip_clients tritonclient-http|tritonclient-grpc|kserve-rest|kserve-grpc
        --http http://127.0.0.1:8080 --grpc 127.0.0.1:8081 --model pose PHOTO...

Why a subprocess: tritonclient.grpc and kserve each register the protocol's messages
(``inference.*``) in protobuf's process-wide descriptor pool under their own file names, as the
gateway's stubs do, so no two of them can be imported into one process (protobuf refuses the
duplicate symbols). A user's program imports one client; so does each run of this script.

For each photo it infers twice — binary tensor data on and off (REST: the binary extension vs
base64 JSON; gRPC: raw_input_contents vs typed contents) — and reports every output tensor.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def drive(client: str, http: str, grpc: str, model: str, photos: list[Path]) -> dict[str, Any]:
    """Run this script for ``client`` in a fresh interpreter; returns its report."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.gateway.oip_clients", client, "--http", http,
         "--grpc", grpc, "--model", model, *map(str, photos)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def plain(array: np.ndarray) -> Any:
    """A tensor as JSON: numbers nested by shape, BYTES as text."""
    if array.dtype == np.object_:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return array.tolist()


def tritonclient_run(args: argparse.Namespace, photos: list[bytes]) -> dict[str, Any]:
    if args.client == "tritonclient-http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client  # type: ignore[no-redef]
    url = args.http.removeprefix("http://") if args.client.endswith("http") else args.grpc
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else None
    server = client.InferenceServerClient(url=url)
    metadata = server.get_model_metadata(args.model, headers=headers, **_as_json(args))
    report: dict[str, Any] = {
        "live": server.is_server_live(headers=headers),
        "ready": server.is_server_ready(headers=headers),
        "model_ready": server.is_model_ready(args.model, headers=headers),
        "unknown_version_ready": server.is_model_ready(args.model, "7", headers=headers),
        "metadata": metadata,
        "server": server.get_server_metadata(headers=headers, **_as_json(args)),
    }
    names = [o["name"] for o in metadata["outputs"]]
    for binary in (True, False):
        results = []
        for index, photo in enumerate(photos):
            image = client.InferInput("image", [1], "BYTES")
            # JSON cannot carry image bytes: with binary data off the image goes base64-encoded
            # (gRPC always carries bytes as they are)
            wire = photo if binary or args.client.endswith("grpc") else base64.b64encode(photo)
            image.set_data_from_numpy(np.array([wire], dtype=np.object_), **_binary(args, binary))
            outputs = [client.InferRequestedOutput(n, **_binary(args, binary)) for n in names]
            result = server.infer(
                args.model, [image], outputs=outputs, request_id=f"r{index}", headers=headers
            )
            response = result.get_response(**_as_json(args))
            results.append(
                {"id": response["id"], "outputs": {n: plain(result.as_numpy(n)) for n in names}}
            )
        report["binary" if binary else "json"] = results
    return report


def _as_json(args: argparse.Namespace) -> dict[str, bool]:
    return {"as_json": True} if args.client.endswith("grpc") else {}


def _binary(args: argparse.Namespace, binary: bool) -> dict[str, bool]:
    return {} if args.client.endswith("grpc") else {"binary_data": binary}


async def kserve_run(args: argparse.Namespace, photos: list[bytes]) -> dict[str, Any]:
    # Importing kserve parses sys.argv for its model server's flags (kserve/model_server.py, at
    # import time), and our --grpc is ambiguous to it; its clients need none of them.
    sys.argv = sys.argv[:1]
    from kserve import (
        InferenceGRPCClient,
        InferenceRESTClient,
        InferInput,
        InferRequest,
        RESTConfig,
    )

    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else None
    rest = args.client == "kserve-rest"
    if rest:
        client: Any = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        probes = (
            client.is_server_live(args.http, headers=headers),
            client.is_server_ready(args.http, headers=headers),
            client.is_model_ready(args.http, args.model, headers=headers),
        )
    else:
        client = InferenceGRPCClient(args.grpc, retries=0)
        metadata = tuple(headers.items()) if headers else None
        probes = (
            client.is_server_live(headers=metadata),
            client.is_server_ready(headers=metadata),
            client.is_model_ready(args.model, headers=metadata),
        )
    live, ready, model_ready = [await p for p in probes]
    report: dict[str, Any] = {"live": live, "ready": ready, "model_ready": model_ready}
    for binary in (True, False):
        results = []
        for index, photo in enumerate(photos):
            if binary:  # REST: binary tensor data; gRPC: raw_input_contents
                image = InferInput("image", [1], "BYTES")
                image.set_data_from_numpy(np.array([photo], dtype=np.object_), binary_data=True)
            else:  # REST: base64 in JSON; gRPC: typed contents (bytes_contents)
                image = InferInput(
                    "image",
                    [1],
                    "BYTES",
                    data=[base64.b64encode(photo).decode() if rest else photo],
                )
            request = InferRequest(
                model_name=args.model,
                infer_inputs=[image],
                request_id=f"r{index}",
                parameters={"binary_data_output": True} if rest and binary else None,
            )
            if rest:
                response = await client.infer(args.http, request, args.model, headers=headers)
            else:
                response = await client.infer(request, headers=metadata)
            results.append(
                {
                    "id": response.id,
                    "outputs": {o.name: plain(o.as_numpy()) for o in response.outputs},
                }
            )
        report["binary" if binary else "json"] = results
    await client.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "client", choices=["tritonclient-http", "tritonclient-grpc", "kserve-rest", "kserve-grpc"]
    )
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("photos", nargs="+", type=Path)
    args = parser.parse_args()
    photos = [p.read_bytes() for p in args.photos]
    if args.client.startswith("tritonclient"):
        report = tritonclient_run(args, photos)
    else:
        report = asyncio.run(kserve_run(args, photos))
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
