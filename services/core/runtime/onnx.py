"""The onnxruntime backend. Other backends (CUDA/TensorRT providers, AWS Neuron) arrive behind
the same two members: ``input_names`` and ``run(feeds) -> {output name: array}``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxModel:
    def __init__(
        self,
        path: Path,
        intra_op_threads: int = 0,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        # metrics label: "onnxruntime-cpu", "onnxruntime-cuda", ...
        self.backend = "onnxruntime-" + providers[0].removesuffix("ExecutionProvider").lower()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
