"""tflite → batched ONNX (MediaPipe's pose_landmark models). Runs INSIDE the builder venv,
started by ``services.factory.build``; it must import nothing beyond that set.

``tf2onnx --tflite`` converts these graphs unchanged. The outputs we do not serve —
the segmentation mask, the landmark heatmaps and the world landmarks — are removed together with
every node and weight that only fed them. Dropping the outputs alone is not enough: onnxruntime
does not prune dead nodes inside the ``Scan`` body, and they cost pose_landmark_lite two thirds
of its time per crop (measured: 11.3 → 3.5 ms on a 2-core CPU, identical landmarks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.factory.builder.convert import OPSET, batchify


def live_nodes(graph, outputs: set[str]) -> list:  # type: ignore[no-untyped-def]
    """The nodes that some tensor in ``outputs`` depends on, in their original (topological)
    order so the saved file stays byte-reproducible."""
    producer = {tensor: node for node in graph.node for tensor in node.output}
    live: set[int] = set()
    pending = list(outputs)
    while pending:
        node = producer.get(pending.pop())
        if node is not None and id(node) not in live:
            live.add(id(node))
            pending.extend(node.input)
    return [node for node in graph.node if id(node) in live]


def keep_outputs(model, served: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Reduce ``model`` in place to what the ``served`` outputs need."""
    graph = model.graph
    missing = served - {o.name for o in graph.output}
    if missing:
        raise ValueError(f"the graph has no output(s) {sorted(missing)}")
    kept = [o for o in graph.output if o.name in served]
    del graph.output[:]
    graph.output.extend(kept)
    nodes = live_nodes(graph, served)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {tensor for node in nodes for tensor in node.input}
    weights = [w for w in graph.initializer if w.name in used]
    del graph.initializer[:]
    graph.initializer.extend(weights)


def tflite_to_onnx(source: Path, out: Path, names: dict[str, str]) -> None:
    import onnx
    from tf2onnx import convert
    from tf2onnx.graph import Node

    from services.factory.builder.tfjs_shim import hash_nodes_by_creation_order

    hash_nodes_by_creation_order(Node)  # byte-reproducible output, as for the tfjs path
    raw = out.with_suffix(".batch1.onnx")
    sys.argv = ["tf2onnx", "--tflite", str(source), "--output", str(raw), "--opset", str(OPSET)]
    convert.main()
    model = onnx.load(raw)
    inputs = {i.name for i in model.graph.input}
    keep_outputs(model, {name for name in names if name not in inputs})
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
