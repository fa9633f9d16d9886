"""The AWS Neuron backend: a model compiled for Inferentia, behind the members every backend has
(``backend``, ``input_names``, ``run(feeds) -> {output name: array}``).

- **Inf2 / Trn1** (current): a TorchScript module traced by ``torch_neuronx.trace``, loaded with
  ``torch.jit.load`` after ``import torch_neuronx`` (the import registers the Neuron ops that the
  saved graph calls).
- **Inf1** (legacy, end of life): a Neuron-compiled TensorFlow SavedModel, as in AWS's
  "Deploying TensorFlow OpenPose on AWS Inferentia-based Inf1 instances" walkthrough, loaded with
  ``tf.saved_model.load`` after ``import tensorflow.neuron`` and called through its
  ``serving_default`` signature. Labelled ``neuron-inf1-legacy`` and logged as such.

The compiled artefact lives next to the ONNX model it came from,
``<model>/<version>/neuron-<target>/``, with an ``artefact.yaml`` written by
``posefleet models compile`` (services.factory.compile): target, compiled batch size, input
and output names/dtypes/shapes in the order the artefact takes and returns them, sha256 of every
payload file, the sha256 of the ONNX file it was compiled from and the SDK versions. A missing,
corrupted or stale artefact (model.onnx rebuilt since) stops start-up with the command that
makes a fresh one, because a Neuron artefact cannot be rebuilt lazily at start-up the way
onnxruntime builds its session: neuronx-cc takes minutes per model.

Neuron artefacts have FIXED shapes, batch size included: ``torch_neuronx.trace`` and
tensorflow-neuron compile for the shapes of the example inputs. A batch of any other size is
split into compiled-size chunks, the last one padded with zeros, and the outputs trimmed back, so
handlers and the dynamic batcher never see the difference.

NeuronCore binding per instance (instance groups, ``HandlerContext.instance``), from AWS's
"NeuronCore Allocation and Model Placement for Inference (torch-neuronx)" guide and
``torch_neuronx.experimental`` placement API reference:

- ``NEURON_RT_VISIBLE_CORES`` / ``NEURON_RT_NUM_CORES`` are read once per *process* when the
  runtime starts; on Kubernetes the Neuron device plugin sets them from the pod's
  ``aws.amazon.com/neuron[core]`` request, so a pod owns its cores and we never change them.
- Within the process, ``torch_neuronx.experimental.neuron_cores_context(start_nc, nc_count)``
  places every model loaded by ``torch.jit.load`` inside it on cores
  ``[start_nc, start_nc + nc_count)``, counted from the first core *visible to this process*;
  an ``nc_count`` larger than the model needs replicates it across those cores (round robin).
  The context is documented as not thread-safe, hence the lock around every load. Instance ``i``
  gets cores ``[first_core + i * cores_per_instance, …)``. We chose this over
  ``torch_neuronx.DataParallel`` because each instance already has its own batch loop; one
  module split across cores would serialise them again.
- Inf1 (tensorflow-neuron) has no placement API: per AWS's "Parallel Execution using
  NEURON_RT_NUM_CORES" note, loading the same compiled model again in one process puts the copy
  on the next free NeuronCore, so N instances fill N cores in load order.

Neither SDK installs outside AWS's own package index, so both are imported only when the neuron
backend is chosen, and their absence fails start-up with which package, image and instance type.
Nothing here has run on real Neuron hardware; tests/models/test_neuron_backend.py drives it with
stand-ins of the SDK modules.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from services.core.runtime.onnx import BackendUnavailable
from services.core.runtime.repository import ModelEntry

log = logging.getLogger("posefleet.runtime")

Target = Literal["inf2", "inf1"]
ARTEFACT_FILE = "artefact.yaml"
ARTEFACT_FORMAT = 1
PAYLOAD = {"inf2": "model.pt", "inf1": "saved_model"}
BACKEND_LABEL = {"inf2": "neuron-inf2", "inf1": "neuron-inf1-legacy"}
_SDK = {
    "inf2": (
        "torch-neuronx (AWS Neuron SDK 2.x, with torch and neuronx-cc)",
        "an inf2 or trn1 instance",
    ),
    "inf1": (
        "tensorflow-neuron (AWS Neuron SDK for Inf1, end of life)",
        "an inf1 instance",
    ),
}
# torch_neuronx.experimental.neuron_cores_context is documented as not thread-safe.
_PLACEMENT_LOCK = threading.Lock()

Call = Callable[[list[np.ndarray]], Any]


class NeuronArtefactError(BackendUnavailable):
    pass


@dataclass(frozen=True)
class NeuronOptions:
    """What a node pool's settings say about the Neuron backend (POSEFLEET_NEURON_*)."""

    target: Target = "inf2"
    cores_per_instance: int = 1
    first_core: int = 0  # relative to the cores visible to this process


@dataclass(frozen=True)
class TensorSpec:
    name: str  # the model.yaml name handlers use
    dtype: str
    shape: tuple[int, ...]  # compiled shape, batch first
    key: str  # the name the artefact itself uses (an Inf1 signature key), usually == name


@dataclass(frozen=True)
class Artefact:
    folder: Path
    target: Target
    batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sdk: dict[str, str]

    @property
    def payload(self) -> Path:
        return self.folder / PAYLOAD[self.target]


def artefact_dir(entry: ModelEntry, target: Target) -> Path:
    return entry.path.parent / f"neuron-{target}"


def compile_command(entry: ModelEntry, target: Target) -> str:
    extra = "" if target == "inf2" else " --neuron-target inf1"
    return f"posefleet models compile {entry.name} --version {entry.version} --target neuron{extra}"


def payload_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in an artefact folder but artefact.yaml, by relative path: a
    SavedModel is a tree, a TorchScript artefact one file, and both are checked the same way."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != ARTEFACT_FILE:
            hashes[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _specs(raw: Sequence[dict[str, Any]], batch_size: int, where: Path) -> tuple[TensorSpec, ...]:
    specs = []
    for item in raw:
        shape = tuple(int(d) for d in item["shape"])
        if not shape or shape[0] != batch_size:
            raise NeuronArtefactError(
                f"{where}: {item['name']} has shape {list(shape)}, whose first dimension is not "
                f"the compiled batch size {batch_size}"
            )
        specs.append(TensorSpec(item["name"], item["dtype"], shape, item.get("key", item["name"])))
    return tuple(specs)


def read_artefact(entry: ModelEntry, target: Target) -> Artefact:
    """The artefact for this exact model.onnx, verified; every refusal names the fix."""
    folder = artefact_dir(entry, target)
    manifest = folder / ARTEFACT_FILE
    fix = f"run `{compile_command(entry, target)}`"
    if not manifest.exists():
        raise NeuronArtefactError(
            f"model '{entry.name}' v{entry.version} has no Neuron {target} artefact "
            f"({manifest} is missing); {fix} where the Neuron SDK is installed "
            "(see docs/accelerators.md)"
        )
    try:
        spec = yaml.safe_load(manifest.read_text())
        if spec.get("format") != ARTEFACT_FORMAT or spec.get("target") != target:
            raise NeuronArtefactError(
                f"{manifest}: format {spec.get('format')} / target {spec.get('target')} is not "
                f"format {ARTEFACT_FORMAT} for {target}; {fix}"
            )
        source = spec["source"]["sha256"]
        batch = int(spec["batch_size"])
        inputs, outputs = (_specs(spec[k], batch, manifest) for k in ("inputs", "outputs"))
        files = dict(spec["files"])
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise NeuronArtefactError(f"{manifest} is unreadable ({exc!r}); {fix}") from None
    if source != entry.spec.get("sha256"):
        raise NeuronArtefactError(
            f"{folder} is stale: it was compiled from a model.onnx with sha256 {source}, "
            f"the repository now has {entry.spec.get('sha256')}; {fix}"
        )
    actual = payload_hashes(folder)
    if actual != files:
        changed = sorted(set(actual.items()) ^ set(files.items()))
        raise NeuronArtefactError(
            f"{folder}: files differ from artefact.yaml ({', '.join(n for n, _ in changed)}: "
            f"missing, extra or corrupted); {fix}"
        )
    wanted = [i["name"] for i in entry.spec["inputs"]]
    if [s.name for s in inputs] != wanted:
        raise NeuronArtefactError(
            f"{manifest}: inputs {[s.name for s in inputs]} do not match model.yaml's {wanted}; "
            f"{fix}"
        )
    missing = {o["name"] for o in entry.spec["outputs"]} - {s.name for s in outputs}
    if missing:
        raise NeuronArtefactError(f"{manifest}: no outputs {sorted(missing)}; {fix}")
    return Artefact(folder, target, batch, inputs, outputs, dict(spec.get("sdk") or {}))


def core_range(options: NeuronOptions, instance: int) -> tuple[int, int]:
    """(start, count) of the NeuronCores instance ``instance`` owns, relative to the process."""
    if options.cores_per_instance < 1 or options.first_core < 0 or instance < 0:
        raise ValueError(f"invalid NeuronCore placement {options} for instance {instance}")
    return options.first_core + instance * options.cores_per_instance, options.cores_per_instance


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def map_outputs(result: Any, outputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """A traced module returns a tensor, a tuple/list (in artefact.yaml's output order) or a
    dict (by each output's key); handlers want model.yaml's names."""
    if isinstance(result, dict):
        absent = [o.key for o in outputs if o.key not in result]
        if absent:
            raise NeuronArtefactError(
                f"the artefact returned keys {sorted(result)}, not {absent} (artefact.yaml's "
                "output keys); recompile it"
            )
        return {o.name: _to_numpy(result[o.key]) for o in outputs}
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(values) != len(outputs):
        raise NeuronArtefactError(
            f"the artefact returned {len(values)} outputs, artefact.yaml lists "
            f"{[o.name for o in outputs]}; recompile it"
        )
    return {o.name: _to_numpy(v) for o, v in zip(outputs, values, strict=True)}


def run_batched(
    call: Call, artefact: Artefact, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Any batch through a fixed-batch artefact: compiled-size chunks, the last zero-padded,
    inputs cast to the compiled dtypes, outputs concatenated and trimmed to the real items."""
    arrays = []
    for spec in artefact.inputs:
        if spec.name not in feeds:
            raise ValueError(f"missing input '{spec.name}' (have {sorted(feeds)})")
        array = np.asarray(feeds[spec.name])
        if array.shape[1:] != spec.shape[1:]:
            raise ValueError(
                f"input '{spec.name}' has item shape {list(array.shape[1:])}; the Neuron "
                f"artefact was compiled for {list(spec.shape[1:])} (shapes are fixed)"
            )
        arrays.append(np.ascontiguousarray(array, dtype=spec.dtype))
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    items, step = sizes.pop(), artefact.batch_size
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, items, step):
        part = [a[start : start + step] for a in arrays]
        short = step - len(part[0])
        if short:
            part = [np.concatenate([p, np.zeros((short, *p.shape[1:]), p.dtype)]) for p in part]
        chunks.append(map_outputs(call(part), artefact.outputs))
    if not chunks:  # an empty batch: empty outputs of the right item shape
        return {o.name: np.zeros((0, *o.shape[1:]), o.dtype) for o in artefact.outputs}
    return {o.name: np.concatenate([c[o.name] for c in chunks])[:items] for o in artefact.outputs}


def _import_sdk(target: Target, modules: Sequence[str]) -> list[Any]:
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as exc:
        package, instance = _SDK[target]
        raise BackendUnavailable(
            f"POSEFLEET_BACKEND=neuron (target {target}) needs {package}, which this image "
            f"lacks ({exc}). Run this worker in the `neuron` image (<registry>/<service>:<tag>-"
            f"neuron, built on AWS's Neuron deep learning container) on {instance} with the "
            "Neuron device plugin, or set POSEFLEET_BACKEND=onnxruntime"
        ) from None


def _check_versions(artefact: Artefact, installed: dict[str, str]) -> None:
    """Neuron artefacts are tied to the SDK that compiled them; a mismatch may still load,
    so it is logged, not refused, and named if loading then fails."""
    differ = {
        name: (artefact.sdk.get(name), version)
        for name, version in installed.items()
        if artefact.sdk.get(name) not in (None, "unknown", version)
    }
    if differ:
        log.warning(
            "Neuron artefact compiled with other SDK versions",
            extra={"artefact": str(artefact.folder), "compiled_vs_installed": differ},
        )


def _load_inf2(artefact: Artefact, options: NeuronOptions, instance: int) -> Call:
    torch, torch_neuronx = _import_sdk("inf2", ["torch", "torch_neuronx"])
    _check_versions(artefact, {"torch_neuronx": getattr(torch_neuronx, "__version__", "")})
    start, count = core_range(options, instance)
    try:
        with _PLACEMENT_LOCK, torch_neuronx.experimental.neuron_cores_context(start, count):
            module = torch.jit.load(str(artefact.payload))
    except (RuntimeError, ValueError) as exc:
        raise BackendUnavailable(
            f"could not load {artefact.payload} onto NeuronCores {start}..{start + count - 1} "
            f"(instance {instance}, {options.cores_per_instance} per instance, first "
            f"{options.first_core}): {exc}. Each worker needs POSEFLEET_INSTANCES x "
            "POSEFLEET_NEURON_CORES_PER_INSTANCE visible NeuronCores: raise the pod's "
            "aws.amazon.com/neuroncore request or lower POSEFLEET_INSTANCES"
        ) from exc

    def call(arrays: list[np.ndarray]) -> Any:
        with torch.inference_mode():
            return module(*(torch.from_numpy(a) for a in arrays))

    return call


def _load_inf1(artefact: Artefact) -> Call:
    # importing tensorflow.neuron registers the NeuronOp kernels the compiled graph calls
    tf, _ = _import_sdk("inf1", ["tensorflow", "tensorflow.neuron"])
    log.warning(
        "Inf1 (tensorflow-neuron) is end of life: this backend is legacy; move the pool to "
        "Inf2 (POSEFLEET_NEURON_TARGET=inf2)",
        extra={"artefact": str(artefact.folder)},
    )
    signature = tf.saved_model.load(str(artefact.payload)).signatures["serving_default"]

    def call(arrays: list[np.ndarray]) -> Any:
        return signature(
            **{s.key: tf.constant(a) for s, a in zip(artefact.inputs, arrays, strict=True)}
        )

    return call


class NeuronModel:
    def __init__(self, artefact: Artefact, call: Call, label: str) -> None:
        self.artefact = artefact
        self.backend = label
        self.input_names = [s.name for s in artefact.inputs]
        self._call = call

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_batched(self._call, self.artefact, feeds)


def open_neuron_model(entry: ModelEntry, options: NeuronOptions, instance: int = 0) -> NeuronModel:
    """Instance ``instance`` of ``entry``'s compiled artefact, bound to its NeuronCores."""
    artefact = read_artefact(entry, options.target)
    call = (
        _load_inf2(artefact, options, instance)
        if options.target == "inf2"
        else _load_inf1(artefact)
    )
    log.info(
        "Neuron artefact loaded",
        extra={
            "model": entry.name,
            "version": entry.version,
            "target": options.target,
            "instance": instance,
            "batch_size": artefact.batch_size,
        },
    )
    return NeuronModel(artefact, call, BACKEND_LABEL[options.target])
