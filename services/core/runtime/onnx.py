"""The onnxruntime backend: CPU, CUDA or TensorRT execution providers, chosen per node pool by
settings. Other backends (AWS Neuron) sit behind the same members: ``backend``,
``input_names`` and ``run(feeds) -> {output name: array}``.

A provider that was asked for but is not there fails start-up with what to do about it.
onnxruntime itself would quietly run on the CPU instead — the worst failure mode for a GPU pool,
which then costs GPU prices for CPU speed — so falling back happens only when
``allow_fallback`` says so, and then it is logged and visible in the metrics' backend label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

log = logging.getLogger("posefleet.runtime")

Provider = Literal["cpu", "cuda", "tensorrt"]
Spinning = Literal["always", "run", "off"]
_ORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_INSTALL_HINT = {
    "cuda": "the 'gpu' image (onnxruntime-gpu) on a node with an NVIDIA driver",
    "tensorrt": "the 'gpu' image (onnxruntime-gpu with TensorRT libraries)",
}


class BackendUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class OnnxOptions:
    provider: Provider = "cpu"
    device_id: int = 0
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # Pool threads busy-wait for the next operator: "always" (onnxruntime's default, which
    # spins on after run() returns), "run" (only while a run is in progress) or "off".
    spinning: Spinning = "always"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    trt_fp16: bool = False
    trt_engine_cache: Path | None = None
    allow_fallback: bool = False


def provider_chain(options: OnnxOptions) -> list[tuple[str, dict[str, Any]]]:
    """The providers in onnxruntime's order of preference, with their options; CUDA backs up
    TensorRT for the ops TensorRT does not take, and CPU backs up both."""
    chain: list[tuple[str, dict[str, Any]]] = []
    if options.provider == "tensorrt":
        trt: dict[str, Any] = {"device_id": options.device_id, "trt_fp16_enable": options.trt_fp16}
        if options.trt_engine_cache is not None:
            trt.update(
                trt_engine_cache_enable=True, trt_engine_cache_path=str(options.trt_engine_cache)
            )
        chain.append((_ORT_NAMES["tensorrt"], trt))
    if options.provider in ("tensorrt", "cuda"):
        chain.append((_ORT_NAMES["cuda"], {"device_id": options.device_id}))
    chain.append((_ORT_NAMES["cpu"], {}))
    return chain


class OnnxModel:
    def __init__(self, path: Path, options: OnnxOptions | None = None) -> None:
        options = options or OnnxOptions()
        wanted = _ORT_NAMES[options.provider]
        available = ort.get_available_providers()
        chain = provider_chain(options)
        if wanted not in available:
            chain = self._fallback(options, f"this onnxruntime offers only {available}")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        session_options.graph_optimization_level = _OPT_LEVELS[options.graph_optimization]
        spin = "0" if options.spinning == "off" else "1"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session_options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        if options.spinning == "run":
            session_options.add_session_config_entry("session.force_spinning_stop", "1")
        session_options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(path),
            session_options,
            providers=[name for name, _ in chain],
            provider_options=[opts for _, opts in chain],
        )
        active = self.session.get_providers()[0]
        if active != chain[0][0]:  # e.g. CUDA listed but its libraries failed to load
            self._fallback(options, f"onnxruntime started {active} instead")
        self.backend = (
            "onnxruntime-"
            + active.removesuffix("ExecutionProvider").lower()
            + ("-fallback" if active != wanted else "")
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _fallback(options: OnnxOptions, why: str) -> list[tuple[str, dict[str, Any]]]:
        message = (
            f"execution provider '{options.provider}' is not usable: {why}. Run this "
            f"worker with {_INSTALL_HINT.get(options.provider, 'a matching build')}, or "
            "set POSEFLEET_ALLOW_FALLBACK=true to run on the CPU"
        )
        if not options.allow_fallback:
            raise BackendUnavailable(message)
        log.warning("falling back to the CPU", extra={"provider": options.provider, "reason": why})
        return [(_ORT_NAMES["cpu"], {})]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
