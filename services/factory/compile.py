"""``posefleet models compile NAME --target neuron|tensorrt``: the accelerator artefact of a
repository model, made where the accelerator's SDK is, and explained everywhere else.

**neuron** (Inf2/Trn1, torch-neuronx). torch_neuronx.trace takes a torch module, and our models
are ONNX files, so the route is ONNX → torch with onnx2torch → ``torch_neuronx.trace`` at a fixed
batch size → ``torch.jit.save``. The tfjs models are wrapped in an ONNX ``Scan`` over the batch
(services/factory/builder/convert.py) that onnx2torch cannot convert; their Scan body (one item in,
one out) is converted instead and run once per item of the compiled batch, which tracing unrolls.
Before anything is compiled the torch module is run against onnxruntime on a random batch:
onnx2torch translates some ops only approximately (seen here: CenterNet's ``Resize`` with
``coordinate_transformation_mode=asymmetric``), and an artefact that serves different numbers
than the reviewed ONNX model must never be written. What was checked lands in artefact.yaml,
which services.core.runtime.neuron reads back. Inf1 is end of life and is not compiled here.

**tensorrt** (onnxruntime's TensorRT execution provider). We build engines with the provider
itself rather than ``trtexec``: the workers run onnxruntime, and an engine built by the same
provider with the same options (``OnnxOptions``) is exactly what its engine cache looks up at
start-up. Running batch 1 and the worker's ``max_batch`` makes the cached optimisation profile
cover every batch the dynamic batcher forms. Engines are specific to the GPU model and TensorRT
version, so the command must run on the pool's own GPU type.

Without the SDK the command raises ``CompileUnavailable``: what to run, where, then exit non-zero.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import yaml

from services.core.pipeline import load_pipelines
from services.core.runtime.neuron import (
    ARTEFACT_FILE,
    ARTEFACT_FORMAT,
    PAYLOAD,
    Target,
    artefact_dir,
    compile_command,
    payload_hashes,
)
from services.core.runtime.repository import ModelEntry, ModelRepository
from services.factory.build import ModelBuildError
from services.factory.quantize import stage_for
from services.pins import Progress

if TYPE_CHECKING:  # settings need pydantic, which the Neuron SDK's own venv may lack
    from services.core.settings import Settings

CompileTarget = Literal["neuron", "tensorrt"]
# Neuron's own compiler may cast to bf16 later; this checks only the ONNX → torch translation.
ATOL, RTOL = 1e-3, 1e-3
TRT_PROVIDER = "TensorrtExecutionProvider"


class CompileUnavailable(RuntimeError):
    """The SDK is not here: the message says what to run where."""


class NeuronToolchain(Protocol):
    """ONNX → torch → Neuron, as the compile needs it; the SDK-backed one is ``TorchNeuronx``."""

    def versions(self) -> dict[str, str]: ...

    def to_module(self, onnx_path: Path) -> Any: ...

    def run(self, module: Any, arrays: list[np.ndarray]) -> list[np.ndarray]: ...

    def trace(self, module: Any, arrays: list[np.ndarray], out: Path) -> None: ...


class TorchNeuronx:
    """torch + onnx + onnx2torch + torch_neuronx, imported only when compiling for Neuron."""

    def __init__(self) -> None:
        self.torch = importlib.import_module("torch")
        self.torch_neuronx = importlib.import_module("torch_neuronx")
        self.onnx = importlib.import_module("onnx")
        self.onnx2torch = importlib.import_module("onnx2torch")

    def versions(self) -> dict[str, str]:
        found = {}
        for dist in ("torch", "torch-neuronx", "neuronx-cc", "onnx2torch"):
            try:
                found[dist.replace("-", "_")] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                found[dist.replace("-", "_")] = "unknown"
        return found

    def to_module(self, onnx_path: Path) -> Any:
        model = self.onnx.load(str(onnx_path))
        nodes = list(model.graph.node)
        if not (len(nodes) == 1 and nodes[0].op_type == "Scan"):
            return self.onnx2torch.convert(model).eval()
        body = next(a.g for a in nodes[0].attribute if a.name == "body")
        for node in body.node:
            # onnx2torch 1.5 returns a 1-tuple for a one-output Split, which the next op then
            # receives as its tensor; such a Split is an identity (tfjs's unstack of size 1).
            if node.op_type == "Split" and len(node.output) == 1:
                node.op_type = "Identity"
                del node.input[1:]
                del node.attribute[:]
        item = self.onnx.helper.make_model(body, opset_imports=model.opset_import)
        item.ir_version = model.ir_version
        return _per_item(self.torch, self.onnx2torch.convert(item).eval())

    def run(self, module: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            result = module(*(self.torch.from_numpy(a) for a in arrays))
        return [t.numpy() for t in (result if isinstance(result, (tuple, list)) else [result])]

    def trace(self, module: Any, arrays: list[np.ndarray], out: Path) -> None:
        example = tuple(self.torch.from_numpy(a) for a in arrays)
        traced = self.torch_neuronx.trace(module, example)
        self.torch.jit.save(traced, str(out))


def _per_item(torch: Any, item: Any) -> Any:
    """The Scan over the batch as plain torch: item i through the batch-1 body, outputs stacked.
    Traced at a fixed batch size, the loop unrolls into that many copies of the body."""

    class PerItem(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.item = item

        def forward(self, *batch: Any) -> tuple[Any, ...]:
            rows = [self.item(*(x[i] for x in batch)) for i in range(batch[0].shape[0])]
            rows = [r if isinstance(r, (tuple, list)) else (r,) for r in rows]
            return tuple(torch.stack([r[k] for r in rows]) for k in range(len(rows[0])))

    return PerItem().eval()


def neuron_toolchain(entry: ModelEntry) -> NeuronToolchain:
    try:
        return TorchNeuronx()
    except ImportError as exc:
        raise CompileUnavailable(
            f"compiling for Neuron needs torch-neuronx and neuronx-cc (AWS Neuron SDK 2.x, from "
            f"AWS's own package index) and onnx2torch in one Python; here: {exc}. Run it in the "
            "`neuron` image on an inf2 or trn1 instance, with the model repository mounted:\n"
            "  docker run --rm --device /dev/neuron0 -v $HOME/.cache/posefleet/models:/models "
            "-e POSEFLEET_MODEL_ROOT=/models <registry>/pose:<tag>-neuron \\\n"
            f"    {compile_command(entry, 'inf2')} --batch-size 1\n"
            f"It writes /models/{entry.name}/{entry.version}/neuron-inf2/ (model.pt + "
            "artefact.yaml); copy that folder next to model.onnx in the workers' repository. "
            "See docs/accelerators.md"
        ) from None


def example_inputs(entry: ModelEntry, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A random batch in each input's real range: 0-255 pixels where model.yaml says so."""
    rng = np.random.default_rng(seed)
    pixel_range = entry.spec.get("preprocessing", {}).get("range") == [0, 255]
    arrays = []
    for spec in entry.spec["inputs"]:
        shape = (batch_size, *(int(d) for d in spec["shape"][1:]))
        if np.issubdtype(np.dtype(spec["dtype"]), np.integer) or pixel_range:
            arrays.append(rng.integers(0, 256, shape).astype(spec["dtype"]))
        else:
            arrays.append(rng.standard_normal(shape).astype(spec["dtype"]))
    return arrays


def _tensors(names: list[str], arrays: list[np.ndarray]) -> list[dict[str, Any]]:
    return [
        {"name": n, "dtype": str(a.dtype), "shape": list(a.shape)}
        for n, a in zip(names, arrays, strict=True)
    ]


def artefact_manifest(
    entry: ModelEntry,
    target: Target,
    batch_size: int,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    files: dict[str, str],
    sdk: dict[str, str],
    checks: dict[str, Any],
) -> dict[str, Any]:
    """artefact.yaml: what services.core.runtime.neuron.read_artefact verifies and uses."""
    return {
        "format": ARTEFACT_FORMAT,
        "target": target,
        "model": entry.name,
        "version": entry.version,
        "payload": PAYLOAD[target],
        "batch_size": batch_size,
        "inputs": inputs,
        "outputs": outputs,
        "files": files,
        "source": {"file": entry.path.name, "sha256": entry.spec["sha256"]},
        "sdk": sdk,
        "checks": checks,
        "compiled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def install_folder(staged: Path, final: Path) -> None:
    """Two renames, as in ``models build``: readers see the old artefact or the new one whole."""
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        if final.exists():
            final.rename(Path(tmp) / "replaced")
        staged.rename(final)


def compile_neuron(
    entry: ModelEntry,
    batch_size: int,
    toolchain: NeuronToolchain | None = None,
    report: Progress | None = None,
) -> dict[str, Any]:
    import onnxruntime as ort

    say = report or (lambda step, fraction=None: None)
    tools = toolchain or neuron_toolchain(entry)
    session = ort.InferenceSession(str(entry.path), providers=["CPUExecutionProvider"])
    in_names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]  # graph order = the module's order
    arrays = example_inputs(entry, batch_size)
    say(f"converting {entry.name} v{entry.version} to torch", None)
    module = tools.to_module(entry.path)
    expected = session.run(None, dict(zip(in_names, arrays, strict=True)))
    got = tools.run(module, arrays)
    diffs = {}
    for name, want, have in zip(out_names, expected, got, strict=True):
        if want.shape != have.shape or not np.allclose(have, want, atol=ATOL, rtol=RTOL):
            raise ModelBuildError(
                f"{entry.name}: the torch translation of model.onnx disagrees with onnxruntime "
                f"on output '{name}' (shape {list(have.shape)} vs {list(want.shape)}, max abs "
                f"diff {float(np.abs(have - want).max()) if want.shape == have.shape else 'n/a'}"
                "): an op is not translated exactly by onnx2torch, so no artefact was written"
            )
        diffs[name] = float(np.abs(have - want).max())
    final = artefact_dir(entry, "inf2")
    with tempfile.TemporaryDirectory(dir=entry.path.parent) as tmp:
        staged = Path(tmp) / final.name
        staged.mkdir()
        say(f"tracing {entry.name} with torch_neuronx (batch {batch_size}; minutes)", None)
        tools.trace(module, arrays, staged / PAYLOAD["inf2"])
        manifest = artefact_manifest(
            entry,
            "inf2",
            batch_size,
            _tensors(in_names, arrays),
            _tensors(out_names, expected),
            payload_hashes(staged),
            tools.versions(),
            {"torch_vs_onnxruntime_max_abs_diff": diffs},
        )
        (staged / ARTEFACT_FILE).write_text(yaml.safe_dump(manifest, sort_keys=False))
        install_folder(staged, final)
    say("artefact written", 1.0)
    return {"target": "neuron-inf2", "path": str(final), **manifest}


def _gpu_name() -> str:
    if shutil.which("nvidia-smi") is None:
        return "unknown"
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"


def compile_tensorrt(
    entry: ModelEntry,
    settings: Settings,
    cache_dir: Path,
    max_batch: int,
    fp16: bool,
    report: Progress | None = None,
) -> dict[str, Any]:
    import onnxruntime as ort

    from services.core.runtime.onnx import OnnxModel, OnnxOptions

    say = report or (lambda step, fraction=None: None)
    if TRT_PROVIDER not in ort.get_available_providers():
        raise CompileUnavailable(
            f"building TensorRT engines needs onnxruntime-gpu with the TensorRT libraries and "
            f"an NVIDIA GPU; this onnxruntime offers only {ort.get_available_providers()}. "
            "Engines are specific to the GPU model and TensorRT version, so run it in the `gpu` "
            "image on a node of the GPU pool itself, with a cache volume the workers mount:\n"
            f"  posefleet models compile {entry.name} --version {entry.version} --target "
            f"tensorrt --cache-dir /engines{' --fp16' if fp16 else ''}\n"
            "then start the workers with POSEFLEET_PROVIDER=tensorrt "
            f"POSEFLEET_TRT_ENGINE_CACHE=/engines{' POSEFLEET_TRT_FP16=true' if fp16 else ''}. "
            "See docs/accelerators.md"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The same options a worker passes, so the engine cache it looks up is the one built here.
    options = OnnxOptions(
        provider="tensorrt", device_id=settings.device_id, trt_fp16=fp16, trt_engine_cache=cache_dir
    )
    model = OnnxModel(entry.path, options)
    timings = {}
    for batch in sorted({1, max_batch}):
        say(f"building the TensorRT engine for {entry.name} at batch {batch}", None)
        feeds = dict(zip(model.input_names, example_inputs(entry, batch), strict=True))
        started = time.perf_counter()
        model.run(feeds)
        timings[batch] = round((time.perf_counter() - started) * 1000, 1)
    record = {
        "target": "tensorrt",
        "model": entry.name,
        "version": entry.version,
        "source_sha256": entry.spec["sha256"],
        "batch_range": [1, max_batch],
        "fp16": fp16,
        "gpu": _gpu_name(),
        "onnxruntime": ort.__version__,
        "first_run_ms_by_batch": timings,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (cache_dir / f"{entry.name}-{entry.version}.yaml").write_text(
        yaml.safe_dump(record, sort_keys=False)
    )
    say("engines cached", 1.0)
    return {"path": str(cache_dir), **record}


def compile_model(
    name: str,
    target: CompileTarget,
    settings: Settings,
    version: str | None = None,
    batch_size: int = 1,
    neuron_target: Target = "inf2",
    fp16: bool = False,
    cache_dir: Path | None = None,
    max_batch: int | None = None,
    toolchain: NeuronToolchain | None = None,
    report: Callable[[str, float | None], None] | None = None,
) -> dict[str, Any]:
    if batch_size < 1:
        raise ModelBuildError(f"--batch-size must be at least 1, not {batch_size}")
    entry = ModelRepository(settings.model_root).get(name, version)
    if target == "tensorrt":
        cache = cache_dir or settings.trt_engine_cache or settings.cache_dir / "trt-engines"
        if max_batch is None:  # the largest batch the stage serving the model forms
            max_batch = stage_for(entry, load_pipelines(settings.pipelines_file)).max_batch
        return compile_tensorrt(entry, settings, cache, max_batch, fp16, report)
    if neuron_target == "inf1":
        raise CompileUnavailable(
            "Inf1 (tensorflow-neuron) is end of life and posefleet does not compile for it. An "
            "existing Neuron-compiled SavedModel can still be served: put it in "
            f"{artefact_dir(entry, 'inf1')}/saved_model/ with an artefact.yaml as described in "
            "docs/accelerators.md. New pools should use Inf2: "
            f"`{compile_command(entry, 'inf2')}`"
        )
    return compile_neuron(entry, batch_size, toolchain, report)
