"""fp32 ONNX → int8 with ``onnxruntime.quantization``. Runs INSIDE the builder venv (it needs the
``onnx`` package, which the runtime never installs), started by ``services.factory.quantize``.

The tfjs models are wrapped in a ``Scan`` over the batch (see convert.py). onnxruntime's static
calibration only observes tensors of the main graph, so it would never see the activations inside
the Scan body. We therefore quantize the body as a model of its own — one item in, one item out —
and put the quantized body back into the same Scan: batching keeps working unchanged.
Models without a Scan (the torch exports, batch axis already dynamic) are quantized as they are.

Calibration samples arrive as an ``.npz`` of batches named ``<input>__<n>``, recorded from the
real stage handlers on real photos, so the ranges are those of served traffic.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def _scan_node(model: Any) -> Any | None:
    nodes = list(model.graph.node)
    return nodes[0] if len(nodes) == 1 and nodes[0].op_type == "Scan" else None


def _calibration_batches(npz: Path) -> list[dict[str, Any]]:
    import numpy as np

    arrays = np.load(npz)
    batches: dict[str, dict[str, Any]] = {}
    for key in arrays.files:
        name, _, index = key.rpartition("__")
        batches.setdefault(index, {})[name] = arrays[key]
    return [batches[i] for i in sorted(batches, key=int)]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over in-memory feeds."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self._all = feeds
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:
        self._feeds = iter(self._all)


def _quantize(
    model: Any, out: Path, mode: str, feeds: list[dict[str, Any]], op_types: list[str] | None
) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(model, source)
        # Shape inference + fp32 graph optimisation first, as onnxruntime recommends: fused
        # Conv+BN/activation nodes quantize as one op instead of several.
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(
                prepared, out, op_types_to_quantize=op_types, weight_type=QuantType.QInt8
            )
        else:
            quantize_static(
                prepared,
                out,
                _Reader(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                op_types_to_quantize=op_types,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )


def _item_model(model: Any, scan: Any) -> Any:
    """The Scan body as a standalone model with the outer model's opsets."""
    from onnx import helper

    body = next(a.g for a in scan.attribute if a.name == "body")
    item = helper.make_model(body, opset_imports=model.opset_import)
    item.ir_version = model.ir_version
    return item


def _rewrap(model: Any, scan: Any, quantized_item: Any) -> Any:
    from onnx import helper

    for attr in scan.attribute:
        if attr.name == "body":
            attr.g.CopyFrom(quantized_item.graph)
    domains = {o.domain: o for o in model.opset_import}
    for opset in quantized_item.opset_import:  # e.g. com.microsoft for fused int8 ops
        if opset.domain not in domains:
            model.opset_import.append(helper.make_opsetid(opset.domain, opset.version))
    return model


def quantize_file(
    source: Path, out: Path, mode: str, calibration: Path | None, op_types: list[str] | None
) -> dict[str, Any]:
    import onnx

    model = onnx.load(source)
    batches = _calibration_batches(calibration) if calibration else []
    if mode == "static" and not batches:
        raise SystemExit("static quantization needs calibration samples")
    scan = _scan_node(model)
    if scan is None:
        _quantize(model, out, mode, batches, op_types)
        return {"wrapped_in_scan": False, "calibration_samples": len(batches)}
    item_model = _item_model(model, scan)
    # Split every batch into items; the Scan's k-th input is its body's k-th input.
    body_inputs = [i.name for i in item_model.graph.input]
    items = [
        {inner: batch[outer][i] for outer, inner in zip(scan.input, body_inputs, strict=True)}
        for batch in batches
        for i in range(len(batch[scan.input[0]]))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "item.int8.onnx"
        _quantize(item_model, quantized, mode, items, op_types)
        wrapped = _rewrap(model, scan, onnx.load(quantized))
    onnx.checker.check_model(wrapped)
    onnx.save(wrapped, out)
    return {"wrapped_in_scan": True, "calibration_samples": len(items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in", dest="source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=("dynamic", "static"), required=True)
    parser.add_argument("--calibration", type=Path, help=".npz of recorded input batches")
    parser.add_argument("--op-types", help="comma-separated ops to quantize (default: all)")
    args = parser.parse_args()
    op_types = args.op_types.split(",") if args.op_types else None
    summary = quantize_file(args.source, args.out, args.mode, args.calibration, op_types)
    print(json.dumps(summary), file=sys.stdout)


if __name__ == "__main__":
    main()
