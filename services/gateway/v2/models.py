"""Every pipeline is a model: its V2 name, version, input and typed outputs, derived from the
pipeline's declared output schemas (pipelines.yaml), like a Triton ensemble over its stages.

The mapping is generic, read from the JSON schemas the job API already publishes:

* an output that is an array of objects carrying a ``box`` (detections: ``people``) becomes one
  tensor per required item property, rows concatenated over the request's images — ``box``
  (4 numbers) -> ``boxes`` FP32 [N,4], ``score`` -> ``scores`` FP32 [N], ``keypoints`` (17
  objects whose numeric fields are x, y, score) -> ``keypoints`` FP32 [N,17,3] — plus
  ``batch_index`` INT32 [N], the image each row belongs to;
* a number, integer or string output becomes a tensor of one element per image
  (``label`` BYTES [B], ``score`` FP32 [B]);
* ``result`` BYTES [B] carries each image's whole result, the same JSON the job API returns,
  so outputs that are not tensors (``top_k``, ``members``) are still there.

Versioning: a pipeline model has one version, "1" — the pipeline as configured. The versions of
the models its stages run (pipelines.yaml ``model_version``) are deployment details that GET
/v1/pipelines/{name} shows; docs/oip.md says why they are not V2 versions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np

from services.core.pipeline import PipelineConfig, PipelineSpec
from services.gateway.errors import Problem

SERVER = "posefleet"
# The V2 extensions implemented (Triton's names): binary tensor data on REST, request and
# response parameters, read-only model configuration. Not "statistics": perf_analyzer asks
# for per-model statistics only from servers that list it.
EXTENSIONS = ("binary_tensor_data", "parameters", "model_configuration")
PLATFORM = "posefleet_pipeline"
VERSION = "1"
INPUT = "image"
RESULT = "result"
BATCH_INDEX = "batch_index"
# Triton's model-configuration names of the datatypes we use (the ModelConfig extension).
CONFIG_TYPES = {
    "BYTES": "TYPE_STRING",
    "FP32": "TYPE_FP32",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
}

# One image's result (the job API's ``result``) in; that image's values of one tensor out.
Values = list[Any]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str  # FP32 | INT32 | INT64 | BYTES
    shape: tuple[int, ...]  # -1 = variable

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_type": CONFIG_TYPES[self.datatype],
            "dims": list(self.shape),
        }


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """An output tensor and how to read it from the results of a request's images."""

    spec: TensorSpec
    # rows of one image's result: a list of numbers, nested lists, strings (one per row)
    rows: Callable[[int, dict[str, Any]], Values]

    def gather(self, results: list[dict[str, Any]]) -> np.ndarray | list[bytes]:
        rows = [row for index, result in enumerate(results) for row in self.rows(index, result)]
        if self.spec.datatype == "BYTES":
            return [r if isinstance(r, bytes) else str(r).encode() for r in rows]
        dtype = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64}[self.spec.datatype]
        return np.asarray(rows, dtype=dtype).reshape((len(rows), *self.spec.shape[1:]))


@dataclass(frozen=True, slots=True)
class PipelineModel:
    name: str
    description: str
    outputs: tuple[OutputTensor, ...]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(INPUT, "BYTES", (-1,)),)

    def output(self, name: str) -> OutputTensor:
        for out in self.outputs:
            if out.spec.name == name:
                return out
        known = [o.spec.name for o in self.outputs]
        raise Problem(
            400, "unknown_output", f"model '{self.name}' has no output '{name}' (outputs: {known})"
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": PLATFORM,
            "inputs": [t.metadata() for t in self.inputs],
            "outputs": [o.spec.metadata() for o in self.outputs],
        }

    def config(self) -> dict[str, Any]:
        """Triton's model configuration, the fields perf_analyzer reads: no Triton batch
        dimension (a batch is the ``image`` tensor's length), the tensors and their types."""
        return {
            "name": self.name,
            "platform": PLATFORM,
            "max_batch_size": 0,
            "input": [t.config() for t in self.inputs],
            "output": [o.spec.config() for o in self.outputs],
        }


def server_metadata() -> dict[str, Any]:
    return {
        "name": SERVER,
        "version": package_version("posefleet"),
        "extensions": list(EXTENSIONS),
    }


class ModelCatalog:
    """The pipelines of a gateway's config, as V2 models."""

    def __init__(self, config: PipelineConfig) -> None:
        self.models = {
            name: pipeline_model(spec, spec.output_schemas(config.stages))
            for name, spec in config.pipelines.items()
        }

    def label(self, name: str) -> str:
        """``name`` as a metric label: unknown names collapse into one, so that requests for
        made-up models cannot grow the metric without bound."""
        return name if name in self.models else "unknown"

    def get(self, name: str, version: str = "") -> PipelineModel:
        """The model, or 404 for an unknown name or version ("" = the only version, "1")."""
        model = self.models.get(name)
        if model is None:
            raise Problem(
                404, "model_not_found", f"no model '{name}' (known: {sorted(self.models)})"
            )
        if version not in ("", VERSION):
            raise Problem(
                404,
                "version_not_found",
                f"model '{name}' has no version '{version}' (versions: [{VERSION}])",
            )
        return model


def pipeline_model(spec: PipelineSpec, schemas: dict[str, dict[str, Any]]) -> PipelineModel:
    detections = [name for name, schema in schemas.items() if _is_detection_array(schema)]
    outputs = _tensors(schemas, detections, prefixed=len(detections) > 1)
    names = [o.spec.name for o in outputs]
    if len(set(names)) < len(names):  # e.g. a scalar output called `scores`
        outputs = _tensors(schemas, detections, prefixed=True)
    return PipelineModel(spec.name, spec.description, tuple(outputs))


def _tensors(
    schemas: dict[str, dict[str, Any]], detections: list[str], prefixed: bool
) -> list[OutputTensor]:
    outputs: list[OutputTensor] = []
    for name, schema in schemas.items():
        if name in detections:
            outputs += _detection_tensors(name, schema, prefixed)
        elif (scalar := _SCALARS.get(schema.get("type", ""))) is not None:
            outputs.append(OutputTensor(TensorSpec(name, scalar, (-1,)), _scalar_rows(name)))
    outputs.append(OutputTensor(TensorSpec(RESULT, "BYTES", (-1,)), _result_rows))
    return outputs


_SCALARS = {"number": "FP32", "integer": "INT64", "string": "BYTES"}


def _is_detection_array(schema: dict[str, Any]) -> bool:
    items = schema.get("items", {}) if schema.get("type") == "array" else {}
    box = items.get("properties", {}).get("box", {})
    return items.get("type") == "object" and _fixed_numbers(box) == 4


def _fixed_numbers(schema: dict[str, Any]) -> int | None:
    """The length of a fixed-length array of numbers, else None."""
    items = schema.get("items", {})
    length = schema.get("minItems")
    fixed = (
        schema.get("type") == "array" and length is not None and length == schema.get("maxItems")
    )
    return length if fixed and items.get("type") in ("number", "integer") else None


def _plural(name: str) -> str:
    if name.endswith("s"):
        return name
    return name + ("es" if name.endswith(("x", "ch", "sh")) else "s")


def _detection_tensors(output: str, schema: dict[str, Any], prefixed: bool) -> list[OutputTensor]:
    """One tensor per required property of the detections that has a fixed shape, and the
    ``batch_index`` that says which image each row came from."""
    items = schema["items"]
    tensors = []
    for prop in items.get("required", []):
        layout = _row_layout(items["properties"].get(prop, {}))
        if layout is None:
            continue  # not a fixed-shape value: the `result` output carries it
        datatype, dims, read = layout
        name = f"{output}_{_plural(prop)}" if prefixed else _plural(prop)
        tensors.append(
            OutputTensor(
                TensorSpec(name, datatype, (-1, *dims)), _detection_rows(output, prop, read)
            )
        )
    index_name = f"{output}_{BATCH_INDEX}" if prefixed else BATCH_INDEX
    tensors.append(
        OutputTensor(
            TensorSpec(index_name, "INT32", (-1,)),
            lambda i, result: [i] * len(result.get(output) or []),
        )
    )
    return tensors


Layout = tuple[str, tuple[int, ...], Callable[[Any], Any]]


def _row_layout(schema: dict[str, Any]) -> Layout | None:
    """How one detection's property becomes a tensor row: datatype, row dims, reader."""
    kind = schema.get("type")
    if kind in _SCALARS:
        return _SCALARS[kind], (), lambda v: v
    if (length := _fixed_numbers(schema)) is not None:
        return "FP32", (length,), lambda v: v
    items, length = schema.get("items", {}), schema.get("minItems")
    if kind == "array" and items.get("type") == "object" and length == schema.get("maxItems"):
        properties = items.get("properties", {})
        numeric = [
            p
            for p in items.get("required", [])
            if properties.get(p, {}).get("type") in ("number", "integer")
        ]
        if length and numeric:  # e.g. keypoints: 17 x (x, y, score); the names are COCO-17's
            return "FP32", (length, len(numeric)), lambda v: [[o[p] for p in numeric] for o in v]
    return None


def _detection_rows(output: str, prop: str, read: Callable[[Any], Any]):  # type: ignore[no-untyped-def]
    return lambda _i, result: [read(item[prop]) for item in result.get(output) or []]


def _scalar_rows(output: str):  # type: ignore[no-untyped-def]
    return lambda _i, result: [result[output]]


def _result_rows(_index: int, result: dict[str, Any]) -> Values:
    return [json.dumps(result, separators=(",", ":")).encode()]
