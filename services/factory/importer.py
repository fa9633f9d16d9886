"""``posefleet models import``: a user's own ONNX file into the model repository, served by the
same stages, runtime, batching and metrics as the catalog's models.

The model is inspected with onnxruntime (its input: rank, layout, dtype, which axes are dynamic)
and RUN once, so the output layouts are checked on real shapes, not on declarations that exports
often leave symbolic; each generic family (services.factory.layouts) then says whether its
decoder can read them. What cannot be served is refused before anything is written, with what
would fix it. A fixed batch of one — common in exports — can be wrapped in a ``Scan`` over a new
batch axis, as the catalog build does (``--wrap-batch``; services.factory.builder.wrap_onnx, in the
builder venv, because writing ONNX needs the ``onnx`` package the runtime does not carry).

The result is the next version folder, ``model.onnx`` + ``model.yaml`` (sha256, the declared
preprocessing, labels, the decoder section, the origin: ``source.origin: imported``, path,
import time), renamed into place atomically. Before that the stored file must answer a batch of
two exactly as it answers each item alone, which is what the dynamic batcher relies on.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.core.runtime.repository import ModelRepository
from services.core.settings import Settings
from services.factory.build import (
    BUILDER_ENV,
    Progress,
    ensure_builder_venv,
    run_checked,
    sha256_file,
)
from services.factory.catalog import CATALOG
from services.factory.layouts import (
    DEFAULT_MIN_SCORE,
    DecoderOptions,
    ImportRefused,
    Probe,
    decode_layout,
)
from services.factory.quantize import next_version

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# onnxruntime's type strings of the image input dtypes a stage can feed.
INPUT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}
BATCH_ATOL = 1e-4
# Classification outputs whose rows already sum to one are probabilities, not logits.
PROBABILITY_SUM_TOL = 1e-3


@dataclass
class ImportOptions:
    task: str
    family: str | None = None
    size: tuple[int, int] | None = None  # (width, height) for dynamic spatial axes
    layout: str | None = None  # NCHW | NHWC; None: from the channel axis
    color: str = "RGB"
    mean: list[float] | None = None
    std: list[float] | None = None
    resize: str = "letterbox"  # detectors: letterbox | stretch
    crop_ratio: float = 0.875  # classifiers: crop side / shorter side after the resize
    wrap_batch: bool = False
    licence: str = ""
    decoder: DecoderOptions = field(default_factory=DecoderOptions)


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str
    shape: list[int | str]
    layout: str
    width: int
    height: int
    batch: int | str  # 1 (fixed, needs wrapping) or the dynamic axis' name


def _dtype(ort_type: str) -> str:
    """onnxruntime's ``tensor(float)`` → numpy's ``float32``."""
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(inner, inner)


def _dim(value: Any) -> int | str:
    """A declared axis: its size, or its symbolic name ('?' when it has none)."""
    return value if isinstance(value, int) and value > 0 else str(value or "?")


def inspect_input(session: Any, options: ImportOptions) -> InputSpec:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise ImportRefused(
            f"the model has {len(inputs)} inputs ({names}); stages feed one image tensor. "
            "Export it with the image as its only input (fold constants such as image sizes "
            "into the graph)"
        )
    (tensor,) = inputs
    shape = [_dim(d) for d in tensor.shape]
    if len(shape) != 4:
        raise ImportRefused(
            f"input {tensor.name} has rank {len(shape)} ({shape}); stages feed images as "
            "[batch, 3, H, W] (NCHW) or [batch, H, W, 3] (NHWC)"
        )
    if tensor.type not in INPUT_DTYPES:
        raise ImportRefused(
            f"input {tensor.name} is {tensor.type}; stages feed {', '.join(INPUT_DTYPES)}"
        )
    layout = options.layout
    if layout is None:
        candidates = [lay for lay, axis in (("NCHW", 1), ("NHWC", 3)) if shape[axis] == 3]
        if len(candidates) != 1:
            raise ImportRefused(
                f"cannot tell the channel axis of input {tensor.name} {shape}: give "
                "--layout NCHW or --layout NHWC"
            )
        layout = candidates[0]
    channels, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else shape[3:] + shape[1:3]
    if channels != 3:
        raise ImportRefused(f"input {tensor.name} {shape} ({layout}) does not take 3 channels")
    if options.size is not None:
        width, height = options.size
        for axis, declared, given in (("width", w, width), ("height", h, height)):
            if isinstance(declared, int) and declared != given:
                raise ImportRefused(f"--size: the model's {axis} is fixed at {declared}")
    elif isinstance(w, int) and isinstance(h, int):
        width, height = w, h
    else:
        raise ImportRefused(
            f"input {tensor.name} {shape} has a dynamic height or width: give the size to "
            "serve it at with --size WxH"
        )
    batch = shape[0]
    if isinstance(batch, int) and batch != 1:
        raise ImportRefused(
            f"input {tensor.name} has a fixed batch of {batch}; stages send 1 to max_batch "
            "images at a time: export with a dynamic batch axis"
        )
    if batch == 1 and not options.wrap_batch:
        raise ImportRefused(
            f"input {tensor.name} {shape} has a fixed batch of 1, so the stage could not batch "
            "it. Re-export with a dynamic batch axis, or pass --wrap-batch to wrap the graph in "
            "a Scan over a new batch axis (as `models build` does for the catalog's tfjs models)"
        )
    return InputSpec(tensor.name, INPUT_DTYPES[tensor.type], shape, layout, width, height, batch)


def served_shape(spec: InputSpec) -> list[int | str]:
    if spec.layout == "NCHW":
        return ["batch", 3, spec.height, spec.width]
    return ["batch", spec.height, spec.width, 3]


def pixel_scaling(spec: InputSpec, options: ImportOptions) -> tuple[list[float], list[float]]:
    """(mean, std) for float inputs; integer inputs take raw 0-255 pixels."""
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        if options.mean is not None or options.std is not None:
            raise ImportRefused(
                f"input {spec.name} is {spec.dtype}: it takes raw 0-255 pixels, so --mean/--std "
                "cannot apply (normalisation happens inside the model)"
            )
        return [0.0] * 3, [1.0] * 3
    mean = options.mean if options.mean is not None else [0.0] * 3
    std = options.std if options.std is not None else [255.0] * 3
    for what, values in (("--mean", mean), ("--std", std)):
        if len(values) != 3:
            raise ImportRefused(f"{what} takes 3 values (one per channel), got {values}")
    if any(s == 0 for s in std):
        raise ImportRefused(f"--std {std}: a channel would divide by zero")
    return list(map(float, mean)), list(map(float, std))


def trial_inputs(spec: InputSpec, batch: int, seed: int = 0) -> np.ndarray:
    """Random pixels in the input's layout (0-255, or (0-255 - mean) / std's range)."""
    rng = np.random.default_rng(seed)
    hw = (spec.height, spec.width)
    shape = (batch, 3, *hw) if spec.layout == "NCHW" else (batch, *hw, 3)
    pixels = rng.integers(0, 256, shape)
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        return pixels.astype(spec.dtype)
    return ((pixels - 127.5) / 64.0).astype(spec.dtype)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ImportRefused(
            f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]}). A model whose "
            "weights sit in external data files must be saved as one file"
        ) from None


def _run(session: Any, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    try:
        outputs = session.run(None, {name: batch})
    except Exception as exc:
        raise ImportRefused(
            f"the model failed on a batch of {len(batch)} "
            f"{list(batch.shape)} {batch.dtype}: {str(exc).splitlines()[0]}"
        ) from None
    return dict(zip([o.name for o in session.get_outputs()], outputs, strict=True))


def check_batching(path: Path, spec: InputSpec) -> float:
    """A batch of two must equal its items run alone: what the dynamic batcher relies on."""
    session = _session(path)
    batch = trial_inputs(spec, 2, seed=1)
    together = _run(session, spec.name, batch)
    worst = 0.0
    for i in range(2):
        alone = _run(session, spec.name, batch[i : i + 1])
        for name, value in alone.items():
            if together[name].shape[1:] != value.shape[1:] or len(together[name]) != 2:
                raise ImportRefused(
                    f"output {name} is {list(together[name].shape)} for a batch of two but "
                    f"{list(value.shape)} for one: its first axis is not the batch"
                )
            diff = float(np.abs(together[name][i].astype(np.float64) - value[0]).max(initial=0))
            worst = max(worst, diff)
    if worst > BATCH_ATOL:
        raise ImportRefused(
            f"a batch of two differs from its items run alone (max abs diff {worst:.3g}): the "
            "graph mixes images of a batch (e.g. batch-norm in training mode), so it cannot be "
            "batched safely"
        )
    return worst


def wrap_batch(source: Path, out: Path, settings: Settings, report: Progress) -> None:
    python = ensure_builder_venv(settings.cache_dir, report)
    report("wrapping the batch-1 graph in a Scan over a batch axis", None)
    run_checked(
        [
            str(python),
            "-m",
            "services.factory.builder.wrap_onnx",
            "--in",
            str(source),
            "--out",
            str(out),
        ],
        "wrap the model in a batch Scan",
        env=BUILDER_ENV,
    )


def preprocessing(spec: InputSpec, options: ImportOptions, family: str) -> dict[str, Any]:
    mean, std = pixel_scaling(spec, options)
    prep: dict[str, Any] = {
        "family": family,
        "size": [spec.width, spec.height],
        "layout": spec.layout,
        "color": options.color,
        "mean": mean,
        "std": std,
    }
    if family == "classification":
        if spec.width != spec.height:
            raise ImportRefused(
                f"image-classification serves square inputs (centre crop); this one is "
                f"{spec.width}x{spec.height}"
            )
        prep["resize_shorter"] = round(spec.width / options.crop_ratio)
        prep["crop"] = spec.width
    elif family in DEFAULT_MIN_SCORE:
        if options.resize not in ("letterbox", "stretch"):
            raise ImportRefused(f"--resize is letterbox or stretch, not {options.resize!r}")
        prep["resize"] = options.resize
        if options.resize == "letterbox":
            prep.update(letterbox_align="center", pad_value=114)
        prep["default_min_score"] = (
            options.decoder.min_score
            if options.decoder.min_score is not None
            else DEFAULT_MIN_SCORE[family]
        )
    else:  # top-down pose: the detector's boxes, enlarged to the input's aspect
        prep["crop"] = "box x1.25, widened or heightened to the input's aspect, zero padded"
    return prep


def classification_activation(outputs: np.ndarray) -> str:
    """Logits get a softmax; rows that are already probabilities are left alone."""
    rows = outputs.astype(np.float64)
    is_probability = (rows >= 0).all() and np.allclose(
        rows.sum(axis=1), 1, atol=PROBABILITY_SUM_TOL
    )
    return "none" if is_probability else "softmax"


def import_model(
    source: Path,
    name: str,
    options: ImportOptions,
    settings: Settings,
    progress: Progress | None = None,
) -> dict[str, Any]:
    report = progress or (lambda step, fraction=None: None)
    if not NAME.match(name):
        raise ImportRefused(f"--name {name!r} must match {NAME.pattern}")
    if name in CATALOG:
        raise ImportRefused(
            f"'{name}' is a catalog model (`models build` owns its folder): choose another name"
        )
    if options.color not in ("RGB", "BGR"):
        raise ImportRefused(f"--color is RGB or BGR, not {options.color!r}")
    source = source.resolve()
    report(f"inspecting {source.name} with onnxruntime", None)
    session = _session(source)
    spec = inspect_input(session, options)
    single = _run(session, spec.name, trial_inputs(spec, 1))
    probe = Probe(
        spec.width,
        spec.height,
        {k: tuple(v.shape) for k, v in single.items()},
        options.task,
        options.decoder,
    )
    decoded = decode_layout(probe, options.family)
    if decoded.family == "classification" and decoded.decoder["score_activation"] is None:
        activation = classification_activation(single[decoded.decoder["output"]])
        decoded.decoder["score_activation"] = activation
        decoded.notes.append(
            f"scores: {'probabilities' if activation == 'none' else 'logits (softmax applied)'}"
        )
    prep = preprocessing(spec, options, decoded.family)

    root = Path(settings.model_root)
    (root / name).mkdir(parents=True, exist_ok=True)
    version = next_version(ModelRepository(root), name)
    with tempfile.TemporaryDirectory(dir=root / name) as tmp:
        stage = Path(tmp) / version
        stage.mkdir()
        target = stage / "model.onnx"
        if spec.batch == 1:
            wrap_batch(source, target, settings, report)
        else:
            shutil.copyfile(source, target)
        report("checking that a batch of two equals its items alone", None)
        max_diff = check_batching(target, spec)
        stored = _session(target)
        model_yaml = {
            "name": name,
            "version": version,
            "task": options.task,
            "format": "onnx",
            "file": "model.onnx",
            "sha256": sha256_file(target),
            # the shape the stage feeds (a dynamic height/width at the --size it is served at)
            "inputs": [{"name": spec.name, "dtype": spec.dtype, "shape": served_shape(spec)}],
            "outputs": [
                {
                    "name": o.name,
                    "dtype": _dtype(o.type),
                    "shape": ["batch", *map(_dim, o.shape[1:])],
                }
                for o in stored.get_outputs()
            ],
            "preprocessing": prep,
            "decoder": decoded.decoder,
            "labels": decoded.labels,
            "source": {
                "origin": "imported",
                "path": str(source),
                "sha256": sha256_file(source),
                "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "wrapped_batch": spec.batch == 1,
                "licence": options.licence,
            },
            "checks": {
                "batch_of_two_max_abs_diff": max_diff,
                "output_shapes_batch_1": {k: list(v) for k, v in probe.shapes.items()},
            },
        }
        (stage / "model.yaml").write_text(yaml.safe_dump(model_yaml, sort_keys=False))
        stage.rename(root / name / version)
    report("imported", 1.0)
    return {
        "model": name,
        "version": version,
        "path": str(root / name / version),
        "family": decoded.family,
        "notes": decoded.notes,
        "wrapped_batch": spec.batch == 1,
    }
