"""``posefleet models compile``: what it says where the SDK is missing (here: always), and the
artefact it writes where a toolchain exists, read back by the Neuron backend.

STAND-INS: torch-neuronx/neuronx-cc and TensorRT cannot be installed or run on this machine.
``ExactToolchain`` stands in for ONNX → torch → torch_neuronx.trace: its "torch module" is the
ONNX model itself run by onnxruntime (a perfect translation) and its "trace" writes bytes, so
the tests check the compile's own logic — verification, artefact.yaml, atomic install — not
the SDK. The TensorRT test replaces ``OnnxModel`` with a recorder because no GPU is here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from services.core.runtime.neuron import ARTEFACT_FILE, read_artefact
from services.core.runtime.repository import ModelRepository
from services.core.settings import Settings, get_settings
from services.factory import compile as compiling
from services.factory.build import ModelBuildError
from tests.clirun import posefleet

MODEL = "movenet-lightning"


@pytest.fixture
def settings(tmp_path, model_root) -> Settings:
    """A private copy of the repository: compiling writes next to model.onnx."""
    shutil.copytree(model_root / MODEL, tmp_path / MODEL)
    return Settings(model_root=tmp_path, cache_dir=get_settings().cache_dir)


class ExactToolchain:
    """Stand-in for TorchNeuronx (see the module docstring)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.traced: list[tuple[int, ...]] = []

    def versions(self) -> dict[str, str]:
        return {"torch": "stand-in", "torch_neuronx": "stand-in"}

    def to_module(self, onnx_path: Path) -> Any:
        return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def run(self, module: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {i.name: a for i, a in zip(module.get_inputs(), arrays, strict=True)}
        return [o + self.offset for o in module.run(None, feeds)]

    def trace(self, module: Any, arrays: list[np.ndarray], out: Path) -> None:
        self.traced.append(arrays[0].shape)
        out.write_bytes(b"traced at batch %d" % len(arrays[0]))


def test_neuron_artefact_is_written_and_read_back_by_the_backend(settings):
    tools = ExactToolchain()
    result = compiling.compile_model(MODEL, "neuron", settings, batch_size=4, toolchain=tools)
    entry = ModelRepository(settings.model_root).get(MODEL)
    folder = entry.path.parent / "neuron-inf2"
    assert result["path"] == str(folder) and tools.traced == [(4, 192, 192, 3)]
    manifest = yaml.safe_load((folder / ARTEFACT_FILE).read_text())
    assert manifest["source"]["sha256"] == entry.spec["sha256"]
    assert manifest["inputs"] == [{"name": "input", "dtype": "int32", "shape": [4, 192, 192, 3]}]
    assert manifest["outputs"] == [
        {"name": "keypoints", "dtype": "float32", "shape": [4, 1, 17, 3]}
    ]
    assert manifest["checks"]["torch_vs_onnxruntime_max_abs_diff"] == {"keypoints": 0.0}
    artefact = read_artefact(entry, "inf2")  # the backend accepts what the compile wrote
    assert artefact.batch_size == 4 and artefact.payload.read_bytes() == b"traced at batch 4"


def test_a_translation_that_differs_from_onnxruntime_writes_nothing(settings):
    compiling.compile_model(MODEL, "neuron", settings, batch_size=2, toolchain=ExactToolchain())
    with pytest.raises(ModelBuildError, match="disagrees with onnxruntime on output 'keypoints'"):
        compiling.compile_model(
            MODEL, "neuron", settings, batch_size=4, toolchain=ExactToolchain(offset=0.1)
        )
    entry = ModelRepository(settings.model_root).get(MODEL)
    assert read_artefact(entry, "inf2").batch_size == 2  # the earlier artefact is untouched


def test_recompiling_replaces_the_artefact_whole(settings):
    for batch in (2, 8):
        compiling.compile_model(
            MODEL, "neuron", settings, batch_size=batch, toolchain=ExactToolchain()
        )
    entry = ModelRepository(settings.model_root).get(MODEL)
    assert read_artefact(entry, "inf2").batch_size == 8
    assert sorted(p.name for p in entry.path.parent.iterdir()) == [
        "model.onnx",
        "model.yaml",
        "neuron-inf2",
    ]


def test_tensorrt_builds_engines_over_the_batch_range(settings, tmp_path, monkeypatch):
    runs: list[tuple[Any, int]] = []

    class RecordingModel:  # stand-in for OnnxModel on a GPU
        def __init__(self, path: Path, options: Any) -> None:
            self.options, self.input_names = options, ["input"]

        def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            runs.append((self.options, len(feeds["input"])))
            return {}

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: [compiling.TRT_PROVIDER, "CPUExecutionProvider"]
    )
    monkeypatch.setattr("services.core.runtime.onnx.OnnxModel", RecordingModel)
    cache = tmp_path / "engines"
    result = compiling.compile_model(
        MODEL, "tensorrt", settings, fp16=True, cache_dir=cache, max_batch=6
    )
    assert [batch for _, batch in runs] == [1, 6]
    options = runs[0][0]
    assert options.provider == "tensorrt" and options.trt_fp16 is True
    assert options.trt_engine_cache == cache
    record = yaml.safe_load((cache / f"{MODEL}-1.yaml").read_text())
    assert record["batch_range"] == [1, 6] and record["fp16"] is True
    assert result["path"] == str(cache)


def test_cli_neuron_without_the_sdk_explains_what_to_run_where(settings):
    result = posefleet(
        "models", "compile", MODEL, "--target", "neuron", "--batch-size", "4",
        env={"POSEFLEET_MODEL_ROOT": str(settings.model_root)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    text = " ".join(result.stderr.split())
    assert "cannot compile here" in text and "Traceback" not in text
    assert "torch-neuronx" in text and "`neuron` image on an inf2 or trn1 instance" in text
    assert f"posefleet models compile {MODEL} --version 1 --target neuron" in text
    assert not (settings.model_root / MODEL / "1" / "neuron-inf2").exists()


def test_cli_tensorrt_without_a_gpu_explains_what_to_run_where(settings):
    result = posefleet(
        "models", "compile", MODEL, "--target", "tensorrt",
        env={"POSEFLEET_MODEL_ROOT": str(settings.model_root)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    text = " ".join(result.stderr.split())
    assert "onnxruntime-gpu" in text and "Traceback" not in text
    assert "POSEFLEET_PROVIDER=tensorrt POSEFLEET_TRT_ENGINE_CACHE=/engines" in text


def test_cli_inf1_is_legacy_and_points_to_inf2(settings):
    result = posefleet(
        "models", "compile", MODEL, "--target", "neuron", "--neuron-target", "inf1",
        env={"POSEFLEET_MODEL_ROOT": str(settings.model_root)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "end of life" in result.stderr and "--target neuron" in result.stderr


def test_cli_unknown_model_is_one_line_not_a_traceback(settings):
    result = posefleet(
        "models", "compile", "nosuch", "--target", "neuron",
        env={"POSEFLEET_MODEL_ROOT": str(settings.model_root)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "posefleet models build nosuch" in result.stderr and "Traceback" not in result.stderr
