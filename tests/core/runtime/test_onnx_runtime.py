"""The onnxruntime backend's provider handling. Only the CPU provider exists on this machine;
CUDA and TensorRT are exercised for what can be checked without them: the refusal, the opt-in
fallback and the provider options we would hand to onnxruntime."""

import logging
from pathlib import Path

import numpy as np
import pytest

from services.core.runtime.onnx import BackendUnavailable, OnnxModel, OnnxOptions, provider_chain
from services.core.runtime.repository import ModelRepository


@pytest.fixture(scope="module")
def movenet(model_root) -> Path:
    return ModelRepository(model_root).get("movenet-lightning").path


def crops(n: int = 2) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(0).integers(0, 255, (n, 192, 192, 3), np.int32)}


def test_cpu_provider_runs_and_labels_its_metrics(movenet):
    model = OnnxModel(movenet, OnnxOptions(intra_op_threads=1, inter_op_threads=1))
    assert model.backend == "onnxruntime-cpu"
    assert model.run(crops())["keypoints"].shape == (2, 1, 17, 3)


def test_graph_optimisation_levels_agree(movenet):
    optimised = OnnxModel(movenet, OnnxOptions(graph_optimization="all")).run(crops())
    plain = OnnxModel(movenet, OnnxOptions(graph_optimization="disable")).run(crops())
    np.testing.assert_allclose(optimised["keypoints"], plain["keypoints"], atol=1e-4)


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_missing_accelerator_fails_start_up_with_what_to_do(movenet, provider):
    with pytest.raises(BackendUnavailable) as info:
        OnnxModel(movenet, OnnxOptions(provider=provider))
    message = str(info.value)
    assert f"execution provider '{provider}' is not usable" in message
    assert "onnxruntime-gpu" in message and "POSEFLEET_ALLOW_FALLBACK=true" in message


def test_fallback_is_opt_in_logged_and_visible_in_the_label(movenet, caplog):
    with caplog.at_level(logging.WARNING, logger="posefleet.runtime"):
        model = OnnxModel(movenet, OnnxOptions(provider="cuda", allow_fallback=True))
    assert model.backend == "onnxruntime-cpu-fallback"
    assert any(
        r.message == "falling back to the CPU" and r.provider == "cuda" for r in caplog.records
    )
    assert model.run(crops(1))["keypoints"].shape == (1, 1, 17, 3)


def test_tensorrt_options_and_chain_order(tmp_path):
    chain = provider_chain(
        OnnxOptions(provider="tensorrt", device_id=1, trt_fp16=True, trt_engine_cache=tmp_path)
    )
    assert chain == [
        (
            "TensorrtExecutionProvider",
            {
                "device_id": 1,
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(tmp_path),
            },
        ),
        ("CUDAExecutionProvider", {"device_id": 1}),
        ("CPUExecutionProvider", {}),
    ]
    assert provider_chain(OnnxOptions(provider="cuda")) == [
        ("CUDAExecutionProvider", {"device_id": 0}),
        ("CPUExecutionProvider", {}),
    ]
