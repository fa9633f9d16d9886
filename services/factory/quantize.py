"""``posefleet models quantize``: an int8 version of a model, and the evidence to decide on it.

The quantized model becomes the next version in the repository, served only where a stage pins
it (``model_version`` in pipelines.yaml, or POSEFLEET_STAGE_MODELS="pose": "movenet-lightning:2"):
an int8 model is an experiment until its agreement has been reviewed, so it never becomes the
default by being newest (services.core.runtime.repository). The report
puts size, median latency on this machine and agreement with fp32 side by side; agreement is
measured on the stage's own outputs (services.factory.agreement), through the real handler.

Calibration and latency inputs are not synthesised: the fp32 stage handler runs on the given
photos with its model wrapped in a recorder, so the int8 ranges and the timings come from the
exact tensors served traffic produces (detector boxes → pose crops included).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.core.handler import Handler, HandlerContext, Task
from services.core.pipeline import PipelineConfig, StageSpec, load_pipelines
from services.core.plugins import load_handler
from services.core.runtime.repository import ModelEntry, ModelRepository
from services.core.settings import Settings
from services.factory.agreement import agreement
from services.factory.build import ModelBuildError
from services.factory.builder_venv import BUILDER_ENV, ensure_builder_venv
from services.pins import Progress, run_checked, sha256_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LATENCY_ROUNDS = 15


class Recorder:
    """Stands in front of a handler's model: passes every call through and keeps the feeds."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.backend = model.backend
        self.input_names = model.input_names
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({k: np.array(v) for k, v in feeds.items()})
        return self.model.run(feeds)


def read_photos(folder: Path) -> dict[str, bytes]:
    photos = {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    }
    if not photos:
        raise ModelBuildError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return photos


def stage_for(entry: ModelEntry, config: PipelineConfig) -> StageSpec:
    """The stage that serves this model: one whose default it is, else one of its task."""
    by_task = {
        "person-detection": "detector",
        "object-detection": "detector",
        "pose-estimation": "pose",
        "image-classification": "classifier-a",
    }
    for stage in config.stages.values():
        if stage.model == entry.name:
            return stage
    fallback = by_task.get(entry.spec.get("task", ""))
    if fallback not in config.stages:
        raise ModelBuildError(f"no stage in {config.source} serves {entry.name}")
    return config.stages[fallback]


class StageRunner:
    """One stage's handler on one model version, run over photos like the worker would, with
    upstream inputs (a pose stage's ``boxes``) produced once by the fp32 upstream stage."""

    def __init__(self, settings: Settings, config: PipelineConfig, stage: StageSpec) -> None:
        self.settings, self.config, self.stage = settings, config, stage
        # upstream outputs per (input name, photo set): computed once, reused by every version
        self._upstream: dict[tuple[str, tuple[str, ...]], list[Any]] = {}

    def handler(self, spec: StageSpec, model: str | None, version: str | None) -> Handler:
        handler = load_handler(spec)
        handler.initialize(
            HandlerContext(spec.name, self.settings, model, version, options=spec.options)
        )
        return handler

    def tasks(self, photos: dict[str, bytes]) -> list[Task]:
        inputs: list[dict[str, Any]] = [{"image": image} for image in photos.values()]
        for name in self.stage.inputs:
            if name == "image":
                continue
            key = (name, tuple(photos))
            if key not in self._upstream:
                source = next(s for s in self.config.stages.values() if name in s.outputs)
                upstream = self.handler(source, source.model, source.model_version)
                self._upstream[key] = [
                    out[name] for out in run_handler(upstream, inputs, record=False)[0]
                ]
            for item, value in zip(inputs, self._upstream[key], strict=True):
                item[name] = value
        return [Task(f"photo-{i}", self.stage.name, item) for i, item in enumerate(inputs)]

    def run(
        self, photos: dict[str, bytes], model: str, version: str
    ) -> tuple[list[dict[str, Any]], Recorder]:
        handler = self.handler(self.stage, model, version)
        outputs, recorder = run_handler(handler, [t.inputs for t in self.tasks(photos)])
        assert recorder is not None
        return outputs, recorder


def run_handler(
    handler: Any, inputs: list[dict[str, Any]], record: bool = True
) -> tuple[list[dict[str, Any]], Recorder | None]:
    """One image per batch, as at concurrency 1; returns outputs and the recorded feeds."""
    recorder = None
    if record:
        recorder = handler.model = Recorder(handler.model)
    outputs = []
    for i, item in enumerate(inputs):
        task = Task(f"photo-{i}", "quantize", item)
        outputs += handler.postprocess(handler.inference(handler.preprocess([task])), [task])
    return outputs, recorder


def median_ms(model: Any, feeds: list[dict[str, np.ndarray]]) -> float:
    times = []
    for feed in feeds:
        started = time.perf_counter()
        model.run(feed)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def compare_latency(
    fp32: Any, int8: Any, feeds: list[dict[str, np.ndarray]]
) -> tuple[float, float]:
    """Interleaved rounds, so drift on a shared machine hits both models alike."""
    feeds = [f for f in feeds if all(len(v) for v in f.values())]  # skip empty crop batches
    if not feeds:
        raise ModelBuildError("the photos gave the model no input (no people found?)")
    a, b = [], []
    for _ in range(LATENCY_ROUNDS):
        a.append(median_ms(fp32, feeds))
        b.append(median_ms(int8, feeds))
    return statistics.median(a), statistics.median(b)


def next_version(repository: ModelRepository, name: str) -> str:
    numbers = [int(v) for v in repository.versions(name) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def quantize_model(
    name: str,
    mode: str,
    photos_dir: Path,
    settings: Settings,
    calibration_dir: Path | None = None,
    from_version: str | None = None,
    progress: Progress | None = None,
    op_types: list[str] | None = None,
) -> dict[str, Any]:
    report: Callable[[str, float | None], None] = progress or (lambda step, fraction=None: None)
    if mode not in ("dynamic", "static"):
        raise ModelBuildError(f"mode must be dynamic or static, not {mode!r}")
    if mode == "static" and calibration_dir is None:
        raise ModelBuildError("--mode static needs --calibration DIR (photos like served ones)")
    repository = ModelRepository(settings.model_root)
    source = repository.get(name, from_version)
    config = load_pipelines(settings.pipelines_file)
    runner = StageRunner(settings, config, stage_for(source, config))
    photos = read_photos(photos_dir)

    report(f"running fp32 {name} v{source.version} on {len(photos)} photos", None)
    fp32_out, fp32_rec = runner.run(photos, name, source.version)
    calibration_feeds: list[dict[str, np.ndarray]] = []
    if calibration_dir is not None:
        calibration_feeds = runner.run(read_photos(calibration_dir), name, source.version)[1].feeds

    version = next_version(repository, name)
    with tempfile.TemporaryDirectory(dir=settings.model_root / name) as tmp:
        stage_dir = Path(tmp) / version
        stage_dir.mkdir()
        summary = _quantize_in_builder(
            source, stage_dir / "model.onnx", mode, calibration_feeds, op_types, settings, report
        )
        digest = sha256_file(stage_dir / "model.onnx")
        spec = dict(source.spec, version=version, sha256=digest, file="model.onnx")
        spec.pop("fingerprint", None)  # not a catalog build: `models build` leaves it alone
        spec["quantization"] = {
            "mode": mode,
            "from_version": source.version,
            "from_sha256": source.spec["sha256"],
            "calibration_images": len(read_photos(calibration_dir)) if calibration_dir else 0,
            "op_types": op_types or "all",
            **summary,
        }
        (stage_dir / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        stage_dir.rename(settings.model_root / name / version)

    report(f"running int8 {name} v{version}", None)
    int8_out, int8_rec = runner.run(photos, name, version)
    report("timing fp32 vs int8", None)
    fp32_ms, int8_ms = compare_latency(fp32_rec.model, int8_rec.model, fp32_rec.feeds)
    result = {
        "model": name,
        "stage": runner.stage.name,
        "mode": mode,
        "from_version": source.version,
        "version": version,
        "photos": len(photos),
        "size_mb": [_mb(source.path), _mb(settings.model_root / name / version / "model.onnx")],
        "median_ms": [round(fp32_ms, 2), round(int8_ms, 2)],
        "agreement": agreement(fp32_out, int8_out),
    }
    _record(settings.model_root / name / version / "model.yaml", result)
    return result


def _quantize_in_builder(
    source: ModelEntry,
    out: Path,
    mode: str,
    feeds: list[dict[str, np.ndarray]],
    op_types: list[str] | None,
    settings: Settings,
    report: Progress,
) -> dict[str, Any]:
    python = ensure_builder_venv(settings.cache_dir, report)
    report(f"quantizing {source.name} ({mode})", None)
    cmd = [str(python), "-m", "services.factory.builder.quantize_onnx"]
    cmd += ["--in", str(source.path), "--out", str(out), "--mode", mode]
    if op_types:
        cmd += ["--op-types", ",".join(op_types)]
    with tempfile.TemporaryDirectory() as tmp:
        if feeds:
            samples = Path(tmp) / "calibration.npz"
            np.savez(samples, **{f"{k}__{i}": v for i, f in enumerate(feeds) for k, v in f.items()})
            cmd += ["--calibration", str(samples)]
        stdout = run_checked(cmd, f"quantize {source.name}", env=BUILDER_ENV)
    return json.loads(stdout.strip().splitlines()[-1])


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 2)


def _record(model_yaml: Path, result: dict[str, Any]) -> None:
    spec = yaml.safe_load(model_yaml.read_text())
    spec.setdefault("checks", {})["quantization_report"] = result
    model_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
