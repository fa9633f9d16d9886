"""tfjs graph model → batched ONNX. Runs INSIDE the builder venv (TensorFlow, tf2onnx, onnx),
started by ``services.factory.build``; it must import nothing beyond that set.

The tfjs graphs have their batch size baked in as 1 (constant Reshape shapes), so a plain shape
override does not make them batchable. We wrap the converted graph in an ONNX ``Scan`` over a new
leading ``batch`` axis instead: one ``session.run`` takes any number of images or crops, with
outputs identical to running them one by one (the builder checks this), and tensors get clean
names (``images``, ``keypoints`` …) instead of TF's ``tower_0/images:0``.

With the shim's node-hash and hash-seed patches the output is byte-identical from run to run, so
the catalog pins its sha256 and the build checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

OPSET = 17


def tfjs_to_onnx(graph_json: Path, out: Path) -> None:
    import numpy as np

    from services.factory.builder.tfjs_shim import (
        fix_tfjs_graph,
        hash_nodes_by_creation_order,
        restore_numpy_aliases,
    )

    restore_numpy_aliases(np)
    model = json.loads(graph_json.read_text())
    fixes = fix_tfjs_graph(model)
    print(f"shim fixes: {fixes}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        fixed = Path(tmp) / graph_json.name
        fixed.write_text(json.dumps(model))
        for group in model["weightsManifest"]:
            for path in group["paths"]:
                shutil.copy(graph_json.parent / path, Path(tmp) / path)
        from tf2onnx import convert
        from tf2onnx.graph import Node

        hash_nodes_by_creation_order(Node)
        sys.argv = ["tf2onnx", "--tfjs", str(fixed), "--output", str(out), "--opset", str(OPSET)]
        convert.main()


def _dims(kind) -> list[int | str]:  # type: ignore[no-untyped-def]
    """Static sizes as ints, symbolic ones (MultiPose's any-size image) by their name: a
    symbolic dim read as ``dim_value`` is 0, which would declare an empty tensor."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in kind.shape.dim]


def batchify(model, names: dict[str, str]):  # type: ignore[no-untyped-def]
    """Wrap a batch-1 graph in a Scan over a new dynamic leading axis, renaming its I/O."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    axes = helper.make_tensor("__batch_axis", TensorProto.INT64, [1], [0])
    body_nodes, body_in, body_out, outer_in, outer_out = [], [], [], [], []
    for tensor in inputs:
        kind = tensor.type.tensor_type
        dims = _dims(kind)
        if dims[0] != 1:
            raise ValueError(f"{tensor.name}: expected batch size 1, got {dims}")
        item = tensor.name + "__item"
        body_in.append(helper.make_tensor_value_info(item, kind.elem_type, dims[1:]))
        body_nodes.append(helper.make_node("Unsqueeze", [item, axes.name], [tensor.name]))
        outer_in.append(
            helper.make_tensor_value_info(names[tensor.name], kind.elem_type, ["batch", *dims[1:]])
        )
    body_nodes.extend(graph.node)
    for tensor in graph.output:
        kind = tensor.type.tensor_type
        dims = _dims(kind)
        item = tensor.name + "__item"
        body_nodes.append(helper.make_node("Squeeze", [tensor.name, axes.name], [item]))
        body_out.append(helper.make_tensor_value_info(item, kind.elem_type, dims[1:]))
        outer_out.append(
            helper.make_tensor_value_info(names[tensor.name], kind.elem_type, ["batch", *dims[1:]])
        )
    body = helper.make_graph(
        body_nodes, "item", body_in, body_out, initializer=[axes, *graph.initializer]
    )
    scan = helper.make_node(
        "Scan",
        [names[i.name] for i in inputs],
        [names[o.name] for o in graph.output],
        body=body,
        num_scan_inputs=len(inputs),
    )
    wrapped = helper.make_model(
        helper.make_graph([scan], graph.name, outer_in, outer_out),
        opset_imports=model.opset_import,
        producer_name="posefleet",
    )
    wrapped.ir_version = model.ir_version  # keep what onnxruntime supports
    onnx.checker.check_model(wrapped)
    return wrapped


def main() -> None:
    import onnx

    from services.factory.builder.tfjs_shim import pinned_hash_seed_env

    env = pinned_hash_seed_env(os.environ)
    if env is not None:  # shim patch 5: only a fresh interpreter takes a new hash seed
        argv = [sys.executable, "-m", "services.factory.builder.convert", *sys.argv[1:]]
        os.execve(sys.executable, argv, env)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--graph", type=Path, required=True, help="tfjs model.json")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--rename", required=True, help="JSON map of tfjs -> ONNX tensor names")
    args = parser.parse_args()
    raw = args.out.with_suffix(".batch1.onnx")
    tfjs_to_onnx(args.graph, raw)
    onnx.save(batchify(onnx.load(raw), json.loads(args.rename)), args.out)
    raw.unlink()


if __name__ == "__main__":
    main()
