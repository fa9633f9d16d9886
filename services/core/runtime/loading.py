"""Model loading for stage handlers: repository lookup, backend session, warm-up."""

from __future__ import annotations

import logging
import time

import numpy as np

from services.core.handler import HandlerContext
from services.core.models.repository import ModelEntry, ModelRepository
from services.core.runtime.onnx import OnnxModel

log = logging.getLogger("posefleet.runtime")


def load_model(ctx: HandlerContext, default: str) -> tuple[OnnxModel, ModelEntry]:
    """Load the stage's model and run it once on a zero batch of its real input shape, so the
    first request does not pay onnxruntime's lazy initialisation."""
    entry = ModelRepository(ctx.settings.model_root).get(ctx.model or default, ctx.model_version)
    model = OnnxModel(entry.path, intra_op_threads=ctx.settings.intra_op_threads)
    started = time.perf_counter()
    spec = entry.spec["inputs"][0]
    shape = [1 if not isinstance(d, int) else d for d in spec["shape"]]
    model.run({spec["name"]: np.zeros(shape, dtype=spec["dtype"])})
    log.info(
        "model loaded",
        extra={
            "model": entry.name,
            "version": entry.version,
            "warmup_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return model, entry
