"""Small REAL ONNX models of every layout the generic families read, built with onnx.helper,
whose outputs are known functions of their input or constants chosen by the test — so each
decoder is checked against ground truth, with nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # what onnxruntime 1.31 reads


def _save(nodes, inputs, outputs, initialisers, path: Path) -> Path:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image_input(name: str, shape: list, dtype: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def colour_classifier(
    path: Path,
    size: int = 32,
    layout: str = "NCHW",
    probabilities: bool = False,
    batch: str | int = "batch",
) -> Path:
    """Logits = the mean of each input channel (through a MatMul with the identity, so int8
    quantization has weights to act on): a pure red image (RGB, /255) scores [1, 0, 0], so the
    top label names the dominant channel the model was fed."""
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["means"], axes=axes, keepdims=0),
        helper.make_node("MatMul", ["means", "identity"], ["logits"]),
    ]
    weights = [numpy_helper.from_array(np.eye(3, dtype=np.float32), "identity")]
    last = "logits"
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        last = "probs"
    out = helper.make_tensor_value_info(last, TensorProto.FLOAT, [batch, 3])
    return _save(nodes, [_image_input("image", shape)], [out], weights, path)


def batch_mixing_classifier(path: Path) -> Path:
    """Channel means minus their mean over the batch: each item depends on the others."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0),
        helper.make_node("ReduceMean", ["means"], ["batch_mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["means", "batch_mean"], ["logits"]),
    ]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    return _save(nodes, [_image_input("image", ["batch", 3, 8, 8])], [out], [], path)


def raw_graph(path: Path, inputs: list, outputs: list, nodes: list) -> Path:
    """Any graph of value infos and nodes (for the shapes import must refuse)."""
    return _save(nodes, inputs, outputs, [], path)


_ONNX_TYPES = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("int64"): TensorProto.INT64}


def constant_outputs(
    path: Path,
    input_shape: list,
    outputs: dict[str, np.ndarray],
    input_dtype: int = TensorProto.FLOAT,
) -> Path:
    """Each output is its constant (one item's value) repeated over the batch: the input only
    sets the batch size (its mean times zero, broadcast), so the decoders see exactly the
    rows, bins or heatmaps the test wrote."""
    batch = input_shape[0]
    nodes = [helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT)]
    nodes.append(helper.make_node("ReduceMean", ["image_f"], ["mean"], axes=[1, 2, 3], keepdims=1))
    nodes.append(helper.make_node("Mul", ["mean", "zero"], ["zeros"]))
    initialisers = [numpy_helper.from_array(np.array(0, np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        value = np.asarray(value)
        shape = np.array([-1] + [1] * value.ndim, np.int64)
        initialisers += [
            numpy_helper.from_array(shape, f"{name}_shape"),
            numpy_helper.from_array(value.astype(np.float32), f"{name}_value"),
        ]
        nodes += [
            helper.make_node("Reshape", ["zeros", f"{name}_shape"], [f"{name}_zeros"]),
            helper.make_node("Add", [f"{name}_zeros", f"{name}_value"], [f"{name}_float"]),
        ]
        if value.dtype == np.int64:
            nodes.append(helper.make_node("Cast", [f"{name}_float"], [name], to=TensorProto.INT64))
        else:
            nodes.append(helper.make_node("Identity", [f"{name}_float"], [name]))
        graph_outputs.append(
            helper.make_tensor_value_info(name, _ONNX_TYPES[value.dtype], [batch, *value.shape])
        )
    inputs = [_image_input("image", input_shape, input_dtype)]
    return _save(nodes, inputs, graph_outputs, initialisers, path)
