"""tflite → batched ONNX (MediaPipe's pose_landmark models). Runs INSIDE the builder venv,
started by ``services.core.models.build``; it must import nothing beyond that set.

``tf2onnx --tflite`` converts these graphs unchanged (DESIGN §6). The outputs we do not serve —
the segmentation mask and the landmark heatmaps — are dropped before the Scan wrapping, so
onnxruntime prunes the layers that only fed them instead of computing them on every crop.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.core.models.convert import OPSET, batchify


def tflite_to_onnx(source: Path, out: Path, names: dict[str, str]) -> None:
    import onnx
    from tf2onnx import convert
    from tf2onnx.graph import Node

    from services.core.models.tfjs_shim import hash_nodes_by_creation_order

    hash_nodes_by_creation_order(Node)  # byte-reproducible output, as for the tfjs path
    raw = out.with_suffix(".batch1.onnx")
    sys.argv = ["tf2onnx", "--tflite", str(source), "--output", str(raw), "--opset", str(OPSET)]
    convert.main()
    model = onnx.load(raw)
    kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(batchify(model, names), out)
    raw.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tflite", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rename", required=True, help="JSON map: tflite -> ONNX tensor names")
    args = parser.parse_args()
    tflite_to_onnx(args.tflite, args.out, json.loads(args.rename))


if __name__ == "__main__":
    main()
